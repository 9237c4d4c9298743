//! Guardrails: the door, absolute-form requests, policy, Unix peers, rate limits, retries,
//! and redaction of a credential echoed by the upstream.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::process::Command;

use crate::support::*;

#[tokio::test]
async fn the_door_refuses_before_anything_reaches_the_upstream() {
    let w = World::new().await;
    let s = Running::certcentral(&w).await;
    let cases: &[(&str, &str, &str)] = &[
        (
            "CONNECT www.digicert.com:443 HTTP/1.1\r\nHost: www.digicert.com:443\r\n",
            "405",
            "method_not_allowed",
        ),
        (
            "TRACE /services/v2/user/me HTTP/1.1\r\nHost: localhost\r\n",
            "405",
            "method_not_allowed",
        ),
        (
            "PROPFIND /services/v2/user/me HTTP/1.1\r\nHost: localhost\r\n",
            "405",
            "method_not_allowed",
        ),
        (
            "GET /services/v2/user/me HTTP/1.1\r\nHost: localhost\r\nX_DC_DEVKEY: x\r\n",
            "400",
            "bad_request",
        ),
        (
            "GET /services/v2/../v2/user/me HTTP/1.1\r\nHost: localhost\r\n",
            "400",
            "bad_request",
        ),
        (
            "GET /services/v2/%2e%2e/user/me HTTP/1.1\r\nHost: localhost\r\n",
            "400",
            "bad_request",
        ),
        (
            "GET /services/v2%2fuser/me HTTP/1.1\r\nHost: localhost\r\n",
            "400",
            "bad_request",
        ),
        (
            "GET /services//v2/user/me HTTP/1.1\r\nHost: localhost\r\n",
            "400",
            "bad_request",
        ),
        (
            "GET /services/v2/user/me HTTP/1.1\r\nHost: attacker.example\r\n",
            "403",
            "host_denied",
        ),
        (
            "GET /services/v2/user/me HTTP/1.1\r\nHost: localhost\r\nOrigin: http://attacker.example\r\n",
            "403",
            "browser_denied",
        ),
        (
            "GET /services/v2/user/me HTTP/1.1\r\nHost: localhost\r\nSec-Fetch-Site: cross-site\r\n",
            "403",
            "browser_denied",
        ),
    ];
    for (head, status, reason) in cases {
        let answer = raw(s.addr(), &format!("{head}Connection: close\r\n\r\n")).await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{head}\n{answer}"
        );
        assert!(
            answer.contains(&format!("x-digicert-sidecar-error: {reason}")),
            "{head}\n{answer}"
        );
        assert!(
            answer.contains(&format!("\"code\":\"sidecar_{reason}\"")),
            "{head}\n{answer}"
        );
    }
    assert!(
        w.mock.seen().is_empty(),
        "a refused request reached the upstream"
    );
    // The listen address itself is a fine Host.
    let ok = raw(
        s.addr(),
        &format!(
            "GET /services/v2/user/me HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            s.addr()
        ),
    )
    .await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    s.stop().await;
}

#[tokio::test]
async fn an_http_proxy_client_is_served_for_upstream_hosts_only() {
    let w = World::new().await;
    let s = Running::certcentral(&w).await;
    // What a legacy app with HTTP_PROXY pointing at the sidecar sends: absolute form, http.
    let proxy = format!("http://{}", s.addr());
    let target = format!(
        "http://localhost:{}/services/v2/user/me",
        w.mock.addr.port()
    );
    let out = Command::new("curl")
        .args(["-s", "--noproxy", "", "-x", &proxy, &target])
        .output()
        .await
        .expect("curl runs");
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        body["username"], "demo.user",
        "forwarded over HTTPS with the key"
    );

    let answer = raw(
        s.addr(),
        "GET http://attacker.example/steal HTTP/1.1\r\nHost: attacker.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(answer.contains("host_denied"), "{answer}");
    let answer = raw(
        s.addr(),
        "GET http://127.0.0.2:9/x HTTP/1.1\r\nHost: 127.0.0.2:9\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        answer.starts_with("HTTP/1.1 403"),
        "not an open proxy, even to loopback: {answer}"
    );
    assert_eq!(w.mock.seen().len(), 1);
    s.stop().await;
}

