//! The connections to one upstream, for one TLS configuration (one generation of a route's
//! client certificate). hyper's own `client::conn` senders, kept by hand rather than through
//! hyper-util's legacy client, which boxes a future and spawns a task per request:
//!
//! - h2 (when the upstream offers it in ALPN): one connection, its sender cloned for every
//!   request (multiplexed); a new one when it closes.
//! - HTTP/1.1: idle keep-alive connections on a stack (the most recently used first, whose
//!   TCP and TLS state is warm). A connection goes back on the stack when its response body
//!   has been read to the end; one whose response was abandoned is closed. The route's
//!   `max_in_flight` bounds how many are busy at once, so the stack needs no cap of its own
//!   beyond [`MAX_IDLE`].
//!
//! Each connection has one task that drives it; requests add none.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::ClientConfig;
use tokio::time::Instant;

use super::connect::Connector;
use super::error::UpstreamError;
use crate::body::Outgoing;
use crate::config::Upstream;

/// Idle HTTP/1.1 connections kept at most.
pub const MAX_IDLE: usize = 64;
/// Kept connections a request tries (when they turn out closed) before a new one.
const KEPT_TRIES: u32 = 3;
/// An idle HTTP/1.1 connection older than this is closed rather than reused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// A cheap-to-clone handle on one pool.
#[derive(Clone)]
pub struct UpstreamClient {
    pool: Arc<Pool>,
}

impl std::fmt::Debug for UpstreamClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamClient").finish_non_exhaustive()
    }
}

struct Pool {
    connector: Connector,
    /// `Host` for HTTP/1.1 requests.
    host: http::HeaderValue,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    h2: Option<http2::SendRequest<Outgoing>>,
    idle: Vec<(http1::SendRequest<Outgoing>, Instant)>,
}

impl Pool {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A sender taken from the pool or freshly made.
enum Sender {
    H1(http1::SendRequest<Outgoing>),
    H2(http2::SendRequest<Outgoing>),
}

impl UpstreamClient {
    /// A pool for `upstream` whose connections use `tls`, go through `proxy` (if any) and
    /// give up connecting (TCP + tunnel + TLS) after `connect_timeout`.
    pub fn new(
        tls: Arc<ClientConfig>,
        upstream: &Upstream,
        connect_timeout: Duration,
        proxy: Option<super::egress::Proxy>,
    ) -> Result<Self, UpstreamError> {
        let host = &upstream.host;
        Ok(Self {
            pool: Arc::new(Pool {
                connector: Connector::new(tls, host, upstream.port, connect_timeout, proxy)?,
                host: http::HeaderValue::from_str(upstream.authority.as_str())
                    .map_err(|_| UpstreamError::BadHost(host.clone()))?,
                state: Mutex::new(State::default()),
            }),
        })
    }

    /// Send one request; resolves when the response head arrives. The request's URI is sent
    /// as is (origin form for HTTP/1.1; h2 takes scheme and authority from it).
    pub async fn send(
        &self,
        mut req: Request<Outgoing>,
    ) -> Result<Response<PooledBody>, UpstreamError> {
        // A kept connection the upstream closed while idle fails before the request is
        // written; then the request goes on the next one, or a new one. After
        // [`KEPT_TRIES`] kept connections that failed so, a new one (which is not retried).
        let mut kept_tries = 0;
        loop {
            let kept = if kept_tries < KEPT_TRIES {
                self.take()
            } else {
                None
            };
            let (sender, fresh) = match kept {
                Some(s) => (s, false),
                // Boxed: the connect future (TCP, a proxy's tunnel, the TLS handshake) is
                // most of this future's size, and this future is moved whole on every
                // request; a new connection is the rare path.
                None => (Box::pin(self.connect()).await?, true),
            };
            kept_tries += 1;
            match sender {
                Sender::H2(mut s) => {
                    // h2 wants the full URI; HTTP/1.1 the origin form (hyper writes what it is given).
                    match s.try_send_request(req).await {
                        Ok(resp) => return Ok(resp.map(PooledBody::plain)),
                        Err(mut e) => match e.take_message() {
                            Some(back) if !fresh => {
                                self.pool.state().h2.take_if(|h| h.is_closed());
                                req = back;
                            }
                            _ => return Err(UpstreamError::Http(e.into_error())),
                        },
                    }
                }
                Sender::H1(mut s) => {
                    // A kept connection is ready once its last exchange is wholly done.
                    if !fresh && s.ready().await.is_err() {
                        continue;
                    }
                    let absolute = self.origin_form(&mut req);
                    match s.try_send_request(req).await {
                        Ok(resp) => {
                            let pool = self.pool.clone();
                            return Ok(resp.map(|body| PooledBody::returning(body, s, pool)));
                        }
                        Err(mut e) => match e.take_message() {
                            Some(mut back) if !fresh => {
                                *back.uri_mut() = absolute;
                                req = back;
                            }
                            _ => return Err(UpstreamError::Http(e.into_error())),
                        },
                    }
                }
            }
        }
    }

