//! The corporate proxy a route's connections go through, ready to dial: its address, its
//! own TLS (for an `https://` proxy: the proxy's trust roots, never the client certificate)
//! and the `Proxy-Authorization` value. Which proxy, if any, is decided by the
//! configuration (`config::egress`); this is what a [`super::connect::Connector`] uses.

use std::sync::Arc;

use base64::Engine as _;
use http::HeaderValue;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use secrecy::ExposeSecret;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use zeroize::Zeroizing;

use super::error::UpstreamError;
use super::tunnel;
use super::wire::Wire;
use crate::config::{ProxyAuth, ProxyRoute};
use crate::credential::{CredentialError, read_secret};

/// A proxy to dial, loaded.
#[derive(Clone)]
pub struct Proxy {
    host: Arc<str>,
    port: u16,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    auth: Option<HeaderValue>,
    shown: Arc<str>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("at", &self.shown)
            .field("auth", &self.auth.as_ref().map(|_| "***"))
            .finish()
    }
}

impl Proxy {
    /// Read the proxy's credentials and trust roots.
    pub fn load(route: &ProxyRoute) -> Result<Self, CredentialError> {
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
                crate::config::egress_intercept(&url, "", &any)
                    .and_then(|i| i.basic_auth().cloned())
            }
        };
        let tls = if route.tls {
            let roots = crate::credential::trust::roots(route.ca_file.as_deref())?;
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut config = ClientConfig::builder_with_provider(provider)
                .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
                .expect("the ring provider supports TLS 1.2 and 1.3")
                .with_root_certificates(roots)
                // The client certificate is for DigiCert, inside the tunnel; never the proxy.
                .with_no_client_auth();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            let name = ServerName::try_from(route.host.clone()).map_err(|_| {
                CredentialError::Certificate {
                    what: format!("proxy {}", route.host),
                    reason: "not a valid TLS server name".into(),
                }
            })?;
            Some((TlsConnector::from(Arc::new(config)), name))
        } else {
            None
        };
        Ok(Self {
            host: Arc::from(route.host.as_str()),
            port: route.port,
            tls,
            auth,
            shown: Arc::from(route.to_string()),
        })
    }

    /// TCP (and TLS) to the proxy, then a tunnel to `authority`. Every failure here is the
    /// proxy's: unreachable, closed, TLS refused, or denied with a status.
    pub async fn tunnel(&self, authority: &str) -> Result<Wire, UpstreamError> {
        let unreachable = |what: String| UpstreamError::ProxyUnreachable(what);
        let tcp = TcpStream::connect((&*self.host, self.port))
            .await
            .map_err(|e| unreachable(format!("cannot connect to the proxy: {e}")))?;
        super::connect::tune(&tcp);
        let mut wire = match &self.tls {
            None => Wire::Tcp(tcp),
            Some((tls, name)) => {
                Wire::Tls(Box::new(tls.connect(name.clone(), tcp).await.map_err(
                    |e| unreachable(format!("TLS with the proxy failed: {e}")),
                )?))
            }
        };
        match tunnel::open(&mut wire, authority, self.auth.as_ref()).await {
            Ok(()) => Ok(wire),
            Err(tunnel::TunnelError::Denied(status)) => Err(UpstreamError::ProxyDenied(status)),
            Err(e) => Err(unreachable(e.to_string())),
        }
    }
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
    #[test]
    fn basic_auth_is_base64_and_sensitive() {
        let v = super::basic("Aladdin:open sesame");
        assert_eq!(v, "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
        assert!(v.is_sensitive());
    }
}
