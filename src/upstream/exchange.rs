//! One exchange with DigiCert, from the credential onwards: attach the route's current
//! credential, send, and decide what DigiCert's answer means — a rejected credential (reload
//! once and, if it changed, try once more), a transient failure (retry idempotent requests
//! with jittered backoff that honours `Retry-After`), or the answer to pass through.
//! Everything happens inside the request's deadline.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Full};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use crate::body::{BodyError, ProxyBody, full};
use crate::credential::store::Reloaded;
use crate::error::ProxyError;
use crate::metrics::Metrics;
use crate::router::RouteHandle;

/// Request bodies up to this size are held in memory so the request can be sent again.
pub const REPLAY_LIMIT: u64 = 64 * 1024;
/// Error answers up to this size are read to see whether DigiCert rejected the credential.
const INSPECT_LIMIT: u64 = 64 * 1024;

/// The request as it goes upstream, minus credential and body.
pub struct Head {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
}

/// A request body: held (small, can be sent again) or streamed (sent once).
pub enum Outgoing {
    Held(Bytes),
    Streamed(Option<ProxyBody>),
}

impl Outgoing {
    fn take(&mut self) -> Option<ProxyBody> {
        match self {
            Outgoing::Held(b) => Some(full(b.clone())),
            Outgoing::Streamed(b) => b.take(),
        }
    }

    fn replayable(&self) -> bool {
        matches!(self, Outgoing::Held(_))
    }
}

/// Send `head` + `body` to the route's upstream until there is an answer to give.
pub async fn exchange(
    route: &Arc<RouteHandle>,
    metrics: &Arc<Metrics>,
    head: Head,
    mut body: Outgoing,
    deadline: Instant,
    timeout: Duration,
    fault: Arc<OnceLock<BodyError>>,
) -> Result<Response<ProxyBody>, ProxyError> {
    let name = route.name();
    let attempts = route.config().retry.attempts.max(1);
    let idempotent = matches!(
        head.method,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS
    );
    let mut attempt = 0;
    let mut reloaded = false;
    loop {
        attempt += 1;
        // Held until DigiCert's answer (or the failure) arrives: see rate_limit.rs.
        let slot = match &route.limiter {
            None => None,
            Some(limiter) => match limiter.admit(admission_deadline(route, deadline)).await {
                Ok(permit) => Some(permit),
                Err(limited) => {
                    tracing::warn!(route = name, retry_after = ?limited.retry_after, "rate limit: refusing rather than exceed DigiCert's windows");
                    return Err(refused(route, metrics, limited.retry_after));
                }
            },
        };
        let live = route.store.current();
        let mut headers = head.headers.clone();
        if let Some(key) = &live.api_key {
            headers.insert(key.header().clone(), key.header_value().clone());
        }
        let Some(req_body) = body.take() else {
            // Cannot happen: only held bodies are sent twice. Answer rather than panic.
            return Err(ProxyError::UpstreamProtocol(
                "the request body was already sent".into(),
            ));
        };
        let mut req = Request::new(req_body);
        *req.method_mut() = head.method.clone();
        *req.uri_mut() = head.uri.clone();
        *req.version_mut() = Version::HTTP_11;
        *req.headers_mut() = headers;

        let may_retry = idempotent && body.replayable() && attempt < attempts;
        let sent = tokio::time::timeout_at(deadline, live.client.send(req)).await;
        drop(slot);
        let resp = match sent {
            Err(_) => return Err(ProxyError::UpstreamTimeout(timeout)),
            Ok(Err(e)) => {
                if let Some(body_error) = fault.get() {
                    return Err(ProxyError::from_request_body(*body_error));
                }
                let err = ProxyError::from_upstream(&e);
                let retriable = matches!(err, ProxyError::UpstreamUnreachable(_));
                if retriable && may_retry && wait(backoff(attempt), deadline).await {
                    metrics.retry(name);
                    tracing::debug!(route = name, attempt, error = %err, "retrying after a connect error");
                    continue;
                }
                return Err(err);
            }
            Ok(Ok(resp)) => resp,
        };

        let status = resp.status();
        if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            let (resp, rejected) = inspect_rejection(resp).await;
            if rejected {
                metrics.rejected(name);
                tracing::warn!(
                    route = name,
                    status = status.as_u16(),
                    "DigiCert rejected the route's credential: the key was revoked or \
                     replaced, or the client certificate expired; update the secret the \
                     route reads (it is reloaded on change and on SIGHUP)"
                );
                if !reloaded {
                    reloaded = true;
                    let changed = crate::credential::watch::reload_route_off_thread(
                        &route.store,
                        metrics,
                        "rejected by DigiCert",
                    )
                    .await
                        == Some(Reloaded::Changed);
                    if changed && body.replayable() {
                        tracing::info!(
                            route = name,
                            "credential changed on disk; trying once more with it"
                        );
                        continue;
                    }
                }
            }
            return Ok(resp);
        }
        if matches!(
            status,
            StatusCode::TOO_MANY_REQUESTS
                | StatusCode::BAD_GATEWAY
                | StatusCode::SERVICE_UNAVAILABLE
                | StatusCode::GATEWAY_TIMEOUT
        ) && may_retry
        {
            let delay = retry_after(resp.headers()).unwrap_or_else(|| backoff(attempt));
            if Instant::now() + delay < deadline {
                drop(resp);
                metrics.retry(name);
                tracing::debug!(
                    route = name,
                    attempt,
                    status = status.as_u16(),
                    ?delay,
                    "retrying"
                );
                tokio::time::sleep(delay).await;
                continue;
            }
        }
        return Ok(resp.map(|b| b.map_err(Into::into).boxed_unsync()));
    }
}

