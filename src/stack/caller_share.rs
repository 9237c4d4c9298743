//! `rate_limit.caller_share` as a layer, per attempt, just above the route's rate windows:
//! each caller of a route (and `anonymous`, as one more) has rolling windows of its own,
//! the route's windows scaled by the share (at least 1 request each), and an attempt must
//! find room in its caller's windows before it may take room in the route's. So one
//! application's burst waits (then gets 429) within its share, leaving the rest of each
//! window to the others, while the route's windows still bound them all together.
//!
//! These windows are local to this process even when the route's windows are counted in
//! a fleet store: a share is about the applications of one sidecar, not about the fleet.
//! Our own layer, for the reason `rate_window.rs` gives.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::Request;
use tower::{Layer, Service};

use super::ctx::{ctx, routed};
use super::rate_window::{Refusal, WindowFuture, admit_then_call};
use crate::body::Outgoing;
use crate::config::RateWindow;
use crate::error::ProxyError;
use crate::metrics::Metrics;
use crate::rate_limit::{RateLimiter, Windows};
use crate::router::RouteHandle;

/// The windows of each (route, caller) of one listener whose routes set `caller_share`.
#[derive(Debug, Default)]
pub struct Shares {
    /// By route; then by caller index, `anonymous` last.
    routes: Vec<(Arc<RouteHandle>, Vec<Arc<RateLimiter>>)>,
}

impl Shares {
    /// Windows for `callers` named callers (and `anonymous`) on each route with a share.
    pub fn new<'a>(routes: impl IntoIterator<Item = &'a Arc<RouteHandle>>, callers: usize) -> Self {
        let routes = routes
            .into_iter()
            .filter_map(|r| {
                let rl = &r.config().rate_limit;
                let windows = scaled(&rl.windows, rl.caller_share?);
                let per_caller = (0..=callers)
                    .filter_map(|_| RateLimiter::new(&windows).map(Arc::new))
                    .collect::<Vec<_>>();
                (!per_caller.is_empty()).then(|| (r.clone(), per_caller))
            })
            .collect();
        Self { routes }
    }

    /// The windows of the request's caller on its route, if the route shares.
    fn of<B>(&self, req: &Request<B>) -> Option<(&Arc<RouteHandle>, &Arc<RateLimiter>)> {
        if self.routes.is_empty() {
            return None;
        }
        let route = &routed(req).ok()?.route;
        let (route, per_caller) = self.routes.iter().find(|(r, _)| Arc::ptr_eq(r, route))?;
        let caller = ctx(req)?.caller.as_ref()?;
        let i = caller.index.unwrap_or(per_caller.len() - 1);
        Some((route, per_caller.get(i)?))
    }
}

/// A route's windows as one caller's share of them.
pub fn scaled(windows: &[RateWindow], share: f64) -> Vec<RateWindow> {
    windows
        .iter()
        .map(|w| RateWindow {
            requests: ((f64::from(w.requests) * share).floor() as u32).max(1),
            per: w.per,
        })
        .collect()
}

#[derive(Debug, Clone)]
pub struct CallerShareLayer {
    shares: Arc<Shares>,
    metrics: Arc<Metrics>,
}

impl CallerShareLayer {
    pub fn new(shares: Shares, metrics: Arc<Metrics>) -> Self {
        Self {
            shares: Arc::new(shares),
            metrics,
        }
    }
}

impl<S> Layer<S> for CallerShareLayer {
    type Service = CallerShare<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CallerShare {
            inner,
            shares: self.shares.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct CallerShare<S> {
    inner: S,
    shares: Arc<Shares>,
    metrics: Arc<Metrics>,
}

impl<S> Service<Request<Outgoing>> for CallerShare<S>
where
    S: Service<Request<Outgoing>, Error = ProxyError> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: Send,
{
    type Response = S::Response;
    type Error = ProxyError;
    type Future = WindowFuture<S::Future, S::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Outgoing>) -> Self::Future {
        let Some((route, limiter)) = self.shares.of(&req) else {
            return WindowFuture::Sending {
                future: self.inner.call(req),
                permit: None,
            };
        };
        let (route, windows) = (route.clone(), Windows::Local(limiter.clone()));
        admit_then_call(
            windows,
            route,
            req,
            &mut self.inner,
            &self.metrics,
            Refusal::CallerShare,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_share_scales_every_window_and_leaves_at_least_one() {
        let w = |requests, secs| RateWindow {
            requests,
            per: Duration::from_secs(secs),
        };
        assert_eq!(
            scaled(&[w(1000, 180), w(100, 5), w(1, 1)], 0.25),
            vec![w(250, 180), w(25, 5), w(1, 1)]
        );
        assert_eq!(scaled(&[w(3, 1)], 1.0), vec![w(3, 1)]);
    }
}
