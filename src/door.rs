//! The door: checks every request passes before routing and policy. Methods outside the
//! REST set, odd header names and paths that could be read two ways are refused; so are
//! requests that come from a web page (DNS rebinding, CSRF) or name a foreign `Host`.

use http::{HeaderMap, Method, Request, header};

use crate::error::ProxyError;

/// What the door knows about its listener.
#[derive(Debug, Clone)]
pub struct Door {
    /// Host names (lowercase, no port) that a `Host` header may carry besides loopback:
    /// the listen address and the upstream hosts of the listener's routes.
    pub allowed_hosts: Vec<String>,
}

impl Door {
    /// Run every check; the first failure is the answer.
    pub fn check<B>(&self, req: &Request<B>) -> Result<(), ProxyError> {
        check_method(req.method())?;
        check_transfer_encoding(req.headers())?;
        check_header_names(req.headers())?;
        check_path(req.uri().path())?;
        self.check_host(req)?;
        check_browser(req.headers())
    }

    fn check_host<B>(&self, req: &Request<B>) -> Result<(), ProxyError> {
        let host = match req.uri().authority() {
            Some(a) => a.host().to_string(),
            None => match req.headers().get(header::HOST) {
                None => return Ok(()),
                Some(v) => {
                    let v = v.to_str().map_err(|_| {
                        ProxyError::BadRequest("the Host header is not text".into())
                    })?;
                    let auth: http::uri::Authority = v.parse().map_err(|_| {
                        ProxyError::BadRequest("the Host header is malformed".into())
                    })?;
                    auth.host().to_string()
                }
            },
        };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let loopback = host == "localhost"
            || host.ends_with(".localhost")
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if loopback || self.allowed_hosts.contains(&host) {
            Ok(())
        } else {
            Err(ProxyError::HostDenied(format!(
                "Host `{host}` is neither loopback, this listener, nor a configured upstream"
            )))
        }
    }
}

/// GET, HEAD, POST, PUT, PATCH, DELETE and OPTIONS only (no CONNECT, no TRACE).
pub fn check_method(method: &Method) -> Result<(), ProxyError> {
    match *method {
        Method::GET
        | Method::HEAD
        | Method::POST
        | Method::PUT
        | Method::PATCH
        | Method::DELETE
        | Method::OPTIONS => Ok(()),
        _ => Err(ProxyError::MethodNotAllowed(method.clone())),
    }
}

/// A body's framing must be unambiguous: `Transfer-Encoding`, if present, is exactly one
/// `chunked` (RFC 9112 §6.1). hyper accepts any list ending in `chunked` and would forward
/// a body whose other codings it never undid.
pub fn check_transfer_encoding(headers: &HeaderMap) -> Result<(), ProxyError> {
    let mut codings = headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(|c| c.trim_ascii())
        .filter(|c| !c.is_empty());
    match (codings.next(), codings.next()) {
        (None, _) => Ok(()),
        (Some(c), None) if c.eq_ignore_ascii_case(b"chunked") => Ok(()),
        _ => Err(ProxyError::BadRequest(
            "Transfer-Encoding must be exactly \"chunked\"".into(),
        )),
    }
}

/// Header names with `_` are refused: some servers read `X_DC_DEVKEY` as `X-DC-DEVKEY`.
pub fn check_header_names(headers: &HeaderMap) -> Result<(), ProxyError> {
    match headers.keys().find(|name| name.as_str().contains('_')) {
        Some(name) => Err(ProxyError::BadRequest(format!(
            "header name `{name}` contains '_'; use '-'"
        ))),
        None => Ok(()),
    }
}

/// Paths with dot segments, encoded dots or slashes, backslashes or empty segments are
/// refused: the policy and DigiCert could read them differently.
pub fn check_path(path: &str) -> Result<(), ProxyError> {
    let bad = |why: &str| Err(ProxyError::BadRequest(format!("the path {why}")));
    if !path.starts_with('/') {
        return bad("must start with '/'");
    }
    if path.contains("//") {
        return bad("contains an empty segment ('//')");
    }
    if path.contains('\\') {
        return bad("contains a backslash");
    }
    let lower = path.to_ascii_lowercase();
    if lower.contains("%2e")
        || lower.contains("%2f")
        || lower.contains("%5c")
        || lower.contains("%00")
    {
        return bad("contains an encoded '.', '/', '\\' or NUL");
    }
    if path.split('/').any(|seg| seg == "." || seg == "..") {
        return bad("contains a '.' or '..' segment");
    }
    Ok(())
}

/// A browser marks its requests with `Origin` or `Sec-Fetch-*`; the sidecar serves programs.
pub fn check_browser(headers: &HeaderMap) -> Result<(), ProxyError> {
    let from_browser = headers.contains_key(header::ORIGIN)
        || headers.keys().any(|k| k.as_str().starts_with("sec-fetch-"));
    if from_browser {
        Err(ProxyError::BrowserDenied)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        for good in ["/", "/services/v2/user", "/a/b.json", "/a/..b", "/a%20b"] {
            assert!(check_path(good).is_ok(), "{good}");
        }
        for bad in [
            "/a/../b",
            "/..",
            "/a/./b",
            "//a",
            "/a//b",
            "/a/%2e%2e/b",
            "/a%2Fb",
            "/a\\b",
            "/a%5cb",
        ] {
            assert!(check_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn methods() {
        assert!(check_method(&Method::PATCH).is_ok());
        assert!(check_method(&Method::CONNECT).is_err());
        assert!(check_method(&Method::TRACE).is_err());
        assert!(check_method(&Method::from_bytes(b"PROPFIND").unwrap()).is_err());
    }

    fn req(host: &str) -> Request<()> {
        Request::builder()
            .uri("/x")
            .header("host", host)
            .body(())
            .unwrap()
    }

    #[test]
    fn hosts() {
        let door = Door {
            allowed_hosts: vec!["www.digicert.com".into()],
        };
        for ok in [
            "localhost",
            "localhost:8080",
            "127.0.0.1:8080",
            "[::1]:8080",
            "www.digicert.com",
        ] {
            assert!(door.check(&req(ok)).is_ok(), "{ok}");
        }
        for bad in ["evil.example", "10.0.0.1", "digicert.com.evil"] {
            assert!(door.check(&req(bad)).is_err(), "{bad}");
        }
    }
}