    /// A ready sender from the pool, if there is one.
    fn take(&self) -> Option<Sender> {
        let mut state = self.pool.state();
        if let Some(h2) = &state.h2 {
            if !h2.is_closed() {
                return Some(Sender::H2(h2.clone()));
            }
            state.h2 = None;
        }
        let now = Instant::now();
        while let Some((s, since)) = state.idle.pop() {
            if !s.is_closed() && now.duration_since(since) < IDLE_TIMEOUT {
                return Some(Sender::H1(s));
            }
        }
        None
    }

    /// HTTP/1.1 wants the origin form (path and query) and a `Host` header; returns the
    /// absolute URI, to put back if the request comes back unsent.
    fn origin_form(&self, req: &mut Request<Outgoing>) -> http::Uri {
        let absolute = std::mem::take(req.uri_mut());
        *req.uri_mut() = absolute
            .path_and_query()
            .map_or_else(|| http::Uri::from_static("/"), |p| p.clone().into());
        req.headers_mut()
            .entry(http::header::HOST)
            .or_insert_with(|| self.pool.host.clone());
        absolute
    }

    /// A new connection, driven by a task of its own.
    async fn connect(&self) -> Result<Sender, UpstreamError> {
        let connected = self.pool.connector.connect().await?;
        let io = TokioIo::new(connected.stream);
        if connected.h2 {
            let (sender, conn) = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .keep_alive_interval(Duration::from_secs(30))
                .keep_alive_timeout(Duration::from_secs(10))
                .adaptive_window(true)
                .handshake(io)
                .await
                .map_err(UpstreamError::Http)?;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "upstream h2 connection ended");
                }
            });
            let mut state = self.pool.state();
            if state.h2.as_ref().is_none_or(|h| h.is_closed()) {
                state.h2 = Some(sender.clone());
            }
            Ok(Sender::H2(sender))
        } else {
            let (sender, conn) = http1::Builder::new()
                .handshake(io)
                .await
                .map_err(UpstreamError::Http)?;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "upstream HTTP/1.1 connection ended");
                }
            });
            Ok(Sender::H1(sender))
        }
    }
}

/// A response body from the pool. For HTTP/1.1 it gives its connection back to the pool
/// when it has been read to the end.
pub struct PooledBody {
    body: Incoming,
    back: Option<(http1::SendRequest<Outgoing>, Arc<Pool>)>,
}

impl PooledBody {
    fn plain(body: Incoming) -> Self {
        Self { body, back: None }
    }

    fn returning(body: Incoming, sender: http1::SendRequest<Outgoing>, pool: Arc<Pool>) -> Self {
        let mut this = Self {
            body,
            back: Some((sender, pool)),
        };
        if this.body.is_end_stream() {
            this.give_back();
        }
        this
    }

    fn give_back(&mut self) {
        if let Some((sender, pool)) = self.back.take()
            && !sender.is_closed()
        {
            let mut state = pool.state();
            if state.idle.len() < MAX_IDLE {
                state.idle.push((sender, Instant::now()));
            }
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.give_back(),
            Poll::Ready(Some(Ok(_))) if self.body.is_end_stream() => self.give_back(),
            Poll::Ready(Some(Err(_))) => self.back = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
