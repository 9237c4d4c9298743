//! The egress proxy's own credentials, read like the route's: `Proxy-Authorization: Basic`
//! from `proxy_auth_file`/`proxy_auth_env` (`user:password`) or the userinfo of the proxy
//! URL in `HTTPS_PROXY`/`ALL_PROXY`, and the trust roots of an `https://` proxy.

use base64::Engine as _;
use http::HeaderValue;
use secrecy::ExposeSecret;
use zeroize::Zeroizing;

use super::{CredentialError, read_secret};
use crate::config::{ProxyAuth, ProxyRoute};
use crate::upstream::egress::Proxy;

/// Read the proxy's credentials and trust roots; the proxy, ready to dial.
pub fn load(route: &ProxyRoute) -> Result<Proxy, CredentialError> {
    let auth = match &route.auth {
        None => None,
        Some(ProxyAuth::Secret(source)) => {
            let secret = read_secret(source)?;
            if !secret.expose_secret().contains(':') {
                return Err(CredentialError::Certificate {
                    what: format!("proxy credentials ({source})"),
                    reason: "expected `user:password`".into(),
                });
            }
            Some(basic(secret.expose_secret()))
        }
        Some(ProxyAuth::UrlInEnv(var)) => {
            let url = Zeroizing::new(std::env::var(var).unwrap_or_default());
            let any = http::Uri::from_static("https://example.invalid/");
            crate::config::egress_intercept(&url, "", &any).and_then(|i| i.basic_auth().cloned())
        }
    };
    let roots = route
        .tls
        .then(|| super::trust::roots(route.ca_file.as_deref()))
        .transpose()?;
    Proxy::new(&route.host, route.port, roots, auth, route.to_string()).map_err(|e| {
        CredentialError::Certificate {
            what: format!("proxy {}", route.host),
            reason: e.to_string(),
        }
    })
}

/// `Basic base64(user:password)`, marked sensitive.
fn basic(user_password: &str) -> HeaderValue {
    let mut text = Zeroizing::new(String::from("Basic "));
    base64::engine::general_purpose::STANDARD.encode_string(user_password, &mut text);
    let mut value = HeaderValue::from_str(&text).expect("base64 is a valid header value");
    value.set_sensitive(true);
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SecretSource;

    #[test]
    fn basic_auth_is_base64_and_sensitive() {
        let v = basic("Aladdin:open sesame");
        assert_eq!(v, "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
        assert!(v.is_sensitive());
    }

    #[test]
    fn the_password_is_never_in_debug_and_must_have_a_user() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("auth");
        std::fs::write(&file, "corp:CANARYpw77\n").unwrap();
        let mut route = ProxyRoute {
            tls: false,
            host: "proxy.corp".into(),
            port: 3128,
            source: "[egress] proxy".into(),
            auth: Some(ProxyAuth::Secret(SecretSource::File(file.clone()))),
            ca_file: None,
        };
        let proxy = load(&route).unwrap();
        let shown = format!("{proxy:?} {proxy:#?} {route:?} {route}");
        assert!(!shown.contains("CANARY"), "{shown}");
        assert!(
            !shown.contains(&base64::engine::general_purpose::STANDARD.encode("corp:CANARYpw77"))
        );
        std::fs::write(&file, "CANARYonly\n").unwrap();
        let err = load(&route).unwrap_err().to_string();
        assert!(
            err.contains("user:password") && !err.contains("CANARY"),
            "{err}"
        );
        route.auth = None;
        assert!(load(&route).is_ok());
    }
}
