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
        let names = NameScan::of(req.headers());
        if let Some(name) = names.underscore {
            return Err(underscore(name));
        }
        check_path(req.uri().path())?;
        self.check_host(req)?;
        if names.browser {
            return Err(ProxyError::BrowserDenied);
        }
        Ok(())
    }

    fn check_host<B>(&self, req: &Request<B>) -> Result<(), ProxyError> {
        let host = match req.uri().authority() {
            Some(a) => a.host(),
            None => match req.headers().get(header::HOST) {
                None => return Ok(()),
                Some(v) => host_of(v.as_bytes())?,
            },
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let loopback = host.eq_ignore_ascii_case("localhost")
            || host
                .len()
                .checked_sub(".localhost".len())
                .and_then(|i| host.get(i..))
                .is_some_and(|end| end.eq_ignore_ascii_case(".localhost"))
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if loopback
            || self
                .allowed_hosts
                .iter()
                .any(|h| h.eq_ignore_ascii_case(host))
        {
            Ok(())
        } else {
            Err(ProxyError::HostDenied(format!(
                "Host `{}` is neither loopback, this listener, nor a configured upstream",
                host.to_ascii_lowercase()
            )))
        }
    }
}

/// The host of a `Host` header value, `host[:port]`: a name, an IPv4 address or an
/// `[IPv6]` literal (brackets kept). Anything else, userinfo included, is malformed.
fn host_of(value: &[u8]) -> Result<&str, ProxyError> {
    let malformed = || ProxyError::BadRequest("the Host header is malformed".into());
    let text = std::str::from_utf8(value)
        .map_err(|_| ProxyError::BadRequest("the Host header is not text".into()))?;
    let (host, port) = match text.strip_prefix('[') {
        Some(rest) => {
            let end = rest.find(']').ok_or_else(malformed)?;
            let (literal, port) = rest.split_at(end + 1);
            if !literal[..end]
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.'))
            {
                return Err(malformed());
            }
            (&text[..end + 2], port)
        }
        None => {
            let (host, port) = match text.find(':') {
                Some(i) => text.split_at(i),
                None => (text, ""),
            };
            if !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
            {
                return Err(malformed());
            }
            (host, port)
        }
    };
    let port_ok = port.is_empty()
        || port
            .strip_prefix(':')
            .is_some_and(|p| p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    if host.is_empty() || !port_ok {
        return Err(malformed());
    }
    Ok(host)
}

/// What one walk over the header names finds.
struct NameScan<'a> {
    /// The first name with `_`: refused, as some servers read `X_DC_DEVKEY` as
    /// `X-DC-DEVKEY`.
    underscore: Option<&'a http::HeaderName>,
    /// `Origin` or `Sec-Fetch-*`: a browser sent it; the sidecar serves programs.
    browser: bool,
}

impl<'a> NameScan<'a> {
    fn of(headers: &'a HeaderMap) -> Self {
        let mut scan = NameScan {
            underscore: None,
            browser: false,
        };
        for name in headers.keys() {
            if scan.underscore.is_none() && name.as_str().contains('_') {
                scan.underscore = Some(name);
            }
            scan.browser |= *name == header::ORIGIN || name.as_str().starts_with("sec-fetch-");
        }
        scan
    }
}

fn underscore(name: &http::HeaderName) -> ProxyError {
    ProxyError::BadRequest(format!("header name `{name}` contains '_'; use '-'"))
}

/// GET, HEAD, POST, PUT, PATCH, DELETE and OPTIONS only (no CONNECT, no TRACE).
pub fn check_method(method: &Method) -> Result<(), ProxyError> {
    if ALLOWED_METHODS.contains(method) {
        Ok(())
    } else {
        Err(ProxyError::MethodNotAllowed(method.clone()))
    }
}

/// The methods DigiCert's APIs use; anything else is refused with 405.
pub const ALLOWED_METHODS: [Method; 7] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
    Method::OPTIONS,
];

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

