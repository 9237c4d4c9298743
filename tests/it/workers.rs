//! `[server] worker_threads = N`: N threads, each with its own runtime; a connection is
//! served on the one with the fewest open connections, with that worker's own upstream
//! connections.

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

/// The real binary on two workers: connections are spread over both threads, both do the
/// work, each worker keeps one h2 connection to DigiCert (not one per request, not one
/// shared across threads), every access line is written, and SIGTERM drains both.
#[tokio::test]
async fn two_workers_share_connections_and_keep_their_own_upstream_connection() {
    let w = World::new().await;
    let port = free_port();
    let config = w.config_file(&format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\nadmin = \"off\"\nworker_threads = 2\nshutdown_grace = \"10s\"\n{}",
        w.certcentral_route("cc", "/")
    ));
    let mut p = Process::spawn(&config, w.path("workers.log"), &[]);
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_listening(addr).await;

    // Eight keep-alive connections, opened one after another: the first two requests make
    // one upstream connection on each worker; the others find them.
    let clients: Vec<_> = (0..8).map(|_| h1_client()).collect();
    for c in &clients {
        user_me(c, addr).await;
    }
    assert_eq!(
        w.mock.tls_connections(),
        2,
        "one upstream connection per worker"
    );

    let mut tasks = tokio::task::JoinSet::new();
    for c in clients {
        tasks.spawn(async move {
            for _ in 0..150 {
                user_me(&c, addr).await;
            }
            c
        });
    }
    let mut clients = Vec::new();
    while let Some(c) = tasks.join_next().await {
        clients.push(c.expect("a client task"));
    }
    assert_eq!(
        w.mock.tls_connections(),
        2,
        "1,200 requests later, still one upstream connection per worker"
    );

    let ticks = thread_ticks(p.pid());
    let of = |name: &str| {
        ticks
            .iter()
            .find(|(n, _)| n == name)
            .map(|t| t.1)
            .unwrap_or_else(|| panic!("no thread {name}: {ticks:?}"))
    };
    assert!(of("sidecar-w1") > 0, "worker 1 served requests: {ticks:?}");
    assert!(
        ticks.iter().all(|(n, _)| n != "sidecar-w2"),
        "two workers, not three: {ticks:?}"
    );

    // A slow request on each worker (they still hold four keep-alive connections each, so
    // the two new connections go one to each), then SIGTERM: both finish.
    let slow: Vec<_> = (0..2)
        .map(|_| {
            tokio::spawn(
                async move { get(&format!("http://{addr}/_test/slow?ms=1200"), &[]).await },
            )
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(clients);
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
    assert_eq!(access, 8 + 1200 + 2, "every access line, from both workers");
    assert!(stderr.contains("\"worker_threads\":2"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Both kinds of listener hand connections to another worker: a TCP one and a Unix socket.
/// An idle connection holds worker 0, so the next goes to worker 1 and is answered there.
#[tokio::test]
async fn tcp_and_unix_connections_are_answered_on_the_second_worker() {
    let w = World::new().await;
    let socket = w.path("sidecar.sock");
    let unix_route = w.one_route("one", "/account/").replace(
        "path_prefix = \"/account/\"",
        &format!(
            "path_prefix = \"/account/\"\nlisten = \"unix:{}\"",
            socket.display()
        ),
    );
    let toml = format!(
        "{}{}{unix_route}",
        w.server_toml()
            .replace("admin = \"off\"", "admin = \"off\"\nworker_threads = 2"),
        w.certcentral_route("cc", "/services/"),
    );
    let s = Running::start(&toml).await;
    let idle = tokio::net::TcpStream::connect(s.addr()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let got = get(&s.url("/services/v2/user/me"), &[]).await;
    assert_eq!(got.status, 200, "{}", got.text());
    let idle_unix = tokio::net::UnixStream::connect(&socket).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let got = get_unix(&socket, "/account/api/v1/user").await;
    assert_eq!(got.status, 200, "{}", got.text());
    drop((idle, idle_unix));
    s.stop().await;
}
