//! The one place where a request that the sidecar itself refuses or cannot complete becomes
//! a response: DigiCert's error shape, `{"errors":[{"code":"sidecar_<reason>","message":…}]}`,
//! plus an `x-digicert-sidecar-error: <reason>` header.

use std::time::Duration;

use http::{HeaderValue, Method, Response, StatusCode, header};

use crate::body::{BodyError, ProxyBody, full};

/// Name of the header that marks an answer made by the sidecar, not by DigiCert.
pub const ERROR_HEADER: &str = "x-digicert-sidecar-error";

/// What an egress proxy's refusal usually means, for the message.
fn proxy_hint(status: u16) -> &'static str {
    match status {
        401 | 407 => {
            " (proxy authentication required: check [egress] proxy_auth_file or proxy_auth_env)"
        }
        403 => " (the proxy's policy forbids this destination)",
        _ => "",
    }
}

/// Everything that can go wrong with one request, from the sidecar's side.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("{0}")]
    BadRequest(String),
    #[error("no route serves {0}")]
    NoRoute(String),
    #[error("{method} {path} is not allowed by the policy of route {route}")]
    PolicyDenied {
        route: String,
        method: Method,
        path: String,
    },
    #[error("{0}")]
    PeerDenied(String),
    #[error("{0}")]
    HostDenied(String),
    #[error("requests from web browsers are refused (they carry Origin or Sec-Fetch-* headers)")]
    BrowserDenied,
    #[error("method {0} is not allowed through the sidecar")]
    MethodNotAllowed(Method),
    #[error("route {0} has no usable credential")]
    CredentialUnavailable(String),
    #[error("route {route} is at DigiCert's rate limit; retry in {} ms", retry_after.as_millis().max(1))]
    RateLimited {
        route: String,
        retry_after: Duration,
    },
    #[error("the request body is larger than the limit of {0} bytes")]
    BodyTooLarge(u64),
    #[error("the request headers are larger than the limit")]
    HeadersTooLarge,
    #[error("cannot reach the upstream: {0}")]
    UpstreamUnreachable(String),
    #[error("TLS with the upstream failed: {0}")]
    UpstreamTls(String),
    #[error("the upstream broke the HTTP exchange: {0}")]
    UpstreamProtocol(String),
    #[error("the upstream did not answer within {0:?}")]
    UpstreamTimeout(Duration),
    /// The corporate egress proxy could not be reached, closed, failed its own TLS or did
    /// not answer the CONNECT in time.
    #[error("cannot reach the egress proxy: {0}")]
    EgressProxyUnreachable(String),
    /// The egress proxy answered the CONNECT with something other than 2xx.
    #[error("the egress proxy refused the tunnel to the upstream with status {status}{}", proxy_hint(*status))]
    EgressProxyDenied { status: u16 },
    /// No caller, or not the caller it claims: 401 in origin form, 407 in absolute form.
    #[error("{}", why.message())]
    CallerUnauthenticated {
        /// The request is in absolute form (the client takes the sidecar for its proxy).
        proxy_form: bool,
        why: AuthFailure,
    },
    /// A known caller on a route that does not list it.
    #[error("caller {caller} may not use route {route}")]
    CallerDenied { caller: String, route: String },
    /// A bug: the sidecar failed while handling the request (a panic, caught).
    #[error("the sidecar failed while handling the request; this is a bug, please report it")]
    Internal,
}