#[tokio::test]
async fn the_allow_list_admits_only_its_methods_and_paths() {
    let w = World::new().await;
    let policy = "[routes.policy]\nallow = [\"GET /services/v2/user/me\", \"GET /services/v2/order/certificate/**\"]\n";
    let s = Running::start(&format!("{}{policy}", w.certcentral_toml())).await;
    assert_eq!(get(&s.url("/services/v2/user/me"), &[]).await.status, 200);
    assert_eq!(
        get(&s.url("/services/v2/order/certificate/123456?x=1"), &[])
            .await
            .status,
        200
    );
    let denied = send(
        &h1_client(),
        "POST",
        &s.url("/services/v2/order/certificate/ssl_basic"),
        &[],
        Bytes::from_static(b"{}"),
    )
    .await;
    assert_eq!(denied.status, 403);
    assert_eq!(denied.sidecar_error(), Some("policy_denied"));
    let message = denied.json()["errors"][0]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.contains("POST /services/v2/order/certificate/ssl_basic"),
        "{message}"
    );
    assert_eq!(
        get(&s.url("/services/v2/user"), &[]).await.sidecar_error(),
        Some("policy_denied")
    );
    assert_eq!(w.mock.seen().len(), 2);
    s.stop().await;
}

#[tokio::test]
async fn unix_peers_are_checked_against_the_kernels_credentials() {
    let w = World::new().await;
    let me = {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(&w.ca).unwrap();
        (m.uid(), m.gid())
    };
    for (policy, expect) in [
        (format!("unix_peer_uids = [{}]", me.0), 200),
        (format!("unix_peer_uids = [{}]", me.0 + 1), 403),
        (
            format!(
                "unix_peer_uids = [{}]\nunix_peer_gids = [{}]",
                me.0 + 1,
                me.1
            ),
            200,
        ),
        (format!("unix_peer_gids = [{}]", me.1 + 1), 403),
    ] {
        let sock = w.path("peer.sock");
        let toml = format!(
            "[server]\nlisten = \"unix:{}\"\nadmin = \"off\"\n{}[routes.policy]\n{policy}\n",
            sock.display(),
            w.certcentral_route("cc", "/")
        );
        let s = Running::start(&toml).await;
        let got = get_unix(&sock, "/services/v2/user/me").await;
        assert_eq!(got.status, expect, "{policy}: {}", got.text());
        if expect == 403 {
            assert_eq!(got.sidecar_error(), Some("peer_denied"));
        }
        s.stop().await;
    }
}

#[tokio::test]
async fn three_hundred_requests_from_thirty_clients_never_exceed_a_window() {
    let w = World::new().await;
    let windows = "[routes.rate_limit]\nwindows = [{ requests = 40, per = \"1s\" }, { requests = 15, per = \"500ms\" }]\nmax_wait = \"30s\"\n";
    let toml = w
        .certcentral_toml_limited(windows)
        .replace("request_timeout = \"5s\"", "request_timeout = \"60s\"");
    let s = Arc::new(Running::start(&with_admin(&toml)).await);
    let warm_up = w.mock.seen().len();
    let mut clients = Vec::new();
    for _ in 0..30 {
        let s = s.clone();
        clients.push(tokio::spawn(async move {
            let client = h1_client();
            let mut statuses = Vec::new();
            for _ in 0..10 {
                statuses.push(
                    send(
                        &client,
                        "GET",
                        &s.url("/services/v2/user/me"),
                        &[],
                        Bytes::new(),
                    )
                    .await
                    .status,
                );
            }
            statuses
        }));
    }
    for c in clients {
        assert!(c.await.unwrap().iter().all(|s| *s == 200));
    }
    let mut times: Vec<Instant> = w.mock.seen().iter().skip(warm_up).map(|r| r.at).collect();
    times.sort();
    assert_eq!(times.len(), 300);
    for (count, per) in [
        (40usize, Duration::from_secs(1)),
        (15, Duration::from_millis(500)),
    ] {
        for i in count..times.len() {
            let span = times[i] - times[i - count];
            assert!(
                span >= per,
                "{} requests within {span:?} (window {count} per {per:?})",
                count + 1
            );
        }
    }
    assert_eq!(
        s.metric("digicert_sidecar_rate_limited_total{route=\"cc\"}")
            .await,
        0.0
    );
}

