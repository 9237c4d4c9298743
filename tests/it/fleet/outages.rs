//! The store killed, restarted empty or paused: `on_error` within `timeout`, then recovery;
//! and the store's password nowhere.

use std::time::Duration;

use super::redis::Redis;
use super::*;

/// A sidecar with the admin listener, windows of 4 per second, and `store` lines.
async fn outage_sidecar(w: &World, redis: &Redis, store: &str) -> Running {
    let toml = format!(
        "{}{}",
        with_admin(&w.certcentral_toml_limited(
            "[routes.rate_limit]\nwindows = [{ requests = 4, per = \"1s\" }]\nmax_wait = \"0s\"\n"
        )),
        store_toml(redis, &format!("timeout = \"500ms\"\n{store}"))
    );
    Running::start(&toml).await
}

const UP: &str = "digicert_sidecar_rate_limit_store_up";
const ERRORS: &str = "digicert_sidecar_rate_limit_store_errors_total{route=\"cc\"}";

#[tokio::test]
async fn redis_killed_on_error_local_keeps_this_sidecars_share_then_recovers() {
    let w = World::new().await;
    let mut redis = Redis::start(None).await;
    let s = outage_sidecar(&w, &redis, "on_error = \"local\"\nfleet_size = 2").await;
    let url = s.url("/_test/echo");
    assert_eq!(s.metric(UP).await, 1.0);
    // Through the store, the whole window (not the share of 2).
    assert_eq!(statuses(&url, 5).await, [200, 200, 200, 200, 429]);
    redis.kill();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // The share of 4 / 2: two, then 429; each answer well within a second.
    for want in [200, 200, 429] {
        let (got, took) = timed(&url).await;
        assert_eq!(got.status, want, "{}", got.text());
        assert!(took < Duration::from_secs(2), "answered after {took:?}");
    }
    assert_eq!(s.metric(UP).await, 0.0);
    assert!(s.metric(ERRORS).await >= 1.0);
    assert_eq!(
        s.admin("/readyz").await.status,
        200,
        "an outage never makes a route unready"
    );
    // Back, empty: the outage ends by itself.
    redis.restart().await;
    assert!(
        eventually(Duration::from_secs(5), || async {
            s.metric(UP).await == 1.0
        })
        .await
    );
    // Once the window and the warm-up have passed, the store counts again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(statuses(&url, 5).await, [200, 200, 200, 200, 429]);
    let keys = redis.keys(None, "*:requests").await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_windows(&upstream_times(&w), &[(4, Duration::from_secs(1))]);
    s.stop().await;
}

#[tokio::test]
async fn redis_killed_on_error_open_stops_limiting_and_closed_refuses_at_once() {
    let w = World::new().await;
    let mut redis = Redis::start(None).await;
    let open = outage_sidecar(&w, &redis, "on_error = \"open\"").await;
    let closed = outage_sidecar(&w, &redis, "on_error = \"closed\"").await;
    redis.kill();
    for _ in 0..8 {
        let (got, took) = timed(&open.url("/_test/echo")).await;
        assert_eq!(got.status, 200, "open: {}", got.text());
        assert!(took < Duration::from_secs(2), "answered after {took:?}");
    }
    for _ in 0..3 {
        let (got, took) = timed(&closed.url("/_test/echo")).await;
        assert_eq!(got.status, 429, "closed: {}", got.text());
        assert_eq!(got.sidecar_error(), Some("rate_limited"));
        assert!(got.headers.contains_key("retry-after"));
        assert!(took < Duration::from_secs(2), "answered after {took:?}");
    }
    for s in [&open, &closed] {
        assert_eq!(s.metric(UP).await, 0.0);
        assert_eq!(s.admin("/readyz").await.status, 200);
    }
    redis.restart().await;
    assert!(
        eventually(Duration::from_secs(5), || async {
            closed.metric(UP).await == 1.0
        })
        .await
    );
    assert_eq!(
        get(&closed.url("/_test/echo"), &[]).await.status,
        200,
        "closed recovers"
    );
    open.stop().await;
    closed.stop().await;
}

