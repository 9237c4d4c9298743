//! The rolling windows counted in this process: DigiCert's rate limits, kept by the sidecar
//! for all callers of a route together, so that the shared key is never throttled. Each window is a rolling window, as DigiCert counts
//! (CertCentral: 1000 per 3 minutes and 100 per 5 seconds): a request goes when *every*
//! window has room.
//!
//! A window counts the requests in flight plus those that *finished* (got their answer, or
//! failed) within it. A request reaches DigiCert before it finishes, so however the network
//! delays or reorders requests, no window at DigiCert can hold more than the limit: of any
//! N + 1 requests DigiCert sees within one window, the last one admitted would have found
//! the N others in flight or finished within its window, and waited. (Stamping requests when
//! they are *sent* is not enough: network jitter bunches them up on the way. A token bucket,
//! as in `governor`, is worse still: with a burst of N it admits up to 2N − 1 per window.)

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::Limited;
use crate::config::RateWindow;

/// The rolling windows of one route.
#[derive(Debug)]
pub struct RateLimiter {
    windows: Vec<RateWindow>,
    state: Mutex<State>,
    finished: Notify,
}

#[derive(Debug, Default)]
struct State {
    in_flight: usize,
    /// When admitted requests finished, oldest first.
    done: VecDeque<Instant>,
}

/// A slot in every window, held while the request is in flight. Dropping it marks the
/// request finished (answer received, or given up).
#[derive(Debug)]
pub struct Permit {
    limiter: Arc<RateLimiter>,
    /// `false`: given back unused ([`Permit::cancel`]), so it never counts as finished.
    used: bool,
}

impl Permit {
    /// Give the slot back as if it had never been taken (the request did not go).
    pub fn cancel(mut self) {
        self.used = false;
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut state = self.limiter.lock();
        state.in_flight = state.in_flight.saturating_sub(1);
        if self.used {
            state.done.push_back(Instant::now());
        }
        drop(state);
        self.limiter.finished.notify_waiters();
    }
}

impl RateLimiter {
    /// `None` when there is nothing to limit.
    pub fn new(windows: &[RateWindow]) -> Option<Self> {
        if windows.is_empty() {
            return None;
        }
        Some(Self {
            windows: windows.to_vec(),
            state: Mutex::new(State::default()),
            finished: Notify::new(),
        })
    }

    /// Count a request that another counter (the fleet store) admitted, without checking:
    /// keeps this sidecar's own history warm for a fallback to its local share.
    pub fn record(self: &Arc<Self>) -> Permit {
        self.lock().in_flight += 1;
        Permit {
            limiter: self.clone(),
            used: true,
        }
    }

    /// This process's requests in its windows now: how many are in flight, and how long ago
    /// each finished one finished (within the longest window).
    pub fn history(&self, now: Instant) -> (usize, Vec<Duration>) {
        let state = self.lock();
        let longest = self.longest();
        let done = state
            .done
            .iter()
            .map(|t| now.duration_since(*t))
            .filter(|ago| *ago < longest)
            .collect();
        (state.in_flight, done)
    }

    /// Forget the finished requests (they were handed to the fleet store).
    pub fn forget(&self) {
        self.lock().done.clear();
    }

    /// The windows this limiter keeps.
    pub fn windows(&self) -> &[RateWindow] {
        &self.windows
    }