#[tokio::test]
async fn past_max_wait_the_answer_is_429_with_retry_after() {
    let w = World::new().await;
    let windows =
        "[routes.rate_limit]\nwindows = [{ requests = 1, per = \"10s\" }]\nmax_wait = \"100ms\"\n";
    let toml = w.certcentral_toml_limited(windows);
    let s = Running::start(&with_admin(&toml)).await;
    assert_eq!(get(&s.url("/services/v2/user/me"), &[]).await.status, 200);
    let started = Instant::now();
    let got = get(&s.url("/services/v2/user/me"), &[]).await;
    assert_eq!(got.status, 429);
    assert_eq!(got.sidecar_error(), Some("rate_limited"));
    let retry_after: u64 = got.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((9..=11).contains(&retry_after), "{retry_after}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "refused without waiting out the window"
    );
    assert_eq!(
        s.metric("digicert_sidecar_rate_limited_total{route=\"cc\"}")
            .await,
        1.0
    );
    assert_eq!(w.mock.seen().len(), 1);
    s.stop().await;
}

#[tokio::test]
async fn at_most_max_in_flight_requests_reach_digicert_at_once() {
    let w = World::new().await;
    let limits = "[routes.rate_limit]\nwindows = []\nmax_in_flight = 2\nmax_wait = \"30s\"\n";
    let toml = w
        .certcentral_toml_limited(limits)
        .replace("request_timeout = \"5s\"", "request_timeout = \"60s\"");
    let s = Arc::new(Running::start(&with_admin(&toml)).await);
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { get(&s.url("/_test/slow?ms=200"), &[]).await.status })
        })
        .collect();
    for c in calls {
        assert_eq!(c.await.unwrap(), 200, "every caller is served, in turn");
    }
    assert_eq!(w.mock.max_concurrent_slow(), 2);
    assert_eq!(
        s.metric("digicert_sidecar_rate_limited_total{route=\"cc\"}")
            .await,
        0.0
    );

    // Clients that leave while DigiCert works do not leak their slots: the call to DigiCert
    // completes (hyper sees a closed client only when it answers), and the slot comes back.
    for _ in 0..2 {
        let gone = tokio::time::timeout(
            Duration::from_millis(100),
            get(&s.url("/_test/slow?ms=500"), &[]),
        )
        .await;
        assert!(gone.is_err(), "the client gave up");
    }
    for _ in 0..2 {
        let next = tokio::time::timeout(
            Duration::from_secs(10),
            get(&s.url("/_test/bytes?n=3"), &[]),
        )
        .await
        .expect("slots came back (a leak would wait out max_wait, 30 s)");
        assert_eq!(next.status, 200);
    }
}

#[tokio::test]
async fn past_max_wait_for_a_slot_in_flight_the_answer_is_429() {
    let w = World::new().await;
    let limits = "[routes.rate_limit]\nwindows = []\nmax_in_flight = 1\nmax_wait = \"100ms\"\n";
    let toml = w.certcentral_toml_limited(limits);
    let s = Arc::new(Running::start(&with_admin(&toml)).await);
    let slow = tokio::spawn({
        let s = s.clone();
        async move { get(&s.url("/_test/slow?ms=1500"), &[]).await.status }
    });
    assert!(
        eventually(Duration::from_secs(5), || async {
            w.mock.max_concurrent_slow() == 1
        })
        .await
    );
    let got = get(&s.url("/services/v2/user/me"), &[]).await;
    assert_eq!(got.status, 429);
    assert_eq!(got.sidecar_error(), Some("rate_limited"));
    assert_eq!(got.headers["retry-after"], "1");
    assert_eq!(slow.await.unwrap(), 200);
    assert_eq!(
        s.metric("digicert_sidecar_rate_limited_total{route=\"cc\"}")
            .await,
        1.0
    );
    assert_eq!(get(&s.url("/services/v2/user/me"), &[]).await.status, 200);
}

