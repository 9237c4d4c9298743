//! Sidecars sharing one key share its windows, budget by budget, over TLS too.

use std::time::{Duration, Instant};

use super::redis::Redis;
use super::*;

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
            store_toml(&redis, "fleet_size = 4\ntimeout = \"2s\"")
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
    // The fleet used its windows (about 30 in 3 s; fewer on a loaded machine), and refused the rest.
    assert!(ok >= 12, "only {ok} requests went through");
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
        store_toml(&redis, "fleet_size = 4\ntimeout = \"2s\"")
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
    let keys = redis.keys(None, "*").await;
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
    let toml = two_a_minute_closed(&w, &redis);
    let one = Running::start(&toml).await;
    let two = Running::start(&toml).await;
    assert_eq!(statuses(&one.url("/_test/echo"), 2).await, [200, 200]);
    assert_eq!(
        statuses(&two.url("/_test/echo"), 1).await,
        [429],
        "same key, same budget"
    );
    let keys = redis.keys(None, "*").await;
    assert!(
        keys.iter()
            .any(|k| k.starts_with("digicert-sidecar:{key-") && k.ends_with("}:requests")),
        "{keys:?}"
    );
    let dump: Vec<String> = ::redis::cmd("ZRANGE")
        .arg(keys.iter().find(|k| k.ends_with(":requests")).unwrap())
        .arg(0)
        .arg(-1)
        .query_async(&mut redis.conn(None).await)
        .await
        .unwrap();
    for text in keys.iter().chain(&dump) {
        assert!(!text.contains(DEVKEY), "{text}");
    }
    one.stop().await;
    two.stop().await;
}

#[tokio::test]
async fn a_rotated_key_is_counted_under_its_own_budget() {
    let w = World::new().await;
    let redis = Redis::start(None).await;
    let toml = two_a_minute_closed(&w, &redis);
    let a = Running::start(&toml).await;
    assert_eq!(statuses(&a.url("/_test/echo"), 3).await, [200, 200, 429]);
    let rotated = "cc-devkey-rotated-0123456789";
    w.mock.set_devkeys(&[DEVKEY, rotated]);
    replace_file(&w.devkey, format!("{rotated}\n").as_bytes());
    // DigiCert counts the new key apart: so does the fleet, once the sidecar has reloaded it.
    assert!(
        eventually(Duration::from_secs(5), || async {
            get(&a.url("/_test/echo"), &[]).await.status == 200
        })
        .await
    );
    // A sidecar that starts with the new key shares its budget with the first one.
    let b = Running::start(&toml).await;
    assert_eq!(statuses(&b.url("/_test/echo"), 2).await, [200, 429]);
    assert_eq!(w.mock.seen().len(), 4);
    assert_eq!(
        redis.keys(None, "*:requests").await.len(),
        2,
        "two keys, two budgets"
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn rediss_with_a_ca_file_and_only_with_it() {
    let w = World::new().await;
    let leaf = w.mock.ca.server_cert(&["127.0.0.1"]).unwrap();
    let redis = Redis::start_tls(&leaf.cert_pem, &leaf.key_pem).await;
    let limited = w.certcentral_toml_limited(
        "[routes.rate_limit]\nwindows = [{ requests = 2, per = \"1m\" }]\nmax_wait = \"0s\"\n",
    );
    let trusted = format!(
        "{}{}",
        limited,
        store_toml(
            &redis,
            &format!(
                "on_error = \"closed\"\nca_file = \"{}\"\ntimeout = \"1s\"",
                w.ca.display()
            )
        )
    );
    assert!(redis.url().starts_with("rediss://"));
    let one = Running::start(&trusted).await;
    let two = Running::start(&trusted).await;
    assert_eq!(statuses(&one.url("/_test/echo"), 2).await, [200, 200]);
    assert_eq!(
        statuses(&two.url("/_test/echo"), 1).await,
        [429],
        "counted together over TLS"
    );
    let report = digicert_sidecar::check::check_config(
        &digicert_sidecar::config::from_toml_str(&trusted).unwrap(),
        "test",
    );
    assert!(report.text.contains("answered in"), "{}", report.text);
    // Without the CA, the web PKI roots do not vouch for this Redis: no store, so closed.
    let untrusted = format!(
        "{}{}",
        limited,
        store_toml(&redis, "on_error = \"closed\"\ntimeout = \"1s\"")
    );
    let three = Running::start(&untrusted).await;
    let got = get(&three.url("/_test/echo"), &[]).await;
    assert_eq!(got.sidecar_error(), Some("rate_limited"), "{}", got.text());
    one.stop().await;
    two.stop().await;
    three.stop().await;
}

#[tokio::test]
async fn in_the_store_a_request_counts_from_admission_until_its_answer_and_a_window_after() {
    use std::sync::Arc;

    use digicert_sidecar::credential::CredentialStore;
    use digicert_sidecar::rate_limit::{Store, StoreWindows, Windows};
    use tokio::time::Instant as TokioInstant;

    let w = World::new().await;
    let redis = Redis::start(None).await;
    let config = digicert_sidecar::config::from_toml_str(&format!(
        "{}{}",
        w.certcentral_toml_limited(
            "[routes.rate_limit]\nwindows = [{ requests = 1, per = \"400ms\" }]\n"
        ),
        store_toml(&redis, "on_error = \"closed\"\ntimeout = \"2s\"")
    ))
    .unwrap();
    let route = &config.routes[0];
    let store = Store::new(
        config.rate_limit_store.as_ref().unwrap(),
        Arc::new(digicert_sidecar::metrics::Metrics::new()),
        tokio_util::sync::CancellationToken::new(),
    )
    .unwrap();
    store.connect().await;
    let credentials = Arc::new(CredentialStore::load(route, Duration::from_secs(5)).unwrap());
    let windows = Windows::Store(Arc::new(
        StoreWindows::new(
            store,
            "cc",
            Some("in-flight"),
            &credentials,
            &route.rate_limit.windows,
            Duration::from_secs(60),
        )
        .unwrap(),
    ));
    let admit = |wait_ms: u64| {
        let windows = windows.clone();
        async move {
            windows
                .admit(TokioInstant::now() + Duration::from_millis(wait_ms))
                .await
        }
    };
    let first = admit(0).await.expect("the window is empty");
    // In flight for longer than the window: it still holds the only slot.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let refused = admit(100).await.unwrap_err();
    assert_eq!(
        refused.retry_after,
        Duration::from_millis(400),
        "in flight: the window's length"
    );
    drop(first);
    // Its answer is in: it counts for one more window from now, then frees the slot.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let refused = admit(0).await.unwrap_err();
    assert!(
        refused.retry_after > Duration::from_millis(250),
        "{:?}",
        refused.retry_after
    );
    let started = Instant::now();
    let second = admit(1000).await.expect("admitted once the slot is free");
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
    drop(second);
}
