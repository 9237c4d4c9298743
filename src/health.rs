//! Health: whether the process serves (`/healthz`), whether every route can be used right
//! now (`/readyz`), and the optional probe that asks DigiCert whether it still accepts a
//! route's credential. Only a *rejected* credential makes a route unready: DigiCert being
//! unreachable or failing must not take every pod out of service.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use http::{HeaderValue, Method, Request, StatusCode, Uri, header};
use http_body_util::BodyExt;
use tokio_util::sync::CancellationToken;

use crate::digicert::is_rejection;
use crate::metrics::Metrics;
use crate::router::RouteHandle;

/// Process-wide health.
#[derive(Debug)]
pub struct Health {
    draining: AtomicBool,
    routes: Vec<Arc<RouteHandle>>,
}

impl Health {
    pub fn new(routes: Vec<Arc<RouteHandle>>) -> Self {
        Self {
            draining: AtomicBool::new(false),
            routes,
        }
    }

    /// From SIGTERM on, the sidecar is not ready (Kubernetes stops sending traffic).
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// `Ok` if ready, else one `(route, reason)` per problem.
    pub fn readiness(&self) -> Result<(), Vec<(String, String)>> {
        let mut problems = Vec::new();
        if self.draining.load(Ordering::SeqCst) {
            problems.push(("*".to_string(), "shutting down".to_string()));
        }
        let now = SystemTime::now();
        for r in &self.routes {
            if let Some(cert) = &r.store.current().client_cert
                && cert.expired_at(now)
            {
                problems.push((
                    r.name().to_string(),
                    format!("client certificate expired on {}", cert.not_after_display()),
                ));
            }
            if r.verdict.rejected() {
                problems.push((
                    r.name().to_string(),
                    "DigiCert rejected the credential at the last probe".to_string(),
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

/// Probe a route's credential at its interval until `stop`.
pub async fn probe_loop(
    route: Arc<RouteHandle>,
    metrics: Arc<Metrics>,
    timeout: std::time::Duration,
    stop: CancellationToken,
) {
    let Some(probe) = route.config().probe.clone() else {
        return;
    };
    let mut tick = tokio::time::interval(probe.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => probe_once(&route, &metrics, &probe.path, timeout).await,
        }
    }
}

/// One probe: GET `path` with the route's credential. A 2xx means accepted; a 401/403 with
/// DigiCert's invalid-credential code means rejected; anything else leaves the verdict.
pub async fn probe_once(
    route: &RouteHandle,
    metrics: &Metrics,
    path: &str,
    timeout: std::time::Duration,
) {
    let cfg = route.config();
    let live = route.store.current();
    let Ok(uri) = Uri::builder()
        .scheme("https")
        .authority(cfg.upstream.authority.clone())
        .path_and_query(format!("{}{}", cfg.upstream.base_path, path))
        .build()
    else {
        return;
    };
    let mut req = Request::new(crate::body::Outgoing::empty());
    *req.method_mut() = Method::GET;
    *req.uri_mut() = uri;
    req.headers_mut()
        .insert(header::ACCEPT, HeaderValue::from_static("application/json"));
    if let Some(key) = &live.api_key {
        req.headers_mut()
            .insert(key.header().clone(), key.header_value().clone());
    }
    let answer = tokio::time::timeout(timeout, live.client.send(req)).await;
    let name = route.name();
    match answer {
        Ok(Ok(resp)) => {
            let status = resp.status();
            let body = tokio::time::timeout(timeout, resp.into_body().collect())
                .await
                .ok()
                .and_then(Result::ok)
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            if status.is_success() {
                if route.verdict.rejected() {
                    tracing::info!(route = name, "DigiCert accepts the credential again");
                }
                route.verdict.accept();
                metrics.credential_valid(name, true);
            } else if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN)
                && is_rejection(&body)
            {
                route.verdict.reject();
                metrics.credential_valid(name, false);
                metrics.rejected(name);
                tracing::warn!(
                    route = name,
                    status = status.as_u16(),
                    "probe: DigiCert rejected the route's credential; replace the secret the route reads"
                );
            } else {
                tracing::warn!(
                    route = name,
                    status = status.as_u16(),
                    "probe: unexpected answer; readiness unchanged"
                );
            }
        }
        Ok(Err(e)) => {
            let err = e.to_proxy_error();
            tracing::warn!(route = name, error = %err, "probe: DigiCert unreachable; readiness unchanged");
        }
        Err(_) => tracing::warn!(route = name, "probe: timed out; readiness unchanged"),
    }
}
