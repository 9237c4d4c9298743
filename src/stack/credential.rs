//! Strip, then set: the request loses every hop-by-hop header and every credential its client
//! sent, is addressed to the route's upstream, and gets the route's current credential (the
//! key header; the client certificate rides with the connection pool of the snapshot the
//! request's context carries). On the way back, hop-by-hop headers go and any header that echoes
//! the key is redacted.
//!
//! When DigiCert answers 401/403 in a shape that rejects the credential
//! ([`crate::digicert::is_rejection`], read up to a small bound, whatever the framing), the
//! route's credential is reloaded once and, if it changed and the body can be sent again,
//! the request goes once more with the new one.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Full};
use pin_project_lite::pin_project;
use tower::{Layer, Service, ServiceExt};

use super::ctx::{RequestCtx, Routed, ctx, ctx_mut, routed};
use crate::body::{Outgoing, Prefixed, ProxyBody};
use crate::credential::Live;
use crate::credential::store::Reloaded;
use crate::digicert::{REJECTION_READ_LIMIT, is_rejection};
use crate::error::ProxyError;
use crate::headers;
use crate::metrics::Metrics;
use crate::router::RouteHandle;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

#[derive(Debug, Clone)]
pub struct CredentialLayer {
    metrics: Arc<Metrics>,
}

impl CredentialLayer {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for CredentialLayer {
    type Service = AttachCredential<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AttachCredential {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct AttachCredential<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S> Service<Request<Outgoing>> for AttachCredential<S>
where
    S: Service<Request<Outgoing>, Response = Response<ProxyBody>, Error = ProxyError>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    type Response = Response<ProxyBody>;
    type Error = ProxyError;
    type Future = CredentialFuture<S, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Outgoing>) -> Self::Future {
        let route = match routed(&req).cloned() {
            Ok(Routed { route, forward, .. }) => match address(&mut req, &route, forward) {
                Ok(()) => route,
                Err(e) => return CredentialFuture::Done { error: Some(e) },
            },
            Err(e) => return CredentialFuture::Done { error: Some(e) },
        };
        // Kept to send again with a reloaded credential: only a held body can go twice.
        let again = Backup::of(&req).map(|b| (b, self.inner.clone()));
        let live = route.store.current();
        attach(&mut req, live.clone());
        CredentialFuture::Sending {
            future: self.inner.call(req),
            again,
            route,
            live,
            metrics: self.metrics.clone(),
        }
    }
}

pin_project! {
    #[project = CredentialProj]
    pub enum CredentialFuture<S, F> {
        Done { error: Option<ProxyError> },
        Sending {
            #[pin] future: F,
            again: Option<(Backup, S)>,
            route: Arc<RouteHandle>,
            // The snapshot whose key was sent: the one to redact from the answer.
            live: Arc<Live>,
            metrics: Arc<Metrics>,
        },
        Rejected { future: BoxFuture<Result<Response<ProxyBody>, ProxyError>> },
    }
}

impl<S, F> Future for CredentialFuture<S, F>
where
    S: Service<Request<Outgoing>, Response = Response<ProxyBody>, Error = ProxyError>
        + Send
        + 'static,
    S::Future: Send,
    F: Future<Output = Result<Response<ProxyBody>, ProxyError>>,
{
    type Output = Result<Response<ProxyBody>, ProxyError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let next = match self.as_mut().project() {
            CredentialProj::Done { error } => {
                return Poll::Ready(Err(error.take().unwrap_or(ProxyError::Internal)));
            }
            CredentialProj::Rejected { future } => return future.as_mut().poll(cx),
            CredentialProj::Sending {
                future,
                again,
                route,
                live,
                metrics,
            } => {
                let mut resp = ready!(future.poll(cx))?;
                if !matches!(
                    resp.status(),
                    StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
                ) {
                    tidy_response(&mut resp, live);
                    return Poll::Ready(Ok(resp));
                }
                Box::pin(after_refusal(
                    resp,
                    again.take(),
                    route.clone(),
                    live.clone(),
                    metrics.clone(),
                ))
            }
        };
        self.set(CredentialFuture::Rejected { future: next });
        self.poll(cx)
    }
}

/// A 401/403 from DigiCert: if it rejects the credential, reload, and if the credential
/// changed, send the request once more.
async fn after_refusal<S>(
    resp: Response<ProxyBody>,
    again: Option<(Backup, S)>,
    route: Arc<RouteHandle>,
    sent: Arc<Live>,
    metrics: Arc<Metrics>,
) -> Result<Response<ProxyBody>, ProxyError>
where
    S: Service<Request<Outgoing>, Response = Response<ProxyBody>, Error = ProxyError>,
{
    let status = resp.status();
    let (mut resp, rejected) = inspect(resp).await;
    if !rejected {
        tidy_response(&mut resp, &sent);
        return Ok(resp);
    }
    let name = route.name();
    metrics.rejected(name);
    tracing::warn!(
        route = name,
        status = status.as_u16(),
        "DigiCert rejected the route's credential: the key was revoked or replaced, or the \
         client certificate expired; update the secret the route reads (it is reloaded on \
         change and on SIGHUP)"
    );
    let changed = crate::credential::watch::reload_route_off_thread(
        &route.store,
        &metrics,
        "rejected by DigiCert",
    )
    .await
        == Some(Reloaded::Changed);
    let Some((backup, service)) = again.filter(|_| changed) else {
        tidy_response(&mut resp, &sent);
        return Ok(resp);
    };
    tracing::info!(
        route = name,
        "credential changed on disk; trying once more with it"
    );
    drop(resp);
    let mut req = backup.into_request();
    let live = route.store.current();
    attach(&mut req, live.clone());
    let mut resp = service.oneshot(req).await?;
    tidy_response(&mut resp, &live);
    Ok(resp)
}

