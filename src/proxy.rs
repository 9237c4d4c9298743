//! The request path of one listener, in order: door → router → policy → credential →
//! upstream → response hygiene. Errors from any step become responses in `error.rs`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use http::header::{self, HeaderName, HeaderValue};
use http::{Request, Response, Uri, Version};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::body::{Guarded, Holding, ProxyBody};
use crate::config::Server;
use crate::door::Door;
use crate::error::ProxyError;
use crate::headers;
use crate::metrics::Metrics;
use crate::policy;
use crate::router::Router;
use crate::telemetry::{AccessLog, RequestId};
use crate::upstream::exchange::{Head, Outgoing, REPLAY_LIMIT, exchange, in_flight_slot};

/// Header carrying the request id, added when the client did not send a usable one.
/// (A static name: inserting it and cloning it for the upstream allocate nothing.)
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Who is on the other end of an inbound connection.
#[derive(Debug, Clone, Copy)]
pub enum Peer {
    Tcp(SocketAddr),
    Unix { uid: u32, gid: u32 },
}

/// Everything one listener needs to serve requests.
#[derive(Debug)]
pub struct Proxy {
    router: Router,
    door: Door,
    server: Arc<Server>,
    metrics: Arc<Metrics>,
}

impl Proxy {
    pub fn new(
        router: Router,
        mut extra_hosts: Vec<String>,
        server: Arc<Server>,
        metrics: Arc<Metrics>,
    ) -> Self {
        extra_hosts.extend(router.upstream_hosts().map(str::to_string));
        Self {
            router,
            door: Door {
                allowed_hosts: extra_hosts,
            },
            server,
            metrics,
        }
    }

    /// Serve one request. Never fails: every error is an answer.
    pub async fn handle(
        self: Arc<Self>,
        peer: Peer,
        mut req: Request<Incoming>,
    ) -> Result<Response<ProxyBody>, Infallible> {
        let request_id = request_id(&mut req);
        let mut log = AccessLog::new(
            request_id,
            req.method().clone(),
            req.uri().path_and_query().cloned(),
        );
        log.metrics = Some(self.metrics.clone());
        let mut resp = match self.forward(peer, req, &mut log).await {
            Ok(resp) => resp,
            Err(err) => {
                if err.is_upstream() {
                    self.metrics
                        .upstream_error(log.route.as_deref().unwrap_or("none"), err.reason());
                    tracing::warn!(route = log.route.as_deref().unwrap_or("-"), error = %err, "upstream error");
                } else {
                    tracing::debug!(error = %err, "request refused");
                }
                log.error = Some(err.reason());
                err.into_response()
            }
        };
        log.status = resp.status();
        let body = std::mem::replace(resp.body_mut(), crate::body::empty());
        *resp.body_mut() = Guarded::new(
            body,
            None,
            Some(self.server.body_idle_timeout),
            Some(Box::new(log)),
        )
        .boxed_unsync();
        Ok(resp)
    }

    async fn forward(
        &self,
        peer: Peer,
        req: Request<Incoming>,
        log: &mut AccessLog,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let deadline = tokio::time::Instant::now() + self.server.request_timeout;
        check_head_size(&req, self.server.max_header_bytes)?;
        self.door.check(&req)?;
        // In HTTP/1 a URI with an authority is a proxy request (absolute form); in h2 every
        // request carries `:authority`, which plays the part of `Host`.
        let proxy_host = (req.version() < Version::HTTP_2)
            .then(|| req.uri().host())
            .flatten();
        let (route, path_and_query) = self.router.select(req.uri(), proxy_host)?;
        log.route = Some(route.label.clone());
        let cfg = route.config();

        if !policy::allows(cfg.policy.allow.as_deref(), req.method(), req.uri().path()) {
            tracing::warn!(route = %cfg.name, method = %req.method(), path = %req.uri().path(), "denied by policy");
            return Err(ProxyError::PolicyDenied {
                route: cfg.name.clone(),
                method: req.method().clone(),
                path: req.uri().path().to_string(),
            });
        }
        if let Peer::Unix { uid, gid } = peer
            && !policy::peer_allowed(
                cfg.policy.unix_peer_uids.as_deref(),
                cfg.policy.unix_peer_gids.as_deref(),
                uid,
                gid,
            )
        {
            return Err(ProxyError::PeerDenied(format!(
                "uid {uid} (gid {gid}) may not use route {}",
                cfg.name
            )));
        }

        let limit = self.server.max_request_body;
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit) {
            return Err(ProxyError::BodyTooLarge(limit));
        }

