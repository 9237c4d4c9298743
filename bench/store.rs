//! The fleet store's cost: the latency it adds to each admitted request, against the local
//! windows, in one run (`bench/store` starts Redis and runs this).
//!
//! Two measurements, each interleaving local and store so that drift hits both alike:
//! - admission: `Windows::admit` + dropping the permit, nothing else;
//! - end to end: a GET through an in-process sidecar (the real `Sidecar::bind` + `serve`)
//!   to the DigiCert mock, one sidecar with local windows and one with the store.
//!
//! Usage: store-bench REDIS_URL [N]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use digicert_sidecar::Sidecar;
use digicert_sidecar::config::{self, ListenAddr};
use digicert_sidecar::credential::CredentialStore;
use digicert_sidecar::metrics::Metrics;
use digicert_sidecar::mock::{MockDigicert, MockOptions};
use digicert_sidecar::rate_limit::{RateLimiter, Store, StoreWindows, Windows};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio_util::sync::CancellationToken;

/// Windows that never refuse here (the cost of counting, not of waiting), short enough that
/// each holds a few hundred requests, as DigiCert's (at most 1000 per 3 minutes) do: the
/// local windows scan the requests in them, the store keeps them in a sorted set.
const WINDOWS: &str = "windows = [{ requests = 1000000, per = \"20ms\" }]";

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn line(name: &str, local: &mut [Duration], store: &mut [Duration]) {
    local.sort();
    store.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let (l50, l99) = (percentile(local, 0.5), percentile(local, 0.99));
    let (s50, s99) = (percentile(store, 0.5), percentile(store, 0.99));
    println!(
        "{name:<12} local p50 {:>8.1} µs  p99 {:>8.1} µs | store p50 {:>8.1} µs  p99 {:>8.1} µs | added p50 {:>8.1} µs  p99 {:>8.1} µs | ratio p50 {:>6.1}x  p99 {:>6.1}x",
        us(l50),
        us(l99),
        us(s50),
        us(s99),
        us(s50) - us(l50),
        us(s99) - us(l99),
        us(s50) / us(l50),
        us(s99) / us(l99),
    );
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let redis = args.next().expect("usage: store-bench REDIS_URL [N]");
    let n: usize = args
        .next()
        .map_or(5000, |s| s.parse().expect("N is a number"));

    let mock = MockDigicert::start(MockOptions::default())
        .await
        .expect("mock starts");
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &mock.ca.cert_pem).expect("write ca");
    let devkey = dir.path().join("devkey");
    std::fs::write(&devkey, MockOptions::default().devkey).expect("write devkey");
    let toml = |store: bool| {
        let mut t = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin = \"off\"\n[log]\nlevel = \"warn\"\n[[routes]]\nname = \"cc\"\nupstream = \"{}\"\nca_file = \"{}\"\n[routes.api_key]\nheader = \"X-DC-DEVKEY\"\nfile = \"{}\"\n[routes.rate_limit]\n{WINDOWS}\n",
            mock.url(),
            ca.display(),
            devkey.display()
        );
        if store {
            t.push_str(&format!(
                "[rate_limit_store]\nurl = \"{redis}\"\nfleet_size = 4\ntimeout = \"200ms\"\n"
            ));
        }
        t
    };

    // Admission alone.
    let cfg = config::from_toml_str(&toml(true)).expect("config");
    let route = &cfg.routes[0];
    let stop = CancellationToken::new();
    let store = Store::new(
        cfg.rate_limit_store.as_ref().expect("store config"),
        Arc::new(Metrics::new()),
        stop.clone(),
    )
    .expect("store");
    store.connect().await;
    assert!(store.is_up(), "Redis at {redis} does not answer");
    let local = Windows::Local(Arc::new(
        RateLimiter::new(&route.rate_limit.windows).expect("windows"),
    ));
    let shared = Windows::Store(Arc::new(
        StoreWindows::new(
            store.clone(),
            "cc",
            Some(&format!("bench-{}", std::process::id())),
            &Arc::new(CredentialStore::load(route, Duration::from_secs(5)).expect("credential")),
            &route.rate_limit.windows,
            Duration::from_secs(65),
        )
        .expect("windows"),
    ));
    let (mut l, mut s) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..n + n / 10 {
        for (windows, out) in [(&local, &mut l), (&shared, &mut s)] {
            let started = Instant::now();
            let until = tokio::time::Instant::now() + Duration::from_secs(1);
            let permit = match windows.try_admit(tokio::time::Instant::now()) {
                Some(p) => p,
                None => windows.clone().admit(until).await.expect("admitted"),
            };
            drop(permit);
            if i >= n / 10 {
                out.push(started.elapsed()); // after a tenth as warm-up
            }
        }
        // Let the background release run, as it would between requests.
        tokio::task::yield_now().await;
    }
    println!("{n} admitted requests each, Redis {redis}");
    line("admission", &mut l, &mut s);

    // End to end, through the sidecar.
    let mut addrs = Vec::new();
    let mut stops = Vec::new();
    for with_store in [false, true] {
        let sidecar = Sidecar::bind(config::from_toml_str(&toml(with_store)).expect("config"))
            .await
            .expect("sidecar starts");
        let addr = match sidecar.local_addrs()[0] {
            ListenAddr::Tcp(a) => a,
            _ => unreachable!("a TCP listener"),
        };
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(sidecar.serve(async move {
            let _ = rx.await;
        }));
        addrs.push(addr);
        stops.push(tx);
    }
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let (mut l, mut s) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..n + n / 10 {
        for (addr, out) in [(addrs[0], &mut l), (addrs[1], &mut s)] {
            let started = Instant::now();
            let resp = client
                .get(format!("http://{addr}/_test/echo").parse().expect("uri"))
                .await
                .expect("answered");
            assert_eq!(resp.status(), 200);
            resp.into_body().collect().await.expect("body");
            if i >= n / 10 {
                out.push(started.elapsed());
            }
        }
    }
    line("end to end", &mut l, &mut s);
    stop.cancel();
    for tx in stops {
        let _ = tx.send(());
    }
}