#[tokio::test]
async fn redis_restarted_empty_gets_the_recent_requests_back() {
    let w = World::new().await;
    let mut redis = Redis::start(None).await;
    let rate_limit =
        "[routes.rate_limit]\nwindows = [{ requests = 3, per = \"4s\" }]\nmax_wait = \"0s\"\n";
    let toml = format!(
        "{}{}",
        with_admin(&w.certcentral_toml_limited(rate_limit)),
        store_toml(&redis, "timeout = \"1s\"\nfleet_size = 1")
    );
    let a = Running::start(&toml).await;
    let started = Instant::now();
    assert_eq!(statuses(&a.url("/_test/echo"), 3).await, [200, 200, 200]);
    redis.restart().await;
    // The first call finds the store gone; the sidecar's own count still says full.
    assert_eq!(statuses(&a.url("/_test/echo"), 1).await, [429]);
    assert!(
        eventually(Duration::from_secs(3), || async {
            a.metric(UP).await == 1.0
        })
        .await
    );
    assert_eq!(statuses(&a.url("/_test/echo"), 1).await, [429]);
    // A sidecar that starts now, with the same key, finds the window full in the store:
    // the first one gave its requests back.
    let b = Running::start(&toml).await;
    assert_eq!(statuses(&b.url("/_test/echo"), 2).await, [429, 429]);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the test ran too slowly to tell"
    );
    assert_eq!(w.mock.seen().len(), 3);
    // Once the window has passed, both go through the store again.
    tokio::time::sleep(
        Duration::from_secs(4).saturating_sub(started.elapsed()) + Duration::from_millis(200),
    )
    .await;
    assert_eq!(statuses(&b.url("/_test/echo"), 2).await, [200, 200]);
    assert_eq!(statuses(&a.url("/_test/echo"), 2).await, [200, 429]);
    assert_windows(&upstream_times(&w), &[(3, Duration::from_secs(4))]);
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_paused_redis_means_the_fallback_not_a_stuck_request() {
    let w = World::new().await;
    let redis = Redis::start(None).await;
    let s = outage_sidecar(&w, &redis, "fleet_size = 1").await;
    let url = s.url("/_test/echo");
    assert_eq!(get(&url, &[]).await.status, 200);
    redis.pause();
    for _ in 0..2 {
        let (got, took) = timed(&url).await;
        assert_eq!(got.status, 200, "{}", got.text());
        assert!(took < Duration::from_secs(2), "answered after {took:?}");
    }
    assert_eq!(s.metric(UP).await, 0.0);
    assert!(s.metric(ERRORS).await >= 1.0);
    redis.resume();
    assert!(
        eventually(Duration::from_secs(5), || async {
            s.metric(UP).await == 1.0
        })
        .await
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(get(&url, &[]).await.status, 200);
    let keys = redis.keys(None, "*:requests").await;
    let n: usize = ::redis::cmd("ZCARD")
        .arg(&keys[0])
        .query_async(&mut redis.conn(None).await)
        .await
        .unwrap();
    assert!(n >= 1, "the store counts again");
    s.stop().await;
}

const CANARY: &str = "redis-password-canary-5f2c9e";

#[tokio::test]
async fn the_store_password_appears_nowhere_and_check_says_whether_the_store_answered() {
    let w = World::new().await;
    let mut redis = Redis::start(Some(CANARY)).await;
    let pw = w.write("redis-password", format!("{CANARY}\n").as_bytes());
    let port = free_port();
    let admin = free_port();
    let toml = format!(
        "{}{}",
        w.certcentral_toml_limited(
            "[routes.rate_limit]\nwindows = [{ requests = 50, per = \"1m\" }]\n"
        )
        .replace("127.0.0.1:0", &format!("127.0.0.1:{port}"))
        .replace("admin = \"off\"", &format!("admin = \"127.0.0.1:{admin}\"")),
        store_toml(
            &redis,
            &format!(
                "password_file = \"{}\"\nfleet_size = 2\ntimeout = \"500ms\"",
                pw.display()
            )
        )
    );
    let config = w.config_file(&toml);
    let check = |config: std::path::PathBuf| async move {
        let out = tokio::task::spawn_blocking(move || {
            binary()
                .args(["check", "--config"])
                .arg(&config)
                .output()
                .expect("check runs")
        })
        .await
        .unwrap();
        (
            out.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (code, up_report) = check(config.clone()).await;
    assert_eq!(code, Some(0), "{up_report}");
    assert!(
        up_report.contains("rate limit store: redis://127.0.0.1"),
        "{up_report}"
    );
    assert!(up_report.contains("answered in"), "{up_report}");

    let p = Process::spawn(&config, w.path("canary.log"), &[("RUST_LOG", "debug")]);
    wait_listening(format!("127.0.0.1:{port}").parse().unwrap()).await;
    let mut seen = Vec::new();
    for _ in 0..3 {
        let got = get(&format!("http://127.0.0.1:{port}/_test/echo"), &[]).await;
        assert_eq!(got.status, 200, "{}", got.text());
        seen.push(format!("{:?} {}", got.headers, got.text()));
    }
    let keys = redis.keys(Some(CANARY), "*:requests").await;
    assert_eq!(
        keys.len(),
        1,
        "the sidecar authenticated and counted in the store"
    );
    // An outage and its end, and what each says.
    redis.kill();
    let got = get(&format!("http://127.0.0.1:{port}/_test/echo"), &[]).await;
    seen.push(format!("{:?} {}", got.headers, got.text()));
    let (code, down_report) = check(config.clone()).await;
    assert_eq!(
        code,
        Some(0),
        "a store that does not answer is no reason not to start"
    );
    assert!(down_report.contains("did NOT answer"), "{down_report}");
    let metrics_url = format!("http://127.0.0.1:{admin}/metrics");
    let down_metrics = get(&metrics_url, &[]).await.text();
    assert!(
        down_metrics.contains("digicert_sidecar_rate_limit_store_up 0"),
        "{down_metrics}"
    );
    redis.restart().await;
    assert!(
        eventually(Duration::from_secs(5), || async {
            get(&metrics_url, &[])
                .await
                .text()
                .contains("digicert_sidecar_rate_limit_store_up 1")
        })
        .await
    );
    let up_metrics = get(&metrics_url, &[]).await.text();
    let log = p.stderr();
    assert_eq!(log.matches("an outage begins").count(), 1, "{log}");
    assert_eq!(log.matches("answers again").count(), 1, "{log}");
    for (what, text) in [
        ("log", &log),
        ("check (up)", &up_report),
        ("check (down)", &down_report),
        ("metrics (down)", &down_metrics),
        ("metrics (up)", &up_metrics),
        ("answers", &seen.join("\n")),
    ] {
        assert!(
            !text.contains(CANARY),
            "the password shows in the {what}: {text}"
        );
    }
}