impl ProxyError {
    /// The `<reason>` of the error code and header.
    pub fn reason(&self) -> &'static str {
        match self {
            ProxyError::BadRequest(_) => "bad_request",
            ProxyError::NoRoute(_) => "no_route",
            ProxyError::PolicyDenied { .. } => "policy_denied",
            ProxyError::PeerDenied(_) => "peer_denied",
            ProxyError::HostDenied(_) => "host_denied",
            ProxyError::BrowserDenied => "browser_denied",
            ProxyError::MethodNotAllowed(_) => "method_not_allowed",
            ProxyError::CredentialUnavailable(_) => "credential_unavailable",
            ProxyError::RateLimited { .. } => "rate_limited",
            ProxyError::BodyTooLarge(_) => "body_too_large",
            ProxyError::HeadersTooLarge => "headers_too_large",
            ProxyError::UpstreamUnreachable(_) => "upstream_unreachable",
            ProxyError::UpstreamTls(_) => "upstream_tls",
            ProxyError::UpstreamProtocol(_) => "upstream_protocol",
            ProxyError::UpstreamTimeout(_) => "upstream_timeout",
            ProxyError::EgressProxyUnreachable(_) => "egress_proxy_unreachable",
            ProxyError::EgressProxyDenied { .. } => "egress_proxy_denied",
            ProxyError::CallerUnauthenticated { .. } => "caller_unauthenticated",
            ProxyError::CallerDenied { .. } => "caller_denied",
            ProxyError::Internal => "internal",
        }
    }

    /// Every `<reason>` there is.
    pub const REASONS: [&'static str; 20] = [
        "bad_request",
        "no_route",
        "policy_denied",
        "peer_denied",
        "host_denied",
        "browser_denied",
        "method_not_allowed",
        "credential_unavailable",
        "rate_limited",
        "body_too_large",
        "headers_too_large",
        "upstream_unreachable",
        "upstream_tls",
        "upstream_protocol",
        "upstream_timeout",
        "egress_proxy_unreachable",
        "egress_proxy_denied",
        "caller_unauthenticated",
        "caller_denied",
        "internal",
    ];

    /// The HTTP status the error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ProxyError::NoRoute(_) => StatusCode::NOT_FOUND,
            ProxyError::PolicyDenied { .. }
            | ProxyError::PeerDenied(_)
            | ProxyError::HostDenied(_)
            | ProxyError::BrowserDenied
            | ProxyError::CallerDenied { .. } => StatusCode::FORBIDDEN,
            ProxyError::CallerUnauthenticated {
                proxy_form: true, ..
            } => StatusCode::PROXY_AUTHENTICATION_REQUIRED,
            ProxyError::CallerUnauthenticated { .. } => StatusCode::UNAUTHORIZED,
            ProxyError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ProxyError::CredentialUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ProxyError::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ProxyError::UpstreamUnreachable(_)
            | ProxyError::UpstreamTls(_)
            | ProxyError::UpstreamProtocol(_)
            | ProxyError::EgressProxyUnreachable(_)
            | ProxyError::EgressProxyDenied { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Whether the error is about the upstream (counted as an upstream error).
    pub fn is_upstream(&self) -> bool {
        matches!(
            self,
            ProxyError::UpstreamUnreachable(_)
                | ProxyError::UpstreamTls(_)
                | ProxyError::UpstreamProtocol(_)
                | ProxyError::UpstreamTimeout(_)
                | ProxyError::EgressProxyUnreachable(_)
                | ProxyError::EgressProxyDenied { .. }
        )
    }

    /// The DigiCert-shaped JSON response for this error.
    pub fn into_response(self) -> Response<ProxyBody> {
        let reason = self.reason();
        let body = serde_json::json!({
            "errors": [{ "code": format!("sidecar_{reason}"), "message": self.to_string() }]
        });
        let mut resp = Response::new(full(body.to_string()));
        *resp.status_mut() = self.status();
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(ERROR_HEADER, HeaderValue::from_static(reason));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let ProxyError::RateLimited { retry_after, .. } = &self {
            headers.insert(
                header::RETRY_AFTER,
                HeaderValue::from(retry_after.as_secs().max(1)),
            );
        }
        if let ProxyError::BadRequest(_) | ProxyError::BodyTooLarge(_) = &self {
            // The rest of the connection cannot be trusted to be framed as the client meant.
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if let ProxyError::CallerUnauthenticated { proxy_form, why } = &self {
            let (name, challenge) = if *proxy_form {
                (
                    header::PROXY_AUTHENTICATE,
                    "Basic realm=\"digicert-sidecar\"",
                )
            } else {
                (
                    header::WWW_AUTHENTICATE,
                    "Bearer realm=\"digicert-sidecar\"",
                )
            };
            headers.insert(name, HeaderValue::from_static(challenge));
            if *why == AuthFailure::TooMany {
                // Ten wrong tokens on one connection: no more guesses on it.
                headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
        }
        if let ProxyError::MethodNotAllowed(_) = &self {
            headers.insert(
                header::ALLOW,
                HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
            );
        }
        resp
    }

    /// The answer for a request body the sidecar cut short.
    pub fn from_request_body(err: BodyError) -> Self {
        match err {
            BodyError::TooLarge(n) => ProxyError::BodyTooLarge(n),
            BodyError::Idle(d) => {
                ProxyError::BadRequest(format!("the request body stalled for {d:?}"))
            }
            BodyError::Broken => {
                ProxyError::BadRequest("the request body is malformed or was cut off".into())
            }
        }
    }
}

/// Why a request's caller could not be accepted. Each is a `reason` of
/// `digicert_sidecar_caller_rejected_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No token where one is required.
    Missing,
    /// A token that is no caller's.
    Wrong,
    /// Credentials that are neither Bearer nor Basic `name:token`.
    Malformed,
    /// Basic credentials whose name is not the token's caller.
    NameMismatch,
    /// The connection presented too many wrong tokens; it is closed.
    TooMany,
}

impl AuthFailure {
    pub const ALL: [AuthFailure; 5] = [
        AuthFailure::Missing,
        AuthFailure::Wrong,
        AuthFailure::Malformed,
        AuthFailure::NameMismatch,
        AuthFailure::TooMany,
    ];

    /// The metric's `reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthFailure::Missing => "missing",
            AuthFailure::Wrong => "wrong_token",
            AuthFailure::Malformed => "malformed",
            AuthFailure::NameMismatch => "name_mismatch",
            AuthFailure::TooMany => "too_many_wrong",
        }
    }

    /// One sentence for the answer's message. Never the token or the name presented.
    pub fn message(self) -> &'static str {
        match self {
            AuthFailure::Missing => {
                "this sidecar serves named callers: present your caller token as \
                 Proxy-Authorization (Bearer <token>, or Basic with your caller name and token) \
                 or, to a sidecar URL, Authorization: Bearer <token>"
            }
            AuthFailure::Wrong => "the caller token presented is not valid",
            AuthFailure::Malformed => {
                "the caller credentials are neither `Bearer <token>` nor Basic `name:token`"
            }
            AuthFailure::NameMismatch => {
                "the caller name in the Basic credentials is not the name of the token's caller"
            }
            AuthFailure::TooMany => {
                "too many wrong caller tokens on this connection; it is being closed"
            }
        }
    }

    /// Whether this failure counts against the connection.
    pub(crate) fn is_guess(self) -> bool {
        matches!(
            self,
            AuthFailure::Wrong | AuthFailure::NameMismatch | AuthFailure::Malformed
        )
    }
}

