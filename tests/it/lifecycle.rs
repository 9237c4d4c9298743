//! The real binary over time: graceful SIGTERM, 100 MB each way with flat memory, `demo`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Frame;

use crate::support::*;

const MB: u64 = 1024 * 1024;

#[tokio::test]
async fn sigterm_finishes_requests_in_flight_then_exits_0() {
    let w = World::new().await;
    let (addr, config) = w.binary_config("shutdown_grace = \"10s\"\n");
    let mut p = Process::spawn(&config, w.path("term.log"), &[]);
    wait_listening(addr).await;

    let slow = tokio::spawn(get_owned(format!("http://{addr}/_test/slow?ms=1500")));
    tokio::time::sleep(Duration::from_millis(400)).await;
    p.signal("TERM");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no new connections after SIGTERM"
    );
    let got = slow.await.unwrap();
    assert_eq!(got.status, 200, "the request in flight completes");
    assert_eq!(got.json()["slept_ms"], 1500);
    let status = p.wait(Duration::from_secs(10)).await.expect("exits");
    assert_eq!(status.code(), Some(0), "{}", p.stderr());
    // Its access line was still in the batch at SIGTERM: written on the way out.
    assert!(
        p.stderr()
            .lines()
            .any(|l| l.contains("\"target\":\"access\"") && l.contains("\"path\":\"/_test/slow\"")),
        "{}",
        p.stderr()
    );
}

/// Access lines are batched, but a quiet sidecar still writes each within a moment (not only
/// when 32 KiB gather or at exit), and a warning is written at once, after the access lines
/// before it.
#[tokio::test]
async fn access_lines_reach_stderr_soon_and_in_order() {
    let w = World::new().await;
    let (addr, config) = w.binary_config("");
    let p = Process::spawn(&config, w.path("batch.log"), &[]);
    wait_listening(addr).await;
    let url = |path: &str| format!("http://{addr}{path}");
    assert_eq!(get(&url("/services/v2/user/me"), &[]).await.status, 200);
    let access = |log: &str| {
        log.lines()
            .filter(|l| l.contains("\"target\":\"access\""))
            .count()
    };
    assert!(
        eventually(Duration::from_secs(3), || async {
            access(&p.stderr()) == 1
        })
        .await,
        "{}",
        p.stderr()
    );
    // DigiCert rejecting the key logs a warning at once: after the access line before it,
    // before the request's own access line.
    w.mock.set_devkeys(&["another-key"]);
    assert_eq!(get(&url("/services/v2/user/me"), &[]).await.status, 403);
    assert!(
        eventually(Duration::from_secs(3), || async {
            access(&p.stderr()) == 2
        })
        .await,
        "{}",
        p.stderr()
    );
    let log = p.stderr();
    let first = log.find("\"target\":\"access\"").unwrap();
    let warning = log.find("DigiCert rejected").expect("the warning");
    let second = log.rfind("\"target\":\"access\"").unwrap();
    assert!(first < warning && warning < second, "{log}");
}

/// Many batches' worth of access lines, handed to the flusher thread as they fill: every
/// line arrives, whole and in order, and a warning between two requests stays between
/// their lines.
#[tokio::test]
async fn batches_handed_to_the_flusher_lose_nothing_and_keep_order() {
    let w = World::new().await;
    let (addr, config) = w.binary_config("");
    let mut p = Process::spawn(&config, w.path("handoff.log"), &[]);
    wait_listening(addr).await;
    let url = format!("http://{addr}/services/v2/user/me");
    let call = |n: usize| {
        let url = url.clone();
        async move {
            get(&url, &[("x-request-id", &format!("req-{n}"))])
                .await
                .status
        }
    };
    // ~350 bytes per line: 1,200 lines are a dozen 32 KiB batches.
    for n in 0..600 {
        assert_eq!(call(n).await, 200);
    }
    w.mock.set_devkeys(&["another-key"]);
    assert_eq!(call(600).await, 403);
    w.mock.set_devkeys(&[DEVKEY]);
    for n in 601..1200 {
        assert_eq!(call(n).await, 200);
    }
    p.signal("TERM");
    let status = p.wait(Duration::from_secs(10)).await.expect("exits");
    assert_eq!(status.code(), Some(0));
    let log = p.stderr();
    let mut seen = Vec::new();
    let mut warning_after = None;
    for line in log.lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not one JSON line ({e}): {line}"));
        if v["target"] == "access" {
            let id = v["request_id"].as_str().unwrap_or_default();
            seen.push(id.trim_start_matches("req-").parse::<usize>().unwrap());
        } else if line.contains("DigiCert rejected") {
            warning_after = Some(seen.len());
        }
    }
    assert_eq!(
        seen,
        (0..1200).collect::<Vec<_>>(),
        "every access line, in order"
    );
    assert_eq!(
        warning_after,
        Some(600),
        "the warning between the lines of requests 599 and 600"
    );
}

