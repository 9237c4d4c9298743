//! A route's windows counted in the fleet store ([`super::store`]), so that every sidecar
//! holding the same key shares DigiCert's windows.
//!
//! What it guarantees. While the store answers, the windows are exact across the fleet, as
//! the local ones are in one process: a request is recorded at admission (store clock) as in
//! flight and counts in every window until its answer arrives plus the window's length (the
//! release call stamps its finish on the store clock; an unreleased request counts as
//! finishing after `lease`, the longest a request can take). While the store is down,
//! `on_error` decides; with `local`, each sidecar keeps `1/fleet_size` of every window, so
//! the fleet stays within the windows if `fleet_size` is at least its size. This sidecar
//! remembers its own recent requests all along, and gives the store back what it missed:
//! the requests admitted during the outage, or all recent ones if the store came back empty
//! (its epoch changed). For one longest window after an outage, a request needs room in
//! this sidecar's share as well, so that sidecars which have not given their history back
//! yet cannot be overrun. The one case left: a sidecar that cannot reach a store the others
//! reach (a partition) for longer than that is counted by the others only when it returns:
//! the fleet may then exceed a window by that sidecar's share.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use arc_swap::ArcSwap;

use super::budget::budget_name;
use super::local::{Permit as LocalPermit, RateLimiter};
use super::store::{Answer, Store};
use super::{Limited, Permit};
use crate::config::{OnError, RateWindow};
use crate::credential::CredentialStore;

/// How long a 429 during a `closed` outage tells the caller to wait.
const CLOSED_RETRY_AFTER: Duration = Duration::from_secs(1);

/// One route's windows in the store.
#[derive(Debug)]
pub struct StoreWindows {
    store: Arc<Store>,
    route: Arc<str>,
    /// Where the budget's name comes from: configured, or the route's credential.
    derived_from: Option<Arc<CredentialStore>>,
    /// The budget's keys in the store, for the credential generation they were made from.
    keyed: ArcSwap<Keyed>,
    /// `requests, per (ms)` of each window, as the script takes them.
    window_args: Vec<String>,
    lease: Duration,
    longest: Duration,
    shortest: Duration,
    /// This sidecar's own requests, in its share of each window (`on_error = local`) or in
    /// the full windows (history only).
    share: Arc<RateLimiter>,
    /// Requests admitted while the store was down, to give back when it answers.
    offline: Arc<RateLimiter>,
    /// The store epoch this route last saw (0: none).
    epoch: AtomicI64,
    /// The credential changed: the next epoch seen is adopted without giving it any history
    /// (the old key's requests do not count against the new key at DigiCert).
    rekeyed: std::sync::atomic::AtomicBool,
    /// The end of the outage whose offline requests were given back.
    seen_recovery: AtomicU64,
    seeding: tokio::sync::Mutex<()>,
}

/// A budget's keys, and the credential generation its name was derived from.
#[derive(Debug)]
struct Keyed {
    generation: u64,
    keys: [String; 2],
}

/// A slot held in the store; dropping it records the finish there (in the background).
#[derive(Debug)]
pub struct StorePermit {
    windows: Arc<StoreWindows>,
    keyed: Arc<Keyed>,
    member: String,
    _history: LocalPermit,
}

impl Drop for StorePermit {
    fn drop(&mut self) {
        let windows = self.windows.clone();
        let keyed = self.keyed.clone();
        let member = std::mem::take(&mut self.member);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let args = windows.args("release", 0, &member);
                if let Err(e) = windows.store.call(&keyed.keys, &args).await {
                    // It still counts until its lease runs out: safe, if wasteful.
                    windows.store.failed(Some(&windows.route), &e);
                }
            });
        }
    }
}

