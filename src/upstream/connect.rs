//! Opening a connection to the upstream: TCP (each resolved address in turn, no Nagle, TCP
//! keep-alive) and the TLS handshake (SNI = the upstream host, the route's roots and client
//! certificate), both inside `connect_timeout`.

use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::error::UpstreamError;

/// How often an idle upstream connection is probed at the TCP level.
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);

/// Dials one upstream `host:port` with one TLS configuration.
#[derive(Clone)]
pub struct Connector {
    tls: TlsConnector,
    host: Arc<str>,
    server_name: ServerName<'static>,
    port: u16,
    timeout: Duration,
}

/// A TLS connection and whether the upstream chose h2 in ALPN.
pub struct Connected {
    pub stream: TlsStream<TcpStream>,
    pub h2: bool,
}

impl Connector {
    /// `tls` must offer the ALPN protocols the pool speaks (see `tls::client_config`).
    pub fn new(
        tls: Arc<ClientConfig>,
        host: &str,
        port: u16,
        timeout: Duration,
    ) -> Result<Self, UpstreamError> {
        let server_name = ServerName::try_from(host.to_owned())
            .map_err(|_| UpstreamError::BadHost(host.to_owned()))?;
        Ok(Self {
            tls: TlsConnector::from(tls),
            host: Arc::from(host),
            server_name,
            port,
            timeout,
        })
    }

    /// TCP + TLS, or the reason it failed; never longer than the connect timeout.
    pub async fn connect(&self) -> Result<Connected, UpstreamError> {
        let dial = async {
            let tcp = TcpStream::connect((&*self.host, self.port))
                .await
                .map_err(UpstreamError::Connect)?;
            let _ = tcp.set_nodelay(true);
            let _ = socket2::SockRef::from(&tcp)
                .set_tcp_keepalive(&socket2::TcpKeepalive::new().with_time(TCP_KEEPALIVE));
            let stream = self
                .tls
                .connect(self.server_name.clone(), tcp)
                .await
                .map_err(UpstreamError::Tls)?;
            let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
            Ok(Connected { stream, h2 })
        };
        tokio::time::timeout(self.timeout, dial)
            .await
            .map_err(|_| UpstreamError::ConnectTimeout)?
    }
}