/// stderr a pipe that nobody reads for a while (a log shipper that stalls): the pipe fills,
/// the flusher thread waits on it, and requests go on being answered; the lines held
/// meanwhile all arrive once the reader comes back.
#[tokio::test]
async fn a_stalled_stderr_reader_does_not_stall_requests() {
    let w = World::new().await;
    let (addr, config) = w.binary_config("");
    let mut child = binary()
        .args(["run", "--config", &config.display().to_string()])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_listening(addr).await;
    let url = format!("http://{addr}/services/v2/user/me");
    // ~330 bytes per access line: 600 lines are three times the 64 KiB of a pipe.
    for n in 0..600 {
        let got = tokio::time::timeout(Duration::from_secs(5), get(&url, &[]))
            .await
            .unwrap_or_else(|_| panic!("request {n} stalled behind the unread stderr"));
        assert_eq!(got.status, 200);
    }
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .filter(|l| l.contains("\"target\":\"access\""))
            .count()
    });
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert_eq!(reader.join().unwrap(), 600, "every access line, once read");
}

async fn get_owned(url: String) -> Got {
    get(&url, &[]).await
}

#[tokio::test]
async fn a_hundred_megabytes_each_way_with_flat_memory() {
    let w = World::new().await;
    let (addr, config) = w.binary_config(
        "max_request_body = \"200MiB\"\nrequest_timeout = \"120s\"\n[log]\nlevel = \"warn\"\n",
    );
    let p = Process::spawn(&config, w.path("stream.log"), &[]);
    wait_listening(addr).await;
    // Warm up: one small request so pools and TLS are set up before the baseline.
    assert_eq!(
        get(&format!("http://{addr}/services/v2/user/me"), &[])
            .await
            .status,
        200
    );
    let baseline = p.rss_kib();

    // Download: read and drop as it comes.
    let started = Instant::now();
    let resp = h1_client()
        .request(
            http::Request::get(format!("http://{addr}/_test/bytes?n={}", 100 * MB))
                .body(http_body_util::Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut n = 0u64;
    while let Some(frame) = body.frame().await {
        n += frame
            .unwrap()
            .data_ref()
            .map(|d| d.len() as u64)
            .unwrap_or(0);
    }
    assert_eq!(n, 100 * MB);
    let down = started.elapsed();
    let after_download = p.peak_rss_kib();

    // Upload: produced as it goes, never held whole.
    let (mut tx, rx) = http_body_util::channel::Channel::<Bytes, std::convert::Infallible>::new(4);
    tokio::spawn(async move {
        let chunk = Bytes::from(vec![b'u'; 256 * 1024]);
        for _ in 0..400 {
            if tx.send(Frame::data(chunk.clone())).await.is_err() {
                return;
            }
        }
    });
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::channel::Channel<Bytes, std::convert::Infallible>>();
    let started = Instant::now();
    let resp = client
        .request(
            http::Request::post(format!("http://{addr}/_test/upload"))
                .body(rx)
                .unwrap(),
        )
        .await
        .unwrap();
    let got = read(resp).await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(got.json()["bytes"], 100 * MB);
    let up = started.elapsed();
    let peak = p.peak_rss_kib();

    eprintln!(
        "memory: baseline RSS {baseline} KiB, peak after 100 MB down {after_download} KiB, \
         peak after 100 MB up {peak} KiB; download {:.0} MB/s, upload {:.0} MB/s",
        100.0 / down.as_secs_f64(),
        100.0 / up.as_secs_f64()
    );
    assert!(baseline > 0, "reads /proc");
    assert!(
        peak < baseline + 32 * 1024,
        "memory grew by {} KiB while streaming 200 MB",
        peak - baseline
    );
}

#[tokio::test]
async fn the_demo_curl_lines_work_as_printed() {
    demo_curl_lines_work(&[], "2").await;
}

#[tokio::test]
async fn the_demo_mock_can_offer_http1_only_and_the_lines_still_work() {
    demo_curl_lines_work(&["--mock-http1"], "1.1").await;
}

/// Run `demo` with `extra` arguments, run every curl line it prints, and check that its
/// mock answers with `mock_http` (curl's `%{http_version}`) to a client offering HTTP/2.
async fn demo_curl_lines_work(extra: &[&str], mock_http: &str) {
    if Command::new("curl").arg("--version").output().is_err() {
        panic!("curl is needed for this test (.ci/run installs it)");
    }
    let port = free_port();
    let mut child = binary()
        .args(["demo", "--listen", &format!("127.0.0.1:{port}")])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines = tokio::task::spawn_blocking(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            let done = line.contains("Stop with Ctrl-C");
            lines.push(line);
            if done {
                break;
            }
        }
        lines
    })
    .await
    .unwrap();
    let curls: Vec<&String> = lines
        .iter()
        .filter(|l| l.trim_start().starts_with("curl "))
        .collect();
    assert!(curls.len() >= 7, "{lines:#?}");
    for line in &curls {
        let out = Command::new("sh")
            .arg("-c")
            .arg(line.trim())
            .output()
            .unwrap();
        assert!(out.status.success(), "{line}");
        let body: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{line}: not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        });
        let code = body["errors"][0]["code"].as_str();
        if line.contains("no/such/route") {
            assert_eq!(code, Some("sidecar_no_route"), "{line}");
        } else if line.contains("--cacert") {
            assert_eq!(code, Some("access_denied_invalid_key"), "{line}");
        } else {
            assert_eq!(code, None, "{line}: {body}");
        }
    }
    // The line that calls the mock directly, asked for the protocol it answered with.
    let direct = curls.iter().find(|l| l.contains("--cacert")).unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{} --http2 -o /dev/null -w '%{{http_version}}'",
            direct.trim()
        ))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), mock_http, "{direct}");
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}