/// Address the request to the route's upstream, without any header its client may not pass
/// on (hop-by-hop, credentials, `Host`).
fn address(
    req: &mut Request<Outgoing>,
    route: &RouteHandle,
    forward: http::uri::PathAndQuery,
) -> Result<(), ProxyError> {
    let cfg = route.config();
    let h = req.headers_mut();
    headers::strip_hop_by_hop(h);
    let stripped = headers::strip_credentials(h, cfg.api_key.as_ref().map(|k| &k.header));
    if !stripped.is_empty() {
        tracing::debug!(route = %cfg.name, headers = ?stripped, "removed client-supplied credential headers");
    }
    h.remove(header::HOST);
    *req.uri_mut() = Uri::builder()
        .scheme("https")
        .authority(cfg.upstream.authority.clone())
        .path_and_query(forward)
        .build()
        .map_err(|_| ProxyError::BadRequest("the request path cannot be forwarded".into()))?;
    *req.version_mut() = Version::HTTP_11;
    Ok(())
}

/// Set the credential of `live` on the request.
fn attach(req: &mut Request<Outgoing>, live: Arc<Live>) {
    if let Some(key) = &live.api_key {
        req.headers_mut()
            .insert(key.header().clone(), key.header_value().clone());
    }
    ctx_mut(req).live = Some(live);
}

/// What it takes to send a request again (a reloaded credential here, a retry in
/// `retry.rs`), without copying its extensions (an allocation each, on every request) — only
/// its context, which the layers below read.
pub struct Backup {
    method: http::Method,
    uri: Uri,
    version: Version,
    headers: http::HeaderMap,
    body: Outgoing,
    ctx: RequestCtx,
}

impl Backup {
    /// A backup of a request whose body is held.
    pub fn of(req: &Request<Outgoing>) -> Option<Self> {
        Some(Self {
            body: req.body().try_clone()?,
            method: req.method().clone(),
            uri: req.uri().clone(),
            version: req.version(),
            headers: req.headers().clone(),
            ctx: ctx(req).cloned().unwrap_or_default(),
        })
    }

    pub fn into_request(self) -> Request<Outgoing> {
        let mut req = Request::new(self.body);
        *req.method_mut() = self.method;
        *req.uri_mut() = self.uri;
        *req.version_mut() = self.version;
        *req.headers_mut() = self.headers;
        req.extensions_mut().insert(self.ctx);
        req
    }
}

/// DigiCert's answer as the client gets it: no hop-by-hop headers, no echo of the key.
fn tidy_response(resp: &mut Response<ProxyBody>, sent: &Live) {
    headers::strip_hop_by_hop(resp.headers_mut());
    if let Some(key) = &sent.api_key {
        for value in resp.headers_mut().values_mut() {
            if key.appears_in(value.as_bytes()) {
                *value = HeaderValue::from_static("[redacted by digicert-sidecar]");
            }
        }
    }
}

/// Read a 401/403 answer, up to [`REJECTION_READ_LIMIT`] bytes and whatever its framing, to
/// see whether it rejects the credential; give back an equivalent response either way.
async fn inspect(resp: Response<ProxyBody>) -> (Response<ProxyBody>, bool) {
    let (parts, mut body) = resp.into_parts();
    let mut read = BytesMut::new();
    loop {
        match body.frame().await {
            None => break,
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    read.extend_from_slice(&data);
                    if read.len() as u64 > REJECTION_READ_LIMIT {
                        // Too large to be DigiCert's error object: pass it on as it is.
                        let body = Prefixed::new(read.freeze(), body).boxed_unsync();
                        return (Response::from_parts(parts, body), false);
                    }
                }
                // Trailers end the body; an error answer has none worth keeping.
                Err(_) => break,
            },
            Some(Err(e)) => {
                let mut resp = Response::from_parts(parts, crate::body::empty());
                *resp.status_mut() = StatusCode::BAD_GATEWAY;
                resp.headers_mut().remove(header::CONTENT_LENGTH);
                resp.headers_mut().insert(
                    crate::error::ERROR_HEADER,
                    HeaderValue::from_static("upstream_protocol"),
                );
                tracing::warn!(error = %e, "the upstream broke off an error answer");
                return (resp, false);
            }
        }
    }
    let read: Bytes = read.freeze();
    let rejected = is_rejection(&read);
    let body = Full::new(read)
        .map_err(|never| match never {})
        .boxed_unsync();
    (Response::from_parts(parts, body), rejected)
}
