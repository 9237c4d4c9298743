//! A fleet sharing one key: sidecars count DigiCert's windows together in a real Redis, and
//! keep to `on_error` when it is killed, restarted empty or paused. The windows are checked
//! where it matters, at the upstream, with the mock's own timestamps.

mod redis;

use std::time::{Duration, Instant};

use self::redis::Redis;
use crate::support::*;

/// `[rate_limit_store]` for `redis`, plus `extra` lines.
fn store_toml(redis: &Redis, extra: &str) -> String {
    format!("[rate_limit_store]\nurl = \"{}\"\n{extra}\n", redis.url())
}

/// Panics if more than `n` of `at` fall within any interval shorter than `per`.
fn assert_windows(at: &[Instant], windows: &[(usize, Duration)]) {
    let mut at = at.to_vec();
    at.sort();
    for &(n, per) in windows {
        for i in 0..at.len().saturating_sub(n) {
            let span = at[i + n] - at[i];
            assert!(
                span >= per,
                "{} requests reached DigiCert within {span:?}; the window allows {n} per {per:?}",
                n + 1
            );
        }
    }
}

fn upstream_times(w: &World) -> Vec<Instant> {
    w.mock.seen().iter().map(|s| s.at).collect()
}

/// GET `url`, and how long the answer took.
async fn timed(url: &str) -> (Got, Duration) {
    let started = Instant::now();
    let got = get(url, &[]).await;
    (got, started.elapsed())
}

/// `n` GETs one after the other; their statuses.
async fn statuses(url: &str, n: usize) -> Vec<u16> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(get(url, &[]).await.status);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_sidecar_processes_sharing_one_key_never_exceed_a_window_at_digicert() {
    let w = World::new().await;
    let redis = Redis::start(None).await;
    let windows = [
        (10, Duration::from_secs(1)),
        (4, Duration::from_millis(250)),
    ];
    let rate_limit = "[routes.rate_limit]\nwindows = [{ requests = 10, per = \"1s\" }, { requests = 4, per = \"250ms\" }]\nmax_wait = \"300ms\"\n";
    let mut sidecars = Vec::new();
    let mut ports = Vec::new();
    for i in 0..4 {
        let port = free_port();
        let toml = format!(
            "{}{}",
            w.certcentral_toml_limited(rate_limit)
                .replace("127.0.0.1:0", &format!("127.0.0.1:{port}")),
            store_toml(&redis, "fleet_size = 4\ntimeout = \"500ms\"")
        );
        let config = w.write(&format!("fleet-{i}.toml"), toml.as_bytes());
        sidecars.push(Process::spawn(
            &config,
            w.path(&format!("fleet-{i}.log")),
            &[],
        ));
        ports.push(port);
    }
    for port in &ports {
        wait_listening(format!("127.0.0.1:{port}").parse().unwrap()).await;
    }
    // Six clients on each sidecar, each sending requests that stay 30 ms at DigiCert, for 3 s.
    let until = Instant::now() + Duration::from_secs(3);
    let mut clients = tokio::task::JoinSet::new();
    for port in &ports {
        for _ in 0..6 {
            let url = format!("http://127.0.0.1:{port}/_test/slow?ms=30");
            clients.spawn(async move {
                let client = h1_client();
                let (mut ok, mut limited) = (0, 0);
                while Instant::now() < until {
                    let got = send(&client, "GET", &url, &[], bytes::Bytes::new()).await;
                    match (got.status, got.sidecar_error()) {
                        (200, _) => ok += 1,
                        (429, Some("rate_limited")) => {
                            assert!(got.headers.contains_key("retry-after"));
                            limited += 1
                        }
                        (s, e) => panic!("unexpected answer {s} {e:?}: {}", got.text()),
                    }
                }
                (ok, limited)
            });
        }
    }
    let (mut ok, mut limited) = (0, 0);
    while let Some(r) = clients.join_next().await {
        let (o, l) = r.unwrap();
        ok += o;
        limited += l;
    }
    let at = upstream_times(&w);
    assert_eq!(at.len(), ok, "every 200 reached DigiCert once");
    assert_windows(&at, &windows);
    // The fleet used its windows (about 30 in 3 s), and refused the rest.
    assert!(ok >= 20, "only {ok} requests went through");
    assert!(limited > ok, "{limited} refused, {ok} admitted");
    for (i, s) in sidecars.iter().enumerate() {
        let log = s.stderr();
        assert!(
            log.contains("rate limit store answered"),
            "sidecar {i}: {log}"
        );
        assert!(!log.contains("outage begins"), "sidecar {i}: {log}");
    }
}