/// `requests / fleet_size`, rounded down, at least 1.
pub fn share_of(windows: &[RateWindow], fleet_size: u32) -> Vec<RateWindow> {
    windows
        .iter()
        .map(|w| RateWindow {
            requests: (w.requests / fleet_size.max(1)).max(1),
            per: w.per,
        })
        .collect()
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl StoreWindows {
    /// `None` when there are no windows. `budget`: the configured name, else one derived
    /// from `credentials` (again whenever they change). `lease`: the longest a request can
    /// be in flight.
    pub fn new(
        store: Arc<Store>,
        route: &str,
        budget: Option<&str>,
        credentials: &Arc<CredentialStore>,
        windows: &[RateWindow],
        lease: Duration,
    ) -> Option<Self> {
        let live = credentials.current();
        let shares = match store.on_error() {
            OnError::Local { fleet_size } => share_of(windows, fleet_size),
            OnError::Open | OnError::Closed => windows.to_vec(),
        };
        let share = Arc::new(RateLimiter::new(&shares)?);
        let offline = Arc::new(RateLimiter::new(windows)?);
        Some(Self {
            keyed: ArcSwap::from_pointee(Keyed {
                generation: live.generation,
                keys: store.keys(&budget_name(budget, &live)),
            }),
            derived_from: budget.is_none().then(|| credentials.clone()),
            window_args: windows
                .iter()
                .flat_map(|w| [w.requests.to_string(), ms(w.per).to_string()])
                .collect(),
            lease,
            longest: windows.iter().map(|w| w.per).max().unwrap_or_default(),
            shortest: windows.iter().map(|w| w.per).min().unwrap_or_default(),
            route: Arc::from(route),
            share,
            offline,
            epoch: AtomicI64::new(0),
            rekeyed: std::sync::atomic::AtomicBool::new(false),
            seen_recovery: AtomicU64::new(0),
            seeding: tokio::sync::Mutex::new(()),
            store,
        })
    }

    /// The budget's keys now: a new credential (a rotated key) has a budget of its own.
    fn keyed(&self) -> Arc<Keyed> {
        let keyed = self.keyed.load_full();
        let Some(credentials) = &self.derived_from else {
            return keyed;
        };
        let live = credentials.current();
        if live.generation == keyed.generation {
            return keyed;
        }
        let new = Arc::new(Keyed {
            generation: live.generation,
            keys: self.store.keys(&budget_name(None, &live)),
        });
        if new.keys != keyed.keys {
            tracing::info!(route = %self.route, "the credential changed: its windows are counted under the new key's budget");
            self.share.forget();
            self.offline.forget();
            self.rekeyed.store(true, Ordering::Release);
            self.epoch.store(0, Ordering::Release);
        }
        self.keyed.store(new.clone());
        new
    }

    /// The script's arguments up to the mode's own.
    fn args(&self, mode: &str, epoch: i64, tail: &str) -> Vec<String> {
        vec![
            mode.to_string(),
            epoch.to_string(),
            rand::random_range(1..i64::from(i32::MAX)).to_string(),
            ms(self.lease).to_string(),
            ms(self.longest).to_string(),
            tail.to_string(),
        ]
    }

    /// Without waiting: only while the store is down (the fallback answers at once).
    pub fn try_admit(&self, now: Instant) -> Option<Permit> {
        if self.store.is_up() {
            return None;
        }
        match self.store.on_error() {
            OnError::Local { .. } => {
                let share = self.share.try_admit(now).ok()?;
                Some(Permit::Offline(share, self.offline.record()))
            }
            OnError::Open => Some(Permit::Offline(self.share.record(), self.offline.record())),
            OnError::Closed => None,
        }
    }

    /// Wait for a slot in every window of the store until `until`; the fallback while the
    /// store does not answer.
    pub async fn admit(self: Arc<Self>, until: Instant) -> Result<Permit, Limited> {
        loop {
            if !self.store.is_up() {
                return self.fallback(until).await;
            }
            if let Err(e) = self.give_back().await {
                self.store.failed(Some(&self.route), &e);
                continue;
            }
            // Just after an outage, this sidecar's share must have room as well.
            let mut warm = match self.store.on_error() {
                OnError::Local { .. } if self.store.warming(self.longest) => {
                    Some(self.share.clone().admit(until).await?)
                }
                _ => None,
            };
            let keyed = self.keyed();
            let member = self.store.member();
            let epoch = self.epoch.load(Ordering::Acquire);
            let mut args = self.args("admit", epoch, &member);
            args.extend_from_slice(&self.window_args);
            let now = Instant::now();
            let answer = match self.store.call(&keyed.keys, &args).await {
                Ok(v) => Store::answer(&v),
                Err(e) => Err(e),
            };
            if !matches!(answer, Ok(Answer::Admitted { .. }))
                && let Some(share) = warm.take()
            {
                share.cancel();
            }
            let (wait, busy) = match answer {
                Ok(Answer::Admitted { .. }) => {
                    let history = warm.unwrap_or_else(|| self.share.record());
                    return Ok(Permit::Store(StorePermit {
                        windows: self.clone(),
                        keyed,
                        member,
                        _history: history,
                    }));
                }
                Err(e) => {
                    self.store.failed(Some(&self.route), &e);
                    continue;
                }
                Ok(Answer::Epoch(new)) => {
                    if let Err(e) = self.seed_all(epoch, new).await {
                        self.store.failed(Some(&self.route), &e);
                    }
                    continue;
                }
                Ok(Answer::Wait { wait, busy }) => (wait, busy),
            };
            if now + wait > until || (busy && now >= until) {
                let retry_after = if wait.is_zero() { self.shortest } else { wait };
                return Err(Limited { retry_after });
            }
            // A request in flight finishes at a time no one knows: look again soon.
            let poll =
                (self.shortest / 50).clamp(Duration::from_millis(5), Duration::from_millis(100));
            let next = if busy {
                now + wait.max(poll).mul_f64(0.75 + rand::random::<f64>() / 2.0)
            } else {
                now + wait
            };
            tokio::time::sleep_until(next.min(until)).await;
        }
    }

    async fn fallback(&self, until: Instant) -> Result<Permit, Limited> {
        match self.store.on_error() {
            OnError::Local { .. } => {
                let share = self.share.clone().admit(until).await?;
                Ok(Permit::Offline(share, self.offline.record()))
            }
            OnError::Open => Ok(Permit::Offline(self.share.record(), self.offline.record())),
            OnError::Closed => Err(Limited {
                retry_after: CLOSED_RETRY_AFTER,
            }),
        }
    }

    /// After an outage, give the store the requests admitted while it was down; if it came
    /// back empty (a new epoch), all of this sidecar's recent requests.
    async fn give_back(&self) -> Result<(), String> {
        let recovered = self.store.recovered_ms();
        if self.seen_recovery.load(Ordering::Acquire) == recovered {
            return Ok(());
        }
        let lost = {
            let _one = self.seeding.lock().await;
            if self.seen_recovery.load(Ordering::Acquire) == recovered {
                return Ok(());
            }
            let epoch = self.epoch.load(Ordering::Acquire);
            let lost = if epoch == 0 {
                None // never counted there yet: the first admission gives all
            } else {
                self.seed(epoch, &self.offline)
                    .await?
                    .err()
                    .map(|new| (epoch, new))
            };
            self.offline.forget();
            self.seen_recovery.store(recovered, Ordering::Release);
            lost
        };
        match lost {
            Some((seen, new)) => self.seed_all(seen, new).await,
            None => Ok(()),
        }
    }

    /// The store's epoch changed from `seen` to `new`: give it this sidecar's recent requests.
    async fn seed_all(&self, seen: i64, new: i64) -> Result<(), String> {
        let _one = self.seeding.lock().await;
        if self.epoch.load(Ordering::Acquire) != seen {
            return Ok(()); // another request did it
        }
        if self.rekeyed.swap(false, Ordering::AcqRel) {
            self.epoch.store(new, Ordering::Release);
            return Ok(());
        }
        if seen != 0 {
            tracing::warn!(route = %self.route, "rate limit store lost the windows (restarted empty?); giving it this sidecar's recent requests");
        }
        if self.seed(new, &self.share).await?.is_ok() {
            self.offline.forget();
            self.epoch.store(new, Ordering::Release);
        }
        Ok(())
    }

    /// Record `from`'s history in the store under `epoch`: `Ok(epoch)`, or `Err(new)` if the
    /// store's epoch is another (nothing recorded).
    async fn seed(&self, epoch: i64, from: &RateLimiter) -> Result<Result<i64, i64>, String> {
        let (in_flight, done) = from.history(Instant::now());
        let member = self.store.member();
        let mut args = self.args("seed", epoch, &member);
        args.extend(std::iter::repeat_n("-1".to_string(), in_flight));
        args.extend(done.iter().map(|ago| ms(*ago).to_string()));
        match Store::answer(&self.store.call(&self.keyed().keys, &args).await?)? {
            Answer::Admitted { epoch } => Ok(Ok(epoch)),
            Answer::Epoch(new) => Ok(Err(new)),
            Answer::Wait { .. } => Err("unexpected answer to seed".into()),
        }
    }
}
