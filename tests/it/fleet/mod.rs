//! A fleet sharing one key: sidecars count DigiCert's windows together in a real Redis, and
//! keep to `on_error` when it is killed, restarted empty or paused. The windows are checked
//! where it matters, at the upstream, with the mock's own timestamps.

mod outages;
pub(super) mod redis;
mod sharing;

use std::time::{Duration, Instant};

use self::redis::Redis;
use crate::support::*;

/// `[rate_limit_store]` for `redis`, plus `extra` lines. Stories that are not about outages
/// set a generous `timeout`: a loaded test machine must not start one by accident.
pub(super) fn store_toml(redis: &Redis, extra: &str) -> String {
    format!("[rate_limit_store]\nurl = \"{}\"\n{extra}\n", redis.url())
}

/// The CertCentral route with a window of 2 per minute, no waiting, the store `closed`.
pub(super) fn two_a_minute_closed(w: &World, redis: &Redis) -> String {
    format!(
        "{}{}",
        w.certcentral_toml_limited(
            "[routes.rate_limit]\nwindows = [{ requests = 2, per = \"1m\" }]\nmax_wait = \"0s\"\n"
        ),
        store_toml(redis, "on_error = \"closed\"\ntimeout = \"2s\"")
    )
}

/// Panics if more than `n` of `at` fall within any interval shorter than `per`.
pub(super) fn assert_windows(at: &[Instant], windows: &[(usize, Duration)]) {
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

pub(super) fn upstream_times(w: &World) -> Vec<Instant> {
    w.mock.seen().iter().map(|s| s.at).collect()
}

/// GET `url`, and how long the answer took.
pub(super) async fn timed(url: &str) -> (Got, Duration) {
    let started = Instant::now();
    let got = get(url, &[]).await;
    (got, started.elapsed())
}

/// `n` GETs one after the other; their statuses.
pub(super) async fn statuses(url: &str, n: usize) -> Vec<u16> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(get(url, &[]).await.status);
    }
    out
}
