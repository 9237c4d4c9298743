//! `[routes.retry]` as a `tower::retry::Policy`: only idempotent methods with a held body,
//! only on a connect failure or 429/502/503/504, with jittered exponential backoff that
//! honours `Retry-After` (seconds or an HTTP date), and never past the request's deadline.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::header::{self, HeaderMap};
use http::{Method, Request, Response, StatusCode};
use tokio::time::{Instant, Sleep};

use super::credential::Backup;
use super::ctx::{deadline, routed};
use crate::body::{Outgoing, ProxyBody};
use crate::error::ProxyError;
use crate::metrics::Metrics;

/// The retry policy of every route (each request's route says how many attempts).
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    metrics: Arc<Metrics>,
    /// Attempts made so far for this request.
    attempt: u32,
}

impl RetryPolicy {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            metrics,
            attempt: 1,
        }
    }
}

impl tower::retry::Policy<Request<Outgoing>, Response<ProxyBody>, ProxyError> for RetryPolicy {
    type Future = Sleep;

    fn retry(
        &mut self,
        req: &mut Request<Outgoing>,
        result: &mut Result<Response<ProxyBody>, ProxyError>,
    ) -> Option<Sleep> {
        let route = &routed(req).ok()?.route;
        if self.attempt >= route.config().retry.attempts {
            return None;
        }
        let delay = match result {
            Ok(resp)
                if matches!(
                    resp.status(),
                    StatusCode::TOO_MANY_REQUESTS
                        | StatusCode::BAD_GATEWAY
                        | StatusCode::SERVICE_UNAVAILABLE
                        | StatusCode::GATEWAY_TIMEOUT
                ) =>
            {
                retry_after(resp.headers()).unwrap_or_else(|| backoff(self.attempt))
            }
            Err(ProxyError::UpstreamUnreachable(_) | ProxyError::EgressProxyUnreachable(_)) => {
                backoff(self.attempt)
            }
            _ => return None,
        };
        let at = Instant::now() + delay;
        if at >= deadline(req) {
            return None;
        }
        self.metrics.retry(route.name());
        tracing::debug!(
            route = route.name(),
            attempt = self.attempt,
            status = result.as_ref().ok().map(|r| r.status().as_u16()),
            ?delay,
            "retrying"
        );
        self.attempt += 1;
        Some(tokio::time::sleep_until(at))
    }

    fn clone_request(&mut self, req: &Request<Outgoing>) -> Option<Request<Outgoing>> {
        let attempts = routed(req).ok()?.route.config().retry.attempts;
        let idempotent = matches!(
            *req.method(),
            Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS
        );
        if attempts <= 1 || !idempotent {
            return None;
        }
        Backup::of(req).map(Backup::into_request)
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

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

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
