//! `request_timeout`: everything from here down — waiting for a slot, DigiCert's answer,
//! retries — must finish by the request's deadline. tower's `Timeout` enforces it; this
//! layer also puts the [`Deadline`] in the request, so the layers below can decide whether a
//! wait still fits (a backoff, `Retry-After`, `max_wait`), and turns tower's `Elapsed` into
//! `upstream_timeout`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::Request;
use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower::timeout::Timeout;
use tower::timeout::error::Elapsed;
use tower::{BoxError, Layer, Service};

use super::ctx::ctx_mut;
use crate::error::ProxyError;

#[derive(Debug, Clone, Copy)]
pub struct DeadlineLayer {
    pub timeout: Duration,
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = WithDeadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        WithDeadline {
            inner: Timeout::new(inner, self.timeout),
            timeout: self.timeout,
        }
    }
}

#[derive(Debug, Clone)]
pub struct WithDeadline<S> {
    inner: Timeout<S>,
    timeout: Duration,
}

impl<S, B> Service<Request<B>> for WithDeadline<S>
where
    S: Service<Request<B>, Error = ProxyError>,
{
    type Response = S::Response;
    type Error = ProxyError;
    type Future = DeadlineFuture<tower::timeout::future::ResponseFuture<S::Future>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        let timeout = self.timeout;
        self.inner
            .poll_ready(cx)
            .map_err(|e| to_proxy_error(e, timeout))
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        ctx_mut(&mut req).deadline = Some(Instant::now() + self.timeout);
        DeadlineFuture {
            inner: self.inner.call(req),
            timeout: self.timeout,
        }
    }
}

fn to_proxy_error(e: BoxError, timeout: Duration) -> ProxyError {
    if e.is::<Elapsed>() {
        return ProxyError::UpstreamTimeout(timeout);
    }
    match e.downcast::<ProxyError>() {
        Ok(e) => *e,
        Err(_) => ProxyError::Internal,
    }
}

pin_project! {
    pub struct DeadlineFuture<F> {
        #[pin]
        inner: F,
        timeout: Duration,
    }
}

impl<F, R> Future for DeadlineFuture<F>
where
    F: Future<Output = Result<R, BoxError>>,
{
    type Output = Result<R, ProxyError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let timeout = *this.timeout;
        Poll::Ready(ready!(this.inner.poll(cx)).map_err(|e| to_proxy_error(e, timeout)))
    }
}
