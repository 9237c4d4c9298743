//! The corporate proxy a route's connections go through, ready to dial: its address, its
//! own TLS (for an `https://` proxy: the proxy's trust roots, never the client certificate)
//! and the `Proxy-Authorization` value. Which proxy, if any, is decided by the
//! configuration (`config::egress`); its credentials and roots are read by
//! `credential::proxy`; this is what a [`super::connect::Connector`] dials through.

use std::sync::Arc;

use http::HeaderValue;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::error::UpstreamError;
use super::tunnel;
use super::wire::{Wire, tune};

/// A proxy to dial.
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
    /// The proxy at `host:port`; with `tls_roots`, an `https://` proxy verified against
    /// them. `auth` is the whole `Proxy-Authorization` value; `shown` names the proxy in
    /// `Debug` (no password in it).
    pub fn new(
        host: &str,
        port: u16,
        tls_roots: Option<Arc<RootCertStore>>,
        auth: Option<HeaderValue>,
        shown: String,
    ) -> Result<Self, UpstreamError> {
        let tls = match tls_roots {
            None => None,
            Some(roots) => {
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                let mut config = ClientConfig::builder_with_provider(provider)
                    .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
                    .expect("the ring provider supports TLS 1.2 and 1.3")
                    .with_root_certificates(roots)
                    // The client certificate is for DigiCert, inside the tunnel; never the proxy.
                    .with_no_client_auth();
                config.alpn_protocols = vec![b"http/1.1".to_vec()];
                let name = ServerName::try_from(host.to_owned())
                    .map_err(|_| UpstreamError::BadHost(host.to_owned()))?;
                Some((TlsConnector::from(Arc::new(config)), name))
            }
        };
        Ok(Self {
            host: Arc::from(host),
            port,
            tls,
            auth,
            shown: Arc::from(shown),
        })
    }

    /// Whether `other` presents the same `Proxy-Authorization` (a reload changed nothing).
    pub fn same_credentials(&self, other: &Proxy) -> bool {
        self.auth == other.auth
    }

    /// TCP (and TLS) to the proxy, then a tunnel to `authority`. Every failure here is the
    /// proxy's: unreachable, closed, TLS refused, or denied with a status.
    pub async fn tunnel(&self, authority: &str) -> Result<Wire, UpstreamError> {
        let unreachable = |what: String| UpstreamError::ProxyUnreachable(what);
        let tcp = TcpStream::connect((&*self.host, self.port))
            .await
            .map_err(|e| unreachable(format!("cannot connect to the proxy: {e}")))?;
        tune(&tcp);
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