/// The reason an `x-digicert-sidecar-error` header names, if it is one of ours.
pub fn reason_named(value: &[u8]) -> Option<&'static str> {
    ProxyError::REASONS
        .iter()
        .copied()
        .find(|r| r.as_bytes() == value)
}

/// A request error on its way to the one place it becomes a response, with the route it was
/// on (if routing got that far) and its caller (if known) for the access line and the metrics.
#[derive(Debug)]
pub struct Refused {
    pub error: ProxyError,
    pub route: Option<std::sync::Arc<str>>,
    /// The caller, once the caller layer knew it.
    pub caller: Option<std::sync::Arc<str>>,
}

impl From<ProxyError> for Refused {
    fn from(error: ProxyError) -> Self {
        Self {
            error,
            route: None,
            caller: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[test]
    fn every_reason_has_the_status_of_the_spec() {
        let cases = [
            (ProxyError::BadRequest("x".into()), 400, "bad_request"),
            (ProxyError::NoRoute("/x".into()), 404, "no_route"),
            (
                ProxyError::PolicyDenied {
                    route: "r".into(),
                    method: Method::GET,
                    path: "/x".into(),
                },
                403,
                "policy_denied",
            ),
            (ProxyError::PeerDenied("x".into()), 403, "peer_denied"),
            (ProxyError::HostDenied("x".into()), 403, "host_denied"),
            (ProxyError::BrowserDenied, 403, "browser_denied"),
            (
                ProxyError::MethodNotAllowed(Method::TRACE),
                405,
                "method_not_allowed",
            ),
            (
                ProxyError::CredentialUnavailable("r".into()),
                503,
                "credential_unavailable",
            ),
            (
                ProxyError::RateLimited {
                    route: "r".into(),
                    retry_after: Duration::from_secs(2),
                },
                429,
                "rate_limited",
            ),
            (ProxyError::BodyTooLarge(1), 413, "body_too_large"),
            (ProxyError::HeadersTooLarge, 431, "headers_too_large"),
            (
                ProxyError::UpstreamUnreachable("x".into()),
                502,
                "upstream_unreachable",
            ),
            (ProxyError::UpstreamTls("x".into()), 502, "upstream_tls"),
            (
                ProxyError::UpstreamProtocol("x".into()),
                502,
                "upstream_protocol",
            ),
            (
                ProxyError::UpstreamTimeout(Duration::from_secs(1)),
                504,
                "upstream_timeout",
            ),
            (
                ProxyError::EgressProxyUnreachable("x".into()),
                502,
                "egress_proxy_unreachable",
            ),
            (
                ProxyError::EgressProxyDenied { status: 407 },
                502,
                "egress_proxy_denied",
            ),
            (
                ProxyError::CallerUnauthenticated {
                    proxy_form: false,
                    why: AuthFailure::Missing,
                },
                401,
                "caller_unauthenticated",
            ),
            (
                ProxyError::CallerDenied {
                    caller: "billing".into(),
                    route: "r".into(),
                },
                403,
                "caller_denied",
            ),
            (ProxyError::Internal, 500, "internal"),
        ];
        assert_eq!(cases.len(), ProxyError::REASONS.len());
        for (err, status, reason) in cases {
            assert_eq!(err.status().as_u16(), status, "{reason}");
            assert_eq!(err.reason(), reason);
            assert_eq!(reason_named(reason.as_bytes()), Some(reason));
        }
    }

    #[test]
    fn an_unauthenticated_caller_is_challenged_as_the_form_of_its_request_asks() {
        let origin = ProxyError::CallerUnauthenticated {
            proxy_form: false,
            why: AuthFailure::Wrong,
        }
        .into_response();
        assert_eq!(origin.status(), 401);
        assert_eq!(
            origin.headers()[header::WWW_AUTHENTICATE],
            "Bearer realm=\"digicert-sidecar\""
        );
        assert!(!origin.headers().contains_key(header::CONNECTION));
        let proxy = ProxyError::CallerUnauthenticated {
            proxy_form: true,
            why: AuthFailure::TooMany,
        }
        .into_response();
        assert_eq!(proxy.status(), 407);
        assert_eq!(
            proxy.headers()[header::PROXY_AUTHENTICATE],
            "Basic realm=\"digicert-sidecar\""
        );
        assert_eq!(proxy.headers()[header::CONNECTION], "close");
        assert!(!proxy.headers().contains_key(header::WWW_AUTHENTICATE));
    }

    #[tokio::test]
    async fn the_body_is_digicert_shaped() {
        let resp = ProxyError::RateLimited {
            route: "cc".into(),
            retry_after: Duration::from_secs(3),
        }
        .into_response();
        assert_eq!(resp.headers()[ERROR_HEADER], "rate_limited");
        assert_eq!(resp.headers()[header::RETRY_AFTER], "3");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["errors"][0]["code"], "sidecar_rate_limited");
        assert!(v["errors"][0]["message"].as_str().unwrap().contains("cc"));
    }
}
