//! DigiCert's rolling windows ([`crate::rate_limit`]), per attempt: every request that reaches
//! DigiCert, retries included, must find room in every window of its route. A request waits
//! up to `max_wait` (within its deadline) for room, then gets 429 with `Retry-After`. The
//! window's slot is held until DigiCert's answer (or the failure) arrives.
//!
//! Our own layer: tower's `RateLimit` is a fixed-interval token count, which admits up to
//! twice the limit within one rolling window (see `rate_limit.rs`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::Request;
use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

use super::ctx::{deadline, routed};
use super::in_flight::{admission_deadline, refused};
use crate::body::Outgoing;
use crate::error::ProxyError;
use crate::metrics::Metrics;
use crate::rate_limit::{Permit, Windows};
use crate::router::RouteHandle;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

#[derive(Debug, Clone)]
pub struct RateWindowLayer {
    metrics: Arc<Metrics>,
}

impl RateWindowLayer {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for RateWindowLayer {
    type Service = RateWindows<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateWindows {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct RateWindows<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S> Service<Request<Outgoing>> for RateWindows<S>
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
        let route = match routed(&req) {
            Ok(r) => r.route.clone(),
            Err(e) => return WindowFuture::Done { error: Some(e) },
        };
        let Some(limiter) = route.limiter.clone() else {
            return WindowFuture::Sending {
                future: self.inner.call(req),
                permit: None,
            };
        };
        admit_then_call(
            limiter,
            route,
            req,
            &mut self.inner,
            &self.metrics,
            Refusal::Route,
        )
    }
}

/// Whose windows refused a request: the route's (DigiCert's), or one caller's share of them.
#[derive(Debug, Clone, Copy)]
pub enum Refusal {
    Route,
    CallerShare,
}

/// Let `req` through `windows` now, or after waiting for room up to `max_wait` (within its
/// deadline), then call `inner`; else the counted 429. The window's slot is held until the
/// answer (or the failure) arrives.
pub fn admit_then_call<S>(
    windows: Windows,
    route: Arc<RouteHandle>,
    req: Request<Outgoing>,
    inner: &mut S,
    metrics: &Arc<Metrics>,
    refusal: Refusal,
) -> WindowFuture<S::Future, S::Response>
where
    S: Service<Request<Outgoing>, Error = ProxyError> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: Send,
{
    if let Some(permit) = windows.try_admit(Instant::now()) {
        return WindowFuture::Sending {
            future: inner.call(req),
            permit: Some(permit),
        };
    }
    let until = admission_deadline(&route, deadline(&req));
    // The service was made ready for this call; a clone takes its place.
    let clone = inner.clone();
    let service = std::mem::replace(inner, clone);
    let metrics = metrics.clone();
    WindowFuture::Waiting {
        future: Box::pin(async move {
            let permit = match windows.admit(until).await {
                Ok(permit) => permit,
                Err(limited) => {
                    match refusal {
                        Refusal::Route => {
                            tracing::warn!(route = route.name(), retry_after = ?limited.retry_after, "rate limit: refusing rather than exceed DigiCert's windows")
                        }
                        Refusal::CallerShare => {
                            tracing::debug!(route = route.name(), retry_after = ?limited.retry_after, "caller share: this caller has used its share of the route's windows")
                        }
                    }
                    return Err(refused(&route, &req, &metrics, limited.retry_after));
                }
            };
            let answer = service.oneshot(req).await;
            drop(permit);
            answer
        }),
    }
}

pin_project! {
    #[project = WindowProj]
    pub enum WindowFuture<F, R> {
        Done { error: Option<ProxyError> },
        Sending { #[pin] future: F, permit: Option<Permit> },
        Waiting { future: BoxFuture<Result<R, ProxyError>> },
    }
}

impl<F, R> Future for WindowFuture<F, R>
where
    F: Future<Output = Result<R, ProxyError>>,
{
    type Output = Result<R, ProxyError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            WindowProj::Done { error } => {
                Poll::Ready(Err(error.take().unwrap_or(ProxyError::Internal)))
            }
            WindowProj::Waiting { future } => future.as_mut().poll(cx),
            WindowProj::Sending { future, permit } => {
                let answer = ready!(future.poll(cx));
                // The answer (or the failure) is in: the request finished for the windows.
                permit.take();
                Poll::Ready(answer)
            }
        }
    }
}
