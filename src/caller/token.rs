//! The caller credentials a request presents, read from its headers: `Proxy-Authorization:
//! Bearer <token>` or `Basic base64(name:token)` (what `HTTP_PROXY=http://name:token@…`
//! makes ordinary clients send), or, in origin form only, `Authorization: Bearer <token>`.
//! Only the token's SHA-256 digest leaves this file; the token itself is wiped.

use base64::Engine as _;
use http::{HeaderMap, header};
use ring::digest;
use zeroize::Zeroizing;

/// A SHA-256 digest of a token: what is compared and stored, never the token.
pub type Digest = [u8; 32];

/// What a request presents.
#[derive(PartialEq, Eq)]
pub enum Presented {
    /// No caller credentials.
    Nothing,
    /// A token, and the caller name of Basic credentials (`None` for Bearer).
    Token {
        digest: Digest,
        name: Option<String>,
    },
    /// Caller credentials that are neither Bearer nor Basic `name:token`.
    Malformed,
}

/// By hand: a digest is not printed.
impl std::fmt::Debug for Presented {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Presented::Nothing => f.write_str("Nothing"),
            Presented::Token { name, .. } => f
                .debug_struct("Token")
                .field("name", name)
                .finish_non_exhaustive(),
            Presented::Malformed => f.write_str("Malformed"),
        }
    }
}

/// The SHA-256 digest of a token.
pub fn digest_of(token: &[u8]) -> Digest {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, token).as_ref());
    out
}

/// Read the caller credentials of a request. `origin_form`: the request is not a proxy
/// request, so `Authorization: Bearer` is the caller's too (in a proxy request it belongs
/// to the request for DigiCert, and the credential layer drops it).
pub fn presented(headers: &HeaderMap, origin_form: bool) -> Presented {
    let mut proxy = headers.get_all(header::PROXY_AUTHORIZATION).iter();
    if let Some(value) = proxy.next() {
        if proxy.next().is_some() {
            return Presented::Malformed;
        }
        return parse(value.as_bytes(), true);
    }
    if origin_form {
        let mut auth = headers.get_all(header::AUTHORIZATION).iter();
        if let (Some(value), None) = (auth.next(), auth.next())
            && scheme(value.as_bytes(), b"bearer").is_some()
        {
            return parse(value.as_bytes(), false);
        }
    }
    Presented::Nothing
}

/// The credentials after `scheme ` (case-insensitive scheme), if `value` has that scheme.
fn scheme<'a>(value: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let (s, rest) = value.split_at_checked(name.len())?;
    if !s.eq_ignore_ascii_case(name) || rest.first() != Some(&b' ') {
        return None;
    }
    let rest = rest.trim_ascii();
    (!rest.is_empty()).then_some(rest)
}

fn parse(value: &[u8], basic_allowed: bool) -> Presented {
    if let Some(token) = scheme(value, b"bearer") {
        return Presented::Token {
            digest: digest_of(token),
            name: None,
        };
    }
    if basic_allowed && let Some(encoded) = scheme(value, b"basic") {
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded) else {
            return Presented::Malformed;
        };
        let decoded = Zeroizing::new(decoded);
        let Some(colon) = decoded.iter().position(|b| *b == b':') else {
            return Presented::Malformed;
        };
        let (name, token) = (&decoded[..colon], &decoded[colon + 1..]);
        if token.is_empty() {
            return Presented::Malformed;
        }
        return Presented::Token {
            digest: digest_of(token),
            name: Some(String::from_utf8_lossy(name).into_owned()),
        };
    }
    Presented::Malformed
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn token(t: &str, name: Option<&str>) -> Presented {
        Presented::Token {
            digest: digest_of(t.as_bytes()),
            name: name.map(str::to_string),
        }
    }

    #[test]
    fn bearer_and_basic_in_proxy_authorization() {
        let h = headers(&[("proxy-authorization", "Bearer s3cret")]);
        assert_eq!(presented(&h, false), token("s3cret", None));
        // base64("billing:s3cret:with:colons")
        let b = base64::engine::general_purpose::STANDARD.encode("billing:s3cret:with:colons");
        let h = headers(&[("proxy-authorization", &format!("basic {b}"))]);
        assert_eq!(
            presented(&h, true),
            token("s3cret:with:colons", Some("billing"))
        );
    }

    #[test]
    fn authorization_bearer_counts_in_origin_form_only() {
        let h = headers(&[("authorization", "Bearer s3cret")]);
        assert_eq!(presented(&h, true), token("s3cret", None));
        assert_eq!(presented(&h, false), Presented::Nothing);
        // Another scheme in Authorization is not ours.
        let h = headers(&[("authorization", "Basic YTpi")]);
        assert_eq!(presented(&h, true), Presented::Nothing);
    }

    #[test]
    fn malformed_credentials_are_named_so() {
        for bad in [
            "Bearer",
            "Bearer ",
            "Digest x=1",
            "Basic !!!",
            "Basic YWJj",         // "abc": no colon
            "Basic YmlsbGluZzo=", // "billing:": no token
        ] {
            let h = headers(&[("proxy-authorization", bad)]);
            assert_eq!(presented(&h, true), Presented::Malformed, "{bad}");
        }
        let h = headers(&[
            ("proxy-authorization", "Bearer a"),
            ("proxy-authorization", "Bearer b"),
        ]);
        assert_eq!(presented(&h, true), Presented::Malformed);
    }

    #[test]
    fn debug_shows_no_digest() {
        let shown = format!("{:?}", token("canary", Some("billing")));
        assert_eq!(shown, "Token { name: Some(\"billing\"), .. }");
    }
}
