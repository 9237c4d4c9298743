//! Opening a connection to the upstream: TCP (each resolved address in turn, no Nagle, TCP
//! keep-alive) straight to it or through the route's egress proxy (a CONNECT tunnel, see
//! [`super::egress`]), then the TLS handshake with the upstream (SNI = the upstream host,
//! the route's roots and client certificate), all inside `connect_timeout`.

use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::egress::Proxy;
use super::error::UpstreamError;
use super::wire::{Wire, tune};

/// Dials one upstream `host:port` with one TLS configuration.
#[derive(Clone)]
pub struct Connector {
    tls: TlsConnector,
    host: Arc<str>,
    server_name: ServerName<'static>,
    port: u16,
    timeout: Duration,
    /// `host:port` for CONNECT.
    authority: Arc<str>,
    proxy: Option<Proxy>,
}

/// A TLS connection and whether the upstream chose h2 in ALPN.
pub struct Connected {
    pub stream: TlsStream<Wire>,
    pub h2: bool,
}

impl Connector {
    /// `tls` must offer the ALPN protocols the pool speaks (see `tls::client_config`);
    /// `proxy` is the route's egress proxy, if it has one.
    pub fn new(
        tls: Arc<ClientConfig>,
        host: &str,
        port: u16,
        timeout: Duration,
        proxy: Option<Proxy>,
    ) -> Result<Self, UpstreamError> {
        let server_name = ServerName::try_from(host.to_owned())
            .map_err(|_| UpstreamError::BadHost(host.to_owned()))?;
        Ok(Self {
            tls: TlsConnector::from(tls),
            host: Arc::from(host),
            server_name,
            port,
            timeout,
            authority: Arc::from(if host.contains(':') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            }),
            proxy,
        })
    }

    /// TCP (or a tunnel) + TLS, or the reason it failed; never longer than the connect
    /// timeout.
    pub async fn connect(&self) -> Result<Connected, UpstreamError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let wire = match &self.proxy {
            None => tokio::time::timeout_at(deadline, async {
                let tcp = TcpStream::connect((&*self.host, self.port))
                    .await
                    .map_err(UpstreamError::Connect)?;
                tune(&tcp);
                Ok(Wire::Tcp(tcp))
            })
            .await
            .map_err(|_| UpstreamError::ConnectTimeout)??,
            Some(proxy) => tokio::time::timeout_at(deadline, proxy.tunnel(&self.authority))
                .await
                .map_err(|_| {
                    UpstreamError::ProxyUnreachable(format!(
                        "no tunnel from the proxy within the connect timeout ({})",
                        humantime::format_duration(self.timeout)
                    ))
                })??,
        };
        let stream =
            tokio::time::timeout_at(deadline, self.tls.connect(self.server_name.clone(), wire))
                .await
                .map_err(|_| UpstreamError::ConnectTimeout)?
                .map_err(UpstreamError::Tls)?;
        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
        Ok(Connected { stream, h2 })
    }
}