/// Paths with dot segments, encoded dots or slashes, backslashes or empty segments are
/// refused: the policy and DigiCert could read them differently.
pub fn check_path(path: &str) -> Result<(), ProxyError> {
    let bad = |why: &str| Err(ProxyError::BadRequest(format!("the path {why}")));
    let b = path.as_bytes();
    if b.first() != Some(&b'/') {
        return bad("must start with '/'");
    }
    // One walk over the bytes finds every problem; they are reported in a fixed order.
    let (mut empty, mut backslash, mut encoded, mut dots) = (false, false, false, false);
    let mut segment = 0;
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'/' => {
                empty |= i > 0 && b[i - 1] == b'/';
                dots |= matches!(&b[segment..i], b"." | b"..");
                segment = i + 1;
            }
            b'\\' => backslash = true,
            b'%' if i + 2 < b.len() => {
                encoded |= matches!(
                    (b[i + 1], b[i + 2].to_ascii_lowercase()),
                    (b'2', b'e' | b'f') | (b'5', b'c') | (b'0', b'0')
                );
            }
            _ => {}
        }
    }
    dots |= matches!(&b[segment..], b"." | b"..");
    if empty {
        return bad("contains an empty segment ('//')");
    }
    if backslash {
        return bad("contains a backslash");
    }
    if encoded {
        return bad("contains an encoded '.', '/', '\\' or NUL");
    }
    if dots {
        return bad("contains a '.' or '..' segment");
    }
    Ok(())
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
            "/a%2E",
            "/a%00b",
        ] {
            assert!(check_path(bad).is_err(), "{bad}");
        }
    }

    /// The one-walk check answers as the five-walk one it replaced, on every string of up
    /// to five characters over the bytes that matter.
    #[test]
    fn the_one_walk_path_check_agrees_with_the_plain_reading() {
        fn plain(path: &str) -> Result<(), String> {
            if !path.starts_with('/') {
                return Err("start".into());
            }
            if path.contains("//") {
                return Err("empty".into());
            }
            if path.contains('\\') {
                return Err("backslash".into());
            }
            let enc = |w: &[u8]| {
                w[0] == b'%'
                    && matches!(
                        (w[1], w[2].to_ascii_lowercase()),
                        (b'2', b'e' | b'f') | (b'5', b'c') | (b'0', b'0')
                    )
            };
            if path.as_bytes().windows(3).any(enc) {
                return Err("encoded".into());
            }
            if path.split('/').any(|seg| seg == "." || seg == "..") {
                return Err("dots".into());
            }
            Ok(())
        }
        let alphabet = b"/.%2eE5c0\\a";
        let mut stack = vec![String::new()];
        let mut checked = 0;
        while let Some(p) = stack.pop() {
            let ours = check_path(&p).map_err(|e| e.to_string());
            let want = plain(&p);
            assert_eq!(ours.is_ok(), want.is_ok(), "{p:?}: {ours:?} vs {want:?}");
            if let (Err(ours), Err(want)) = (&ours, &want) {
                let word = match want.as_str() {
                    "start" => "start",
                    "empty" => "empty",
                    "backslash" => "backslash",
                    "encoded" => "encoded",
                    _ => "'.'",
                };
                assert!(ours.contains(word), "{p:?}: {ours} for {want}");
            }
            checked += 1;
            if p.len() < 5 {
                for &c in alphabet {
                    stack.push(format!("{p}{}", c as char));
                }
            }
        }
        assert!(checked > 100_000);
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
        for ok in [
            "LOCALHOST",
            "api.localhost:1",
            "WWW.DigiCert.com:443",
            "[::1]",
        ] {
            assert!(door.check(&req(ok)).is_ok(), "{ok}");
        }
        for bad in [
            "evil.example",
            "10.0.0.1",
            "digicert.com.evil",
            "localhost.evil",
            "user@localhost",
            "localhost:80:80",
            "localhost:x",
            "[::1",
            "[zz]:80",
            ":80",
            "",
        ] {
            assert!(door.check(&req(bad)).is_err(), "{bad}");
        }
    }
}
