//! DigiCert's rate limits, kept by the sidecar for all callers of a route together, so that
//! the shared key is never throttled. Each window is a rolling window, as DigiCert counts
//! (CertCentral: 1000 per 3 minutes and 100 per 5 seconds), kept as a log of the times of
//! the requests it admitted: a request goes when *every* window has room.
//!
//! A token bucket (GCRA, as in `governor`) with a burst of N refills while the burst is
//! being spent, so one rolling window can see up to 2N − 1 requests; an exact log cannot.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::RateWindow;

/// The rolling windows of one route.
#[derive(Debug)]
pub struct RateLimiter {
    windows: Vec<RateWindow>,
    /// Admission times, newest last, as many as the largest window holds.
    log: Mutex<VecDeque<Instant>>,
}

/// No slot came free within the wait allowed; one frees up after `retry_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    pub retry_after: Duration,
}

impl RateLimiter {
    /// `None` when there is nothing to limit.
    pub fn new(windows: &[RateWindow]) -> Option<Self> {
        if windows.is_empty() {
            return None;
        }
        let capacity = windows
            .iter()
            .map(|w| w.requests as usize)
            .max()
            .unwrap_or(0);
        Some(Self {
            windows: windows.to_vec(),
            log: Mutex::new(VecDeque::with_capacity(capacity)),
        })
    }

    /// A window is kept slightly longer than it is, so that requests admitted just over a
    /// window apart cannot arrive at DigiCert just under one apart.
    fn span(w: &RateWindow) -> Duration {
        w.per + (w.per / 20).min(Duration::from_millis(250))
    }

    /// Admit now, or say how long until every window has room.
    pub fn try_admit(&self, now: Instant) -> Result<(), Duration> {
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        let longest = self
            .windows
            .iter()
            .map(Self::span)
            .max()
            .unwrap_or_default();
        while log
            .front()
            .is_some_and(|t| now.duration_since(*t) >= longest)
        {
            log.pop_front();
        }
        let mut wait = Duration::ZERO;
        for w in &self.windows {
            let span = Self::span(w);
            let in_window = log
                .iter()
                .rev()
                .take_while(|t| now.duration_since(**t) < span)
                .count();
            if in_window >= w.requests as usize {
                // The oldest admission inside this window must leave it first.
                let oldest = log[log.len() - w.requests as usize];
                wait = wait.max(span.saturating_sub(now.duration_since(oldest)));
            }
        }
        if wait.is_zero() {
            log.push_back(now);
            Ok(())
        } else {
            Err(wait)
        }
    }

    /// Wait for a slot until `until`; refuse at once if none can come free by then.
    pub async fn admit(&self, until: Instant) -> Result<(), Limited> {
        loop {
            let now = Instant::now();
            match self.try_admit(now) {
                Ok(()) => return Ok(()),
                Err(wait) if now + wait > until => return Err(Limited { retry_after: wait }),
                Err(wait) => tokio::time::sleep(wait).await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(windows: &[(u32, u64)]) -> RateLimiter {
        let windows: Vec<RateWindow> = windows
            .iter()
            .map(|(requests, ms)| RateWindow {
                requests: *requests,
                per: Duration::from_millis(*ms),
            })
            .collect();
        RateLimiter::new(&windows).unwrap()
    }

    #[test]
    fn no_windows_no_limiter() {
        assert!(RateLimiter::new(&[]).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_rolling_window_never_holds_more_than_its_count() {
        let l = limiter(&[(3, 1000)]);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(l.try_admit(t0).is_ok());
        }
        let wait = l.try_admit(t0 + Duration::from_millis(400)).unwrap_err();
        assert_eq!(wait, Duration::from_millis(1050 - 400));
        // Right after the first three leave the (padded) window, three more fit, not six.
        let t1 = t0 + Duration::from_millis(1050);
        for _ in 0..3 {
            assert!(l.try_admit(t1).is_ok());
        }
        assert!(l.try_admit(t1).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn every_window_must_admit() {
        // 5 per second, 2 per 100 ms.
        let l = limiter(&[(5, 1000), (2, 100)]);
        let t0 = Instant::now();
        assert!(l.try_admit(t0).is_ok());
        assert!(l.try_admit(t0).is_ok());
        assert!(l.try_admit(t0).is_err(), "the short window is full");
        let t1 = t0 + Duration::from_millis(105);
        assert!(l.try_admit(t1).is_ok());
        assert!(l.try_admit(t1).is_ok());
        let t2 = t0 + Duration::from_millis(210);
        assert!(l.try_admit(t2).is_ok());
        let wait = l.try_admit(t2).unwrap_err();
        assert!(
            wait > Duration::from_millis(700),
            "the long window is full: {wait:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn admit_waits_up_to_the_limit_then_refuses() {
        let l = limiter(&[(1, 1000)]);
        assert!(l.admit(Instant::now()).await.is_ok());
        let refused = l
            .admit(Instant::now() + Duration::from_millis(500))
            .await
            .unwrap_err();
        assert!(refused.retry_after > Duration::from_millis(500));
        let started = Instant::now();
        assert!(
            l.admit(Instant::now() + Duration::from_secs(2))
                .await
                .is_ok()
        );
        assert!(started.elapsed() >= Duration::from_millis(1000));
    }
}
