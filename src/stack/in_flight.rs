//! `rate_limit.max_in_flight`: how many of a route's requests may be at DigiCert at once. A
//! request waits for a slot up to `max_wait` (within its deadline), then gets 429. The slot
//! is held until the upstream's response body has been read to its end, so it also bounds
//! the route's busy HTTP/1.1 connections, and with them memory, under a burst.
//!
//! Our own layer: tower's `ConcurrencyLimit` waits without a bound in `poll_ready` and lets
//! its permit go with the response head, not the body.
//! It also times the exchange with DigiCert (retries included) for the access line.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::{Request, Response};
use http_body_util::BodyExt;
use pin_project_lite::pin_project;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

use super::ctx::{deadline, outcome_mut, routed};
use crate::body::{Holding, Outgoing, ProxyBody};
use crate::error::ProxyError;
use crate::metrics::Metrics;
use crate::router::RouteHandle;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

#[derive(Debug, Clone)]
pub struct InFlightLayer {
    metrics: Arc<Metrics>,
}

impl InFlightLayer {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for InFlightLayer {
    type Service = InFlight<S>;

    fn layer(&self, inner: S) -> Self::Service {
        InFlight {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct InFlight<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S> Service<Request<Outgoing>> for InFlight<S>
where
    S: Service<Request<Outgoing>, Response = Response<ProxyBody>, Error = ProxyError>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    type Response = Response<ProxyBody>;
    type Error = ProxyError;
    type Future = InFlightFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Outgoing>) -> Self::Future {
        let route = match routed(&req) {
            Ok(r) => r.route.clone(),
            Err(e) => return InFlightFuture::Done { error: Some(e) },
        };
        if let Ok(slot) = route.in_flight.clone().try_acquire_owned() {
            return InFlightFuture::Sending {
                future: self.inner.call(req),
                slot: Some(slot),
                started: Instant::now(),
            };
        }
        let until = admission_deadline(&route, deadline(&req));
        let service = self.inner.clone();
        let metrics = self.metrics.clone();
        InFlightFuture::Waiting {
            future: Box::pin(async move {
                let slot = match tokio::time::timeout_at(
                    until,
                    route.in_flight.clone().acquire_owned(),
                )
                .await
                {
                    Ok(Ok(slot)) => slot,
                    _ => {
                        // Per request at debug: under overload a warning per refusal
                        // would flood the log; the access line and the metric carry it.
                        tracing::debug!(
                            route = route.name(),
                            max_in_flight = route.config().rate_limit.max_in_flight,
                            "too many requests in flight to DigiCert; refusing rather than queueing longer"
                        );
                        return Err(refused(&route, &req, &metrics, Duration::from_secs(1)));
                    }
                };
                let started = Instant::now();
                let resp = service.oneshot(req).await?;
                Ok(hold(resp, slot, started))
            }),
        }
    }
}

pin_project! {
    #[project = InFlightProj]
    pub enum InFlightFuture<F> {
        Done { error: Option<ProxyError> },
        Sending { #[pin] future: F, slot: Option<OwnedSemaphorePermit>, started: Instant },
        Waiting { future: BoxFuture<Result<Response<ProxyBody>, ProxyError>> },
    }
}

impl<F> Future for InFlightFuture<F>
where
    F: Future<Output = Result<Response<ProxyBody>, ProxyError>>,
{
    type Output = Result<Response<ProxyBody>, ProxyError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            InFlightProj::Done { error } => {
                Poll::Ready(Err(error.take().unwrap_or(ProxyError::Internal)))
            }
            InFlightProj::Waiting { future } => future.as_mut().poll(cx),
            InFlightProj::Sending {
                future,
                slot,
                started,
            } => {
                let resp = ready!(future.poll(cx))?;
                match slot.take() {
                    Some(slot) => Poll::Ready(Ok(hold(resp, slot, *started))),
                    None => Poll::Ready(Err(ProxyError::Internal)),
                }
            }
        }
    }
}

/// The response, keeping `slot` until its body has been read to the end.
fn hold(
    mut resp: Response<ProxyBody>,
    slot: OwnedSemaphorePermit,
    started: Instant,
) -> Response<ProxyBody> {
    outcome_mut(&mut resp).upstream = Some(started.elapsed());
    resp.map(|body| Holding::new(body, slot).boxed_unsync())
}

/// How long a request may wait to be let through to DigiCert: `max_wait`, within its
/// deadline.
pub fn admission_deadline(route: &RouteHandle, deadline: Instant) -> Instant {
    deadline.min(Instant::now() + route.config().rate_limit.max_wait)
}

/// The 429 for a request the route's limits did not let through, counted (by caller too,
/// where callers are configured).
pub fn refused<B>(
    route: &RouteHandle,
    req: &Request<B>,
    metrics: &Metrics,
    retry_after: Duration,
) -> ProxyError {
    let caller = super::ctx::ctx(req).and_then(|c| c.caller.as_ref());
    metrics.rate_limited(route.name(), caller.map(|c| &c.name));
    ProxyError::RateLimited {
        route: route.name().to_string(),
        retry_after,
    }
}