    fn longest(&self) -> Duration {
        self.windows.iter().map(|w| w.per).max().unwrap_or_default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Take a slot now if every window has one. Otherwise say how long until one frees up
    /// (`None`: not before a request in flight finishes).
    pub fn try_admit(self: &Arc<Self>, now: Instant) -> Result<Permit, Option<Duration>> {
        let mut state = self.lock();
        let longest = self.longest();
        while state
            .done
            .front()
            .is_some_and(|t| now.duration_since(*t) >= longest)
        {
            state.done.pop_front();
        }
        let mut wait = Some(Duration::ZERO);
        for w in &self.windows {
            let limit = w.requests as usize;
            let recent = state
                .done
                .iter()
                .rev()
                .take_while(|t| now.duration_since(**t) < w.per)
                .count();
            let used = state.in_flight + recent;
            if used < limit {
                continue;
            }
            // `used - limit + 1` of the recent ones must leave the window first.
            let must_leave = used - limit + 1;
            let this = if must_leave <= recent {
                let t = state.done[state.done.len() - recent + must_leave - 1];
                Some(w.per.saturating_sub(now.duration_since(t)))
            } else {
                None
            };
            wait = match (wait, this) {
                (Some(a), Some(b)) => Some(a.max(b)),
                _ => None,
            };
        }
        if wait == Some(Duration::ZERO) {
            state.in_flight += 1;
            Ok(Permit {
                limiter: self.clone(),
                used: true,
            })
        } else {
            Err(wait)
        }
    }

    /// Wait for a slot until `until`; refuse at once if none can come free by then.
    pub async fn admit(self: Arc<Self>, until: Instant) -> Result<Permit, Limited> {
        loop {
            // Listen for finishing requests before looking, so none is missed.
            let finished = self.finished.notified();
            tokio::pin!(finished);
            finished.as_mut().enable();
            let now = Instant::now();
            let wait = match self.try_admit(now) {
                Ok(permit) => return Ok(permit),
                Err(wait) => wait,
            };
            let shortest = self.windows.iter().map(|w| w.per).min().unwrap_or_default();
            match wait {
                Some(wait) if now + wait > until => return Err(Limited { retry_after: wait }),
                Some(wait) => {
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = &mut finished => {}
                    }
                }
                None => {
                    if tokio::time::timeout_at(until, &mut finished).await.is_err() {
                        return Err(Limited {
                            retry_after: shortest,
                        });
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(windows: &[(u32, u64)]) -> Arc<RateLimiter> {
        let windows: Vec<RateWindow> = windows
            .iter()
            .map(|(requests, ms)| RateWindow {
                requests: *requests,
                per: Duration::from_millis(*ms),
            })
            .collect();
        Arc::new(RateLimiter::new(&windows).unwrap())
    }

    #[test]
    fn no_windows_no_limiter() {
        assert!(RateLimiter::new(&[]).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_window_counts_requests_in_flight_and_finished_in_it() {
        let l = limiter(&[(3, 1000)]);
        let t0 = Instant::now();
        let a = l.try_admit(t0).unwrap();
        let b = l.try_admit(t0).unwrap();
        let c = l.try_admit(t0).unwrap();
        assert_eq!(
            l.try_admit(t0).unwrap_err(),
            None,
            "three in flight: wait for one"
        );
        drop((a, b, c)); // all finish at t0
        let wait = l.try_admit(t0 + Duration::from_millis(400)).unwrap_err();
        assert_eq!(wait, Some(Duration::from_millis(600)));
        // Once they leave the window, three more fit, not six.
        let t1 = t0 + Duration::from_millis(1000);
        let _held: Vec<_> = (0..3).map(|_| l.try_admit(t1).unwrap()).collect();
        assert!(l.try_admit(t1).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn every_window_must_admit() {
        // 5 per second, 2 per 100 ms.
        let l = limiter(&[(5, 1000), (2, 100)]);
        let t0 = Instant::now();
        drop(l.try_admit(t0).unwrap());
        drop(l.try_admit(t0).unwrap());
        assert!(l.try_admit(t0).is_err(), "the short window is full");
        tokio::time::advance(Duration::from_millis(100)).await;
        let t1 = Instant::now();
        drop(l.try_admit(t1).unwrap());
        drop(l.try_admit(t1).unwrap());
        tokio::time::advance(Duration::from_millis(100)).await;
        let t2 = Instant::now();
        drop(l.try_admit(t2).unwrap());
        let wait = l.try_admit(t2).unwrap_err().unwrap();
        assert!(
            wait >= Duration::from_millis(799),
            "the long window is full: {wait:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn admit_waits_up_to_the_limit_then_refuses() {
        let l = limiter(&[(1, 1000)]);
        drop(l.clone().admit(Instant::now()).await.unwrap());
        let refused = l
            .clone()
            .admit(Instant::now() + Duration::from_millis(500))
            .await
            .unwrap_err();
        assert!(refused.retry_after > Duration::from_millis(500));
        let started = Instant::now();
        drop(
            l.clone()
                .admit(Instant::now() + Duration::from_secs(2))
                .await
                .unwrap(),
        );
        assert!(started.elapsed() >= Duration::from_millis(1000));
    }

    #[tokio::test(start_paused = true)]
    async fn recorded_requests_count_and_their_history_is_kept() {
        let l = limiter(&[(2, 1000)]);
        let a = l.record();
        let b = l.record();
        let _c = l.record();
        assert!(l.try_admit(Instant::now()).is_err(), "recorded ones count");
        drop((a, b));
        tokio::time::advance(Duration::from_millis(300)).await;
        let (in_flight, done) = l.history(Instant::now());
        assert_eq!(in_flight, 1);
        assert_eq!(done, vec![Duration::from_millis(300); 2]);
        tokio::time::advance(Duration::from_millis(700)).await;
        assert!(l.history(Instant::now()).1.is_empty(), "out of the window");
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_wakes_when_a_request_in_flight_finishes() {
        let l = limiter(&[(1, 10)]);
        let first = l.try_admit(Instant::now()).unwrap();
        let l2 = l.clone();
        let waiter = tokio::spawn(async move {
            l2.admit(Instant::now() + Duration::from_secs(5))
                .await
                .map(drop)
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(first);
        assert!(waiter.await.unwrap().is_ok());
    }
}