        let (mut parts, body) = req.into_parts();
        headers::strip_hop_by_hop(&mut parts.headers);
        let own = cfg.api_key.as_ref().map(|k| &k.header);
        let stripped = headers::strip_credentials(&mut parts.headers, own);
        if !stripped.is_empty() {
            tracing::debug!(route = %cfg.name, headers = ?stripped, "removed client-supplied credential headers");
        }
        parts.headers.remove(header::HOST);
        let uri = Uri::builder()
            .scheme("https")
            .authority(cfg.upstream.authority.clone())
            .path_and_query(path_and_query)
            .build()
            .map_err(|_| ProxyError::BadRequest("the request path cannot be forwarded".into()))?;

        // Small bodies are held so the request can be sent again (retry, new credential);
        // larger ones stream through and are sent once.
        let fault = Arc::new(OnceLock::new());
        let small = body.size_hint().upper().is_some_and(|n| n <= REPLAY_LIMIT);
        let body = Guarded::new(body, Some(limit), Some(self.server.body_idle_timeout), None)
            .with_fault(fault.clone());
        let outgoing = if small {
            match tokio::time::timeout_at(deadline, body.collect()).await {
                Ok(Ok(collected)) => Outgoing::Held(collected.to_bytes()),
                Ok(Err(_)) => {
                    return Err(match fault.get() {
                        Some(e) => ProxyError::from_request_body(*e),
                        None => ProxyError::BadRequest("the request body broke off".into()),
                    });
                }
                Err(_) => {
                    return Err(ProxyError::BadRequest(
                        "the request body came too slowly".into(),
                    ));
                }
            }
        } else {
            Outgoing::Streamed(Some(body.boxed_unsync()))
        };

        let slot = in_flight_slot(route, &self.metrics, deadline).await?;
        let started = Instant::now();
        let head = Head {
            method: parts.method,
            uri,
            headers: parts.headers,
        };
        let result = exchange(
            route,
            &self.metrics,
            head,
            outgoing,
            deadline,
            self.server.request_timeout,
            fault,
        )
        .await;
        log.upstream_ms = Some(started.elapsed().as_secs_f64() * 1000.0);
        let mut resp = result?;

        headers::strip_hop_by_hop(resp.headers_mut());
        if let Some(key) = &route.store.current().api_key {
            for value in resp.headers_mut().values_mut() {
                if key.appears_in(value.as_bytes()) {
                    *value = HeaderValue::from_static("[redacted by digicert-sidecar]");
                }
            }
        }
        Ok(resp.map(|body| Holding::new(body, slot).boxed_unsync()))
    }
}

/// At most this many header fields in a request.
pub const MAX_HEADERS: usize = 100;

/// Refuse a request head larger than `max_header_bytes` or with more than [`MAX_HEADERS`]
/// fields with the JSON 431. (hyper's own limits, set higher in `listener.rs`, are the
/// backstop for heads too large to parse at all.)
fn check_head_size<B>(req: &Request<B>, max_header_bytes: usize) -> Result<(), ProxyError> {
    if req.headers().len() > MAX_HEADERS {
        return Err(ProxyError::HeadersTooLarge);
    }
    let line = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().len())
        .unwrap_or(1)
        + 16;
    let fields: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if line + fields > max_header_bytes {
        return Err(ProxyError::HeadersTooLarge);
    }
    Ok(())
}

/// Keep a well-formed client request id; otherwise make one and add it to the request.
fn request_id<B>(req: &mut Request<B>) -> RequestId {
    if let Some(id) = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| RequestId::from_client(v.as_bytes()))
    {
        return id;
    }
    let id = RequestId::random();
    req.headers_mut().insert(
        REQUEST_ID,
        HeaderValue::from_str(id.as_str()).expect("hex is a valid header value"),
    );
    id
}
