//! The admin listener: `/healthz`, `/readyz` and `/metrics`, and nothing else (but
//! `POST /quitquitquit` from a loopback peer where `admin_shutdown` allows it). It is never
//! proxied and may bind a non-loopback address (Kubernetes probes reach the pod IP): it holds
//! no credential and shows no secret.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::body::{ProxyBody, full};
use crate::health::Health;
use crate::metrics::Metrics;

/// What the admin endpoints read.
pub struct Admin {
    pub health: Arc<Health>,
    pub metrics: Arc<Metrics>,
    /// Cancelled by `POST /quitquitquit`; `None` unless `admin_shutdown = true`.
    pub quit: Option<CancellationToken>,
}

impl Admin {
    /// Answer one admin request from `peer`: `/quitquitquit` here, the rest in [`Self::answer`].
    pub fn answer_from<B>(&self, peer: SocketAddr, req: &Request<B>) -> Response<ProxyBody> {
        if req.uri().path() != "/quitquitquit" {
            return self.answer(req);
        }
        let Some(quit) = &self.quit else {
            return text(
                StatusCode::NOT_FOUND,
                "POST /quitquitquit is off (server.admin_shutdown = false)\n",
            );
        };
        if !peer.ip().to_canonical().is_loopback() {
            tracing::warn!(peer = %peer.ip(), "POST /quitquitquit refused: not a loopback peer");
            return text(
                StatusCode::FORBIDDEN,
                "only a loopback peer may stop the sidecar\n",
            );
        }
        if req.method() != Method::POST {
            let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "POST only\n");
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
            return resp;
        }
        quit.cancel();
        text(StatusCode::ACCEPTED, "shutting down\n")
    }

    /// Answer one admin request.
    pub fn answer<B>(&self, req: &Request<B>) -> Response<ProxyBody> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n");
        }
        match req.uri().path() {
            "/healthz" => text(StatusCode::OK, "ok\n"),
            "/readyz" => {
                match self.health.readiness() {
                    Ok(()) => text(StatusCode::OK, "ready\n"),
                    Err(problems) => {
                        let routes: Vec<_> = problems
                        .iter()
                        .map(|(route, reason)| serde_json::json!({"route": route, "reason": reason}))
                        .collect();
                        let body = serde_json::json!({"ready": false, "failing": routes});
                        let mut resp = Response::new(full(body.to_string()));
                        *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                        resp.headers_mut().insert(
                            header::CONTENT_TYPE,
                            HeaderValue::from_static("application/json"),
                        );
                        resp
                    }
                }
            }
            "/metrics" => {
                let mut resp = Response::new(full(self.metrics.render()));
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                resp
            }
            _ => text(
                StatusCode::NOT_FOUND,
                "the admin listener serves /healthz, /readyz and /metrics\n",
            ),
        }
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<ProxyBody> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// Serve the admin endpoints on `listener` until `stop`.
pub async fn serve(listener: TcpListener, admin: Arc<Admin>, stop: CancellationToken) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(std::time::Duration::from_secs(10));
    let builder = Arc::new(builder);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.cancelled() => return,
        };
        let Ok((stream, peer)) = accepted else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let admin = admin.clone();
        let builder = builder.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let resp = admin.answer_from(peer, &req);
                async move { Ok::<_, Infallible>(resp) }
            });
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use http::{Request, StatusCode};
    use tokio_util::sync::CancellationToken;

    use super::Admin;
    use crate::health::Health;
    use crate::metrics::Metrics;

    fn admin(quit: Option<CancellationToken>) -> Admin {
        Admin {
            health: Arc::new(Health::new(Vec::new())),
            metrics: Arc::new(Metrics::new()),
            quit,
        }
    }

    fn post() -> Request<()> {
        Request::post("/quitquitquit").body(()).expect("request")
    }

    #[test]
    fn quitquitquit_needs_admin_shutdown_a_loopback_peer_and_post() {
        let loopback = "127.0.0.1:5000".parse().expect("addr");
        let mapped = "[::ffff:127.0.0.1]:5000".parse().expect("addr");
        let remote = "10.1.2.3:5000".parse().expect("addr");

        let off = admin(None);
        assert_eq!(
            off.answer_from(loopback, &post()).status(),
            StatusCode::NOT_FOUND
        );

        let token = CancellationToken::new();
        let on = admin(Some(token.clone()));
        assert_eq!(
            on.answer_from(remote, &post()).status(),
            StatusCode::FORBIDDEN
        );
        let get = Request::get("/quitquitquit").body(()).expect("request");
        assert_eq!(
            on.answer_from(loopback, &get).status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert!(!token.is_cancelled(), "refused requests stop nothing");
        assert_eq!(
            on.answer_from(mapped, &post()).status(),
            StatusCode::ACCEPTED
        );
        assert!(token.is_cancelled());
        // The other paths are unchanged.
        let health = Request::get("/healthz").body(()).expect("request");
        assert_eq!(on.answer_from(remote, &health).status(), StatusCode::OK);
    }
}