#[tokio::test]
async fn budgets_are_shared_across_sidecars_and_independent_of_each_other() {
    let w = World::new().await;
    let redis = Redis::start(None).await;
    let route = |name: &str, budget: &str| {
        w.certcentral_route(name, &format!("/{name}"))
            .replace(
                &format!("path_prefix = \"/{name}\"\n"),
                &format!("path_prefix = \"/{name}\"\nstrip_prefix = true\n"),
            )
            .replace(
                NO_RATE_LIMIT,
                &format!("[routes.rate_limit]\nwindows = [{{ requests = 3, per = \"1m\" }}]\nmax_wait = \"0s\"\nbudget = \"{budget}\"\n"),
            )
    };
    let toml = format!(
        "{}{}{}{}",
        w.server_toml(),
        route("a", "alpha"),
        route("b", "beta"),
        store_toml(&redis, "fleet_size = 4")
    );
    let one = Running::start(&toml).await;
    let two = Running::start(&toml).await;
    // One sidecar alone may use the whole window, not only its share (3 / 4 -> 1).
    assert_eq!(
        statuses(&one.url("/a/_test/echo"), 4).await,
        [200, 200, 200, 429]
    );
    // The other sidecar shares budget alpha...
    let got = get(&two.url("/a/_test/echo"), &[]).await;
    assert_eq!(got.status, 429, "{}", got.text());
    assert_eq!(got.sidecar_error(), Some("rate_limited"));
    let retry: u64 = got.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    // ...and beta is untouched by it.
    assert_eq!(
        statuses(&two.url("/b/_test/echo"), 3).await,
        [200, 200, 200]
    );
    assert_eq!(statuses(&one.url("/b/_test/echo"), 1).await, [429]);
    assert_eq!(w.mock.seen().len(), 6);
    // The store holds the budgets by name, under the prefix, one hash tag each.
    let mut conn = redis.conn(None).await;
    let keys: Vec<String> = ::redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    for key in [
        "digicert-sidecar:{alpha}:requests",
        "digicert-sidecar:{beta}:requests",
    ] {
        assert!(keys.iter().any(|k| k == key), "{key} not in {keys:?}");
    }
    one.stop().await;
    two.stop().await;
}

#[tokio::test]
async fn the_default_budget_is_derived_from_the_key_and_never_holds_it() {
    let w = World::new().await;
    let redis = Redis::start(None).await;
    let toml = format!(
        "{}{}",
        w.certcentral_toml_limited(
            "[routes.rate_limit]\nwindows = [{ requests = 2, per = \"1m\" }]\nmax_wait = \"0s\"\n"
        ),
        store_toml(&redis, "on_error = \"closed\"")
    );
    let one = Running::start(&toml).await;
    let two = Running::start(&toml).await;
    assert_eq!(statuses(&one.url("/_test/echo"), 2).await, [200, 200]);
    assert_eq!(
        statuses(&two.url("/_test/echo"), 1).await,
        [429],
        "same key, same budget"
    );
    let mut conn = redis.conn(None).await;
    let keys: Vec<String> = ::redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        keys.iter()
            .any(|k| k.starts_with("digicert-sidecar:{key-") && k.ends_with("}:requests")),
        "{keys:?}"
    );
    let dump: Vec<String> = ::redis::cmd("ZRANGE")
        .arg(keys.iter().find(|k| k.ends_with(":requests")).unwrap())
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .unwrap();
    for text in keys.iter().chain(&dump) {
        assert!(!text.contains(DEVKEY), "{text}");
    }
    one.stop().await;
    two.stop().await;
}
