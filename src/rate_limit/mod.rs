//! DigiCert's rolling windows for a route, shared by all its callers: counted in this
//! process ([`local`]) or, for a fleet of sidecars that share one key, in a store that they
//! all use ([`fleet`] on a [`store`]). The rate-window layer asks a route's [`Windows`] for
//! a [`Permit`] and holds it until DigiCert's answer arrives.
//!
//! An enum rather than a trait object: the local windows' fast path stays a direct call.

pub mod budget;
pub mod fleet;
pub mod local;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

pub use fleet::StoreWindows;
pub use local::RateLimiter;
pub use store::Store;

/// No slot came free within the wait allowed; one frees up after about `retry_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    pub retry_after: Duration,
}

/// A route's windows.
///
/// The seam for `caller_share` (the callers issue): a caller's own share of each window is
/// a second, per-caller counter checked before these, on the same `Windows`.
#[derive(Debug, Clone)]
pub enum Windows {
    /// Counted in this process.
    Local(Arc<RateLimiter>),
    /// Counted in the fleet store, with this sidecar's share as the fallback.
    Store(Arc<StoreWindows>),
}

/// A slot in every window of a route, held while the request is in flight. Dropping it
/// marks the request finished.
#[derive(Debug)]
pub enum Permit {
    Local(local::Permit),
    Store(fleet::StorePermit),
    /// Admitted while the store was down: this sidecar's own count, and the record to give
    /// the store when it answers again.
    Offline(local::Permit, local::Permit),
}

impl Windows {
    /// A route's windows: in the fleet store when there is one, else in this process.
    /// `None`: the route has no windows. `lease`: the longest a request can be in flight.
    pub fn for_route(
        credentials: &Arc<crate::credential::CredentialStore>,
        store: Option<&Arc<Store>>,
        lease: Duration,
    ) -> Option<Self> {
        let route = credentials.route();
        let windows = &route.rate_limit.windows;
        match store {
            None => RateLimiter::new(windows).map(|l| Windows::Local(Arc::new(l))),
            Some(store) => StoreWindows::new(
                store.clone(),
                &route.name,
                route.rate_limit.budget.as_deref(),
                credentials,
                windows,
                lease,
            )
            .map(|w| Windows::Store(Arc::new(w))),
        }
    }

    /// A slot now, without waiting, if one can be had that way; `None`: ask [`Self::admit`].
    pub fn try_admit(&self, now: Instant) -> Option<Permit> {
        match self {
            Windows::Local(l) => l.try_admit(now).ok().map(Permit::Local),
            Windows::Store(s) => s.try_admit(now),
        }
    }

    /// Wait for a slot until `until`; refuse once none can come free by then.
    pub async fn admit(self, until: Instant) -> Result<Permit, Limited> {
        match self {
            Windows::Local(l) => l.admit(until).await.map(Permit::Local),
            Windows::Store(s) => s.admit(until).await,
        }
    }
}
