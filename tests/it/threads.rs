//! `[server] worker_threads = N`: the real binary on more than one thread.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;

use crate::support::*;

/// The CPU ticks (user + system) of each thread of `pid`, by thread name.
fn thread_ticks(pid: u32) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("/proc/PID/task") {
        let stat = std::fs::read_to_string(task.unwrap().path().join("stat")).unwrap_or_default();
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close].to_string();
        // After the name: state (field 3) … utime (14), stime (15).
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        let ticks = |i: usize| fields.get(i - 3).and_then(|v| v.parse::<u64>().ok());
        if let (Some(u), Some(s)) = (ticks(14), ticks(15)) {
            out.push((name, u + s));
        }
    }
    out
}

async fn user_me(c: &Client<HttpConnector, Full<Bytes>>, addr: std::net::SocketAddr) {
    let url = format!("http://{addr}/services/v2/user/me");
    let got = send(c, "GET", &url, &[], Bytes::new()).await;
    assert_eq!(got.status, 200, "{}", got.text());
}

/// Two worker threads: 1,200 requests on eight connections at once are all answered over
/// one shared h2 connection to DigiCert, the workers do the work, every access line is
/// written, and SIGTERM lets the requests in flight finish.
#[tokio::test]
async fn two_worker_threads_serve_share_the_upstream_and_drain() {
    let w = World::new().await;
    let (addr, config) = w.binary_config("worker_threads = 2\nshutdown_grace = \"10s\"\n");
    let mut p = Process::spawn(&config, w.path("threads.log"), &[]);
    wait_listening(addr).await;

    let clients: Vec<_> = (0..8).map(|_| h1_client()).collect();
    // One at a time first: the first request opens the h2 connection the others find.
    for c in &clients {
        user_me(c, addr).await;
    }
    let mut tasks = tokio::task::JoinSet::new();
    for c in clients {
        tasks.spawn(async move {
            for _ in 0..150 {
                user_me(&c, addr).await;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("a client task");
    }
    assert_eq!(
        w.mock.tls_connections(),
        1,
        "both threads send on the one h2 connection"
    );
    let ticks = thread_ticks(p.pid());
    let workers: Vec<_> = ticks
        .iter()
        .filter(|(n, _)| n == "tokio-rt-worker")
        .collect();
    assert!(workers.len() >= 2, "two worker threads: {ticks:?}");
    assert!(
        workers.iter().map(|(_, t)| t).sum::<u64>() > 0,
        "the workers served: {ticks:?}"
    );

    let slow: Vec<_> = (0..2)
        .map(|_| {
            tokio::spawn(
                async move { get(&format!("http://{addr}/_test/slow?ms=1200"), &[]).await },
            )
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    p.signal("TERM");
    for s in slow {
        let got = s.await.unwrap();
        assert_eq!(got.status, 200, "{}", got.text());
    }
    let status = p.wait(Duration::from_secs(10)).await.expect("exits");
    assert_eq!(status.code(), Some(0), "{}", p.stderr());
    let stderr = p.stderr();
    let access = stderr
        .lines()
        .filter(|l| l.contains("\"target\":\"access\""))
        .count();
    assert_eq!(access, 8 + 1200 + 2, "every access line");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
