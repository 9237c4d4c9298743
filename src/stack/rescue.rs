//! The one place where a request error becomes a response ([`ProxyError::into_response`]),
//! and where every request gets its access line and its metrics, written when the response
//! body ends or is dropped. Upstream failures are counted by route and reason here.
//!
//! Our own layer: the access line is batched and formatted by hand (`telemetry`), and it
//! needs what only this stack knows — the route, DigiCert's time, the error's reason.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::BodyExt;
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use super::ctx::Outcome;
use super::request_id::REQUEST_ID;
use crate::body::{BoxError, Guarded, ProxyBody};
use crate::error::{ERROR_HEADER, Refused};
use crate::metrics::Metrics;
use crate::telemetry::{AccessLog, RequestId};

#[derive(Debug, Clone)]
pub struct RescueLayer {
    metrics: Arc<Metrics>,
    body_idle_timeout: Duration,
}

impl RescueLayer {
    pub fn new(metrics: Arc<Metrics>, body_idle_timeout: Duration) -> Self {
        Self {
            metrics,
            body_idle_timeout,
        }
    }
}

impl<S> Layer<S> for RescueLayer {
    type Service = Rescue<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Rescue {
            inner,
            settings: self.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Rescue<S> {
    inner: S,
    settings: RescueLayer,
}

impl<S, B, RB> Service<Request<B>> for Rescue<S>
where
    S: Service<Request<B>, Response = Response<RB>, Error = Refused>,
    RB: Body<Data = Bytes> + Send + 'static,
    RB::Error: Into<BoxError>,
{
    type Response = Response<ProxyBody>;
    type Error = std::convert::Infallible;
    type Future = RescueFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Every layer below is always ready (none holds back in `poll_ready`).
        match self.inner.poll_ready(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(_) => Poll::Ready(Ok(())),
        }
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let id = req
            .headers()
            .get(&REQUEST_ID)
            .and_then(|v| RequestId::from_client(v.as_bytes()))
            .unwrap_or_else(RequestId::random);
        let mut log = AccessLog::new(
            id,
            req.method().clone(),
            req.uri().path_and_query().cloned(),
        );
        log.metrics = Some(self.settings.metrics.clone());
        RescueFuture {
            inner: self.inner.call(req),
            log: Some(log),
            settings: self.settings.clone(),
        }
    }
}

pin_project! {
    pub struct RescueFuture<F> {
        #[pin]
        inner: F,
        log: Option<AccessLog>,
        settings: RescueLayer,
    }
}

impl<F, RB> Future for RescueFuture<F>
where
    F: Future<Output = Result<Response<RB>, Refused>>,
    RB: Body<Data = Bytes> + Send + 'static,
    RB::Error: Into<BoxError>,
{
    type Output = Result<Response<ProxyBody>, std::convert::Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let Some(mut log) = this.log.take() else {
            return Poll::Pending;
        };
        let idle = Some(this.settings.body_idle_timeout);
        let resp = match result {
            Ok(resp) => {
                let (mut parts, body) = resp.into_parts();
                if let Some(outcome) = parts.extensions.remove::<Outcome>() {
                    log.route = outcome.route;
                    log.caller = outcome.caller;
                    log.upstream_ms = outcome.upstream.map(|t| t.as_secs_f64() * 1000.0);
                }
                // An answer the sidecar made deeper down (a caught panic, a broken error
                // answer from DigiCert) names its reason in its header.
                log.error = parts
                    .headers
                    .get(ERROR_HEADER)
                    .and_then(|v| crate::error::reason_named(v.as_bytes()));
                log.status = parts.status;
                let body = Guarded::new(body, None, idle, Some(Box::new(log)));
                Response::from_parts(parts, body.boxed_unsync())
            }
            Err(Refused {
                error,
                route,
                caller,
            }) => {
                let reason = error.reason();
                if error.is_upstream() {
                    this.settings
                        .metrics
                        .upstream_error(route.as_deref().unwrap_or("none"), reason);
                    tracing::warn!(route = route.as_deref().unwrap_or("-"), error = %error, "upstream error");
                } else {
                    tracing::debug!(error = %error, "request refused");
                }
                log.route = route;
                log.caller = caller;
                log.error = Some(reason);
                let resp = error.into_response();
                log.status = resp.status();
                resp.map(|body| Guarded::new(body, None, idle, Some(Box::new(log))).boxed_unsync())
            }
        };
        Poll::Ready(Ok(resp))
    }
}