/// Sleep for `delay` unless that would pass `deadline`; returns whether it slept.
async fn wait(delay: Duration, deadline: Instant) -> bool {
    if Instant::now() + delay >= deadline {
        return false;
    }
    tokio::time::sleep(delay).await;
    true
}

/// A slot among the route's `max_in_flight`, waiting for one up to `max_wait` (and the
/// request's deadline); then 429, as for a full rate window. Held until the response body
/// is done, so it also bounds the route's busy HTTP/1.1 connections.
pub async fn in_flight_slot(
    route: &RouteHandle,
    metrics: &Metrics,
    deadline: Instant,
) -> Result<OwnedSemaphorePermit, ProxyError> {
    if let Ok(slot) = route.in_flight.clone().try_acquire_owned() {
        return Ok(slot);
    }
    let until = admission_deadline(route, deadline);
    match tokio::time::timeout_at(until, route.in_flight.clone().acquire_owned()).await {
        Ok(Ok(slot)) => Ok(slot),
        _ => {
            // Per request at debug: under overload a warning per refusal would flood the log;
            // the access line (error "rate_limited") and the metric carry it.
            tracing::debug!(
                route = route.name(),
                max_in_flight = route.config().rate_limit.max_in_flight,
                "too many requests in flight to DigiCert; refusing rather than queueing longer"
            );
            Err(refused(route, metrics, Duration::from_secs(1)))
        }
    }
}

/// How long a request may wait to be let through to DigiCert: `max_wait`, within its
/// deadline.
fn admission_deadline(route: &RouteHandle, deadline: Instant) -> Instant {
    deadline.min(Instant::now() + route.config().rate_limit.max_wait)
}

/// The 429 for a request the route's limits did not let through, counted.
fn refused(route: &RouteHandle, metrics: &Metrics, retry_after: Duration) -> ProxyError {
    metrics.rate_limited(route.name());
    ProxyError::RateLimited {
        route: route.name().to_string(),
        retry_after,
    }
}

/// Exponential backoff with full jitter: up to 100 ms, 200 ms, 400 ms … capped at 5 s.
pub fn backoff(attempt: u32) -> Duration {
    let cap = Duration::from_millis(100)
        .saturating_mul(1 << attempt.saturating_sub(1).min(6))
        .min(Duration::from_secs(5));
    let jitter: f64 = rand::random();
    cap.mul_f64(0.5 + jitter / 2.0)
}

/// `Retry-After` as seconds or an HTTP date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// Codes with which DigiCert says the credential itself is bad (not merely lacking a role).
const REJECTION_CODES: [&str; 2] = ["access_denied_invalid_key", "invalid_api_key"];

/// Whether a 401/403 body is DigiCert rejecting the credential.
pub fn is_rejection(body: &[u8]) -> bool {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return false;
    };
    value["errors"].as_array().is_some_and(|errors| {
        errors.iter().any(|e| {
            e["code"]
                .as_str()
                .is_some_and(|code| code.split('|').any(|c| REJECTION_CODES.contains(&c)))
        })
    })
}

/// Read a small 401/403 answer to see whether it rejects the credential; give back an
/// equivalent response either way.
async fn inspect_rejection(resp: Response<hyper::body::Incoming>) -> (Response<ProxyBody>, bool) {
    let small = hyper::body::Body::size_hint(resp.body())
        .upper()
        .is_some_and(|n| n <= INSPECT_LIMIT);
    if !small {
        return (resp.map(|b| b.map_err(Into::into).boxed_unsync()), false);
    }
    let (parts, body) = resp.into_parts();
    match body.collect().await {
        Ok(collected) => {
            let bytes = collected.to_bytes();
            let rejected = is_rejection(&bytes);
            let body = Full::new(bytes)
                .map_err(|never| match never {})
                .boxed_unsync();
            (Response::from_parts(parts, body), rejected)
        }
        Err(e) => {
            let mut resp = Response::from_parts(parts, crate::body::empty());
            *resp.status_mut() = StatusCode::BAD_GATEWAY;
            resp.headers_mut().remove(header::CONTENT_LENGTH);
            resp.headers_mut().insert(
                crate::error::ERROR_HEADER,
                HeaderValue::from_static("upstream_protocol"),
            );
            tracing::warn!(error = %e, "the upstream broke off an error answer");
            (resp, false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejections_are_recognised_by_code() {
        assert!(is_rejection(
            br#"{"errors":[{"code":"access_denied_invalid_key","message":"x"}]}"#
        ));
        assert!(is_rejection(br#"{"errors":[{"code":"invalid_api_key"}]}"#));
        assert!(is_rejection(
            br#"{"errors":[{"code":"access_denied|access_denied_invalid_key"}]}"#
        ));
        assert!(!is_rejection(br#"{"errors":[{"code":"access_denied"}]}"#));
        assert!(!is_rejection(b"<html>forbidden</html>"));
    }

    #[test]
    fn retry_after_in_seconds_and_as_a_date() {
        let mut h = HeaderMap::new();
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        let later = SystemTime::now() + Duration::from_secs(30);
        h.insert(
            header::RETRY_AFTER,
            HeaderValue::from_str(&httpdate::fmt_http_date(later)).unwrap(),
        );
        let d = retry_after(&h).unwrap();
        assert!(
            d > Duration::from_secs(27) && d <= Duration::from_secs(30),
            "{d:?}"
        );
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn backoff_grows_with_jitter_and_is_capped() {
        for attempt in 1..20 {
            let d = backoff(attempt);
            assert!(d <= Duration::from_secs(5));
            assert!(d >= Duration::from_millis(50));
        }
        assert!(backoff(1) <= Duration::from_millis(100));
    }
}