#[tokio::test]
async fn idempotent_requests_are_retried_and_the_last_answer_passes_through() {
    let w = World::new().await;
    let toml = format!("{}[routes.retry]\nattempts = 3\n", w.certcentral_toml());
    let s = Running::start(&with_admin(&toml)).await;

    // Fails twice, then works: the app sees the 200.
    let got = get(&s.url("/_test/flaky?id=a&fail=2&status=503"), &[]).await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(got.json()["served"], 3);
    assert_eq!(
        s.metric("digicert_sidecar_retries_total{route=\"cc\"}")
            .await,
        2.0
    );

    // Never works: DigiCert's last answer, unchanged.
    let got = get(&s.url("/_test/flaky?id=b&fail=9&status=502"), &[]).await;
    assert_eq!(got.status, 502);
    assert_eq!(got.sidecar_error(), None);
    assert_eq!(got.json()["errors"][0]["code"], "service_unavailable");

    // Retry-After in seconds is honoured.
    let started = Instant::now();
    let got = get(
        &s.url("/_test/flaky?id=c&fail=1&status=429&retry_after=1"),
        &[],
    )
    .await;
    assert_eq!(got.status, 200);
    assert!(started.elapsed() >= Duration::from_secs(1));

    // POST is never retried; nor is a body too large to hold for replay.
    let got = send(
        &h1_client(),
        "POST",
        &s.url("/_test/flaky?id=d&fail=1"),
        &[],
        Bytes::from_static(b"{}"),
    )
    .await;
    assert_eq!(got.status, 503);
    let big = Bytes::from(vec![b'x'; 100 * 1024]);
    let got = send(
        &h1_client(),
        "PUT",
        &s.url("/_test/flaky?id=e&fail=1"),
        &[],
        big,
    )
    .await;
    assert_eq!(got.status, 503);
    let flaky: Vec<_> = w
        .mock
        .seen()
        .into_iter()
        .filter(|r| r.path == "/_test/flaky")
        .collect();
    assert_eq!(flaky.len(), 3 + 3 + 2 + 1 + 1);
    s.stop().await;
}

#[tokio::test]
async fn retries_stay_inside_the_request_timeout() {
    let w = World::new().await;
    let toml = format!("{}[routes.retry]\nattempts = 5\n", w.certcentral_toml())
        .replace("request_timeout = \"5s\"", "request_timeout = \"1s\"");
    let s = Running::start(&toml).await;
    let started = Instant::now();
    // Retry-After of 5 s cannot fit in 1 s: DigiCert's answer comes back at once.
    let got = get(
        &s.url("/_test/flaky?id=f&fail=9&status=503&retry_after=5"),
        &[],
    )
    .await;
    assert_eq!(got.status, 503);
    assert!(started.elapsed() < Duration::from_millis(900));
    // An unreachable upstream: attempts with backoff, then 502, all within the timeout.
    let dead = w
        .certcentral_route("dead", "/dead")
        .replace(&w.mock.url(), &format!("https://127.0.0.1:{}", free_port()));
    let toml = format!("{}{dead}[routes.retry]\nattempts = 3\n", w.server_toml())
        .replace("admin = \"off\"", "admin = \"127.0.0.1:0\"");
    let s2 = Running::start(&toml).await;
    let got = get(&s2.url("/dead/x"), &[]).await;
    assert_eq!(got.sidecar_error(), Some("upstream_unreachable"));
    assert_eq!(
        s2.metric("digicert_sidecar_retries_total{route=\"dead\"}")
            .await,
        2.0
    );
    s.stop().await;
    s2.stop().await;
}

#[tokio::test]
async fn a_response_header_echoing_the_key_is_redacted() {
    let w = World::new().await;
    let s = Running::certcentral(&w).await;
    let got = get(&s.url("/_test/reflect"), &[]).await;
    assert_eq!(got.status, 200);
    let all = format!("{:?}", got.headers);
    assert!(!all.contains(DEVKEY), "{all}");
    assert_eq!(
        got.headers["x-debug-credential"],
        "[redacted by digicert-sidecar]"
    );
    assert_eq!(
        got.headers["www-authenticate"],
        "[redacted by digicert-sidecar]"
    );
    s.stop().await;
}
