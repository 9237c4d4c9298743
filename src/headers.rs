//! Header hygiene on both legs: hop-by-hop headers never cross the proxy, and no
//! client-supplied credential reaches DigiCert (strip, then set: see `proxy.rs`).

use http::HeaderMap;
use http::header::{self, HeaderName};

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1).
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Credential headers a client might send; never forwarded, whatever their case.
pub const CREDENTIAL_HEADERS: [HeaderName; 4] = [
    HeaderName::from_static("x-dc-devkey"),
    HeaderName::from_static("x-api-key"),
    header::AUTHORIZATION,
    header::PROXY_AUTHORIZATION,
];

/// Remove hop-by-hop headers, including those the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One walk over the names finds the hop-by-hop ones present (most messages have at
    // most `Connection: keep-alive`, which nginx and DigiCert send on every answer); only
    // those are removed, each a hash lookup.
    let mut present = 0u8;
    for name in headers.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|h| h == name) {
            present |= 1 << i;
        } else if name == header::PROXY_AUTHENTICATE {
            present |= 1 << HOP_BY_HOP.len();
        }
    }
    if present == 0 {
        return;
    }
    if present & 1 != 0 {
        // `Connection` (bit 0): its tokens name more headers to drop. `keep-alive` and
        // `close` are the usual tokens and need no name built (no allocation).
        let mut named: Vec<HeaderName> = Vec::new();
        let mut close = false;
        for token in headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
        {
            if token.eq_ignore_ascii_case("close") {
                close = true;
            } else if !token.eq_ignore_ascii_case("keep-alive")
                && let Ok(name) = HeaderName::from_bytes(token.as_bytes())
            {
                named.push(name);
            }
        }
        if close {
            headers.remove("close");
        }
        for name in &named {
            headers.remove(name);
        }
    }
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(name);
        }
    }
    if present & (1 << HOP_BY_HOP.len()) != 0 {
        headers.remove(header::PROXY_AUTHENTICATE);
    }
}

/// Remove every credential header (and the route's own credential header, if it is another
/// name). Returns the names that were present, for a debug line.
pub fn strip_credentials(headers: &mut HeaderMap, own: Option<&HeaderName>) -> Vec<HeaderName> {
    let mut stripped = Vec::new();
    // Almost no request carries one: a walk over the names is cheaper than a removal (a
    // hash of the name) for each credential header.
    if !headers
        .keys()
        .any(|name| CREDENTIAL_HEADERS.contains(name) || own == Some(name))
    {
        return stripped;
    }
    for name in CREDENTIAL_HEADERS.iter().chain(own) {
        if headers.remove(name).is_some() {
            stripped.push(name.clone());
        }
    }
    stripped
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn connection_named_headers_go_too() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("close, x-foo"));
        h.append(
            header::CONNECTION,
            HeaderValue::from_static("Keep-Alive, X-Baz"),
        );
        h.insert("x-foo", HeaderValue::from_static("1"));
        h.insert("x-baz", HeaderValue::from_static("1"));
        h.insert("close", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-bar", HeaderValue::from_static("2"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-bar"));
    }

    #[test]
    fn each_hop_by_hop_header_goes_alone_and_the_rest_stay() {
        for name in HOP_BY_HOP.iter().chain([&header::PROXY_AUTHENTICATE]) {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("a/b"));
            h.append(name.clone(), HeaderValue::from_static("keep-alive"));
            h.append(name.clone(), HeaderValue::from_static("x"));
            h.insert("x-after", HeaderValue::from_static("1"));
            strip_hop_by_hop(&mut h);
            assert!(!h.contains_key(name), "{name} was kept");
            assert_eq!(h.len(), 2, "{name}: {h:?}");
        }
    }

    #[test]
    fn every_credential_header_is_stripped_in_any_case() {
        let mut h = HeaderMap::new();
        for name in [
            "X-DC-DEVKEY",
            "X-Api-Key",
            "authorization",
            "Proxy-Authorization",
            "X-Custom-Key",
        ] {
            h.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_static("v"),
            );
        }
        let own = HeaderName::from_static("x-custom-key");
        assert_eq!(strip_credentials(&mut h, Some(&own)).len(), 5);
        assert!(h.is_empty());
    }
}
