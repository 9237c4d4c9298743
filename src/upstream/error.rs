//! How a failed exchange with the upstream is told apart — could not connect, TLS refused,
//! HTTP broken — and turned into the sidecar's own error (`upstream_unreachable`,
//! `upstream_tls`, `upstream_protocol`).

use std::error::Error as StdError;

use crate::body::BodyError;
use crate::error::ProxyError;

/// Why a request did not get an answer from the upstream.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The TCP connection failed (DNS, refused, unreachable).
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    /// The TLS handshake failed.
    #[error("TLS handshake failed: {0}")]
    Tls(std::io::Error),
    /// TCP + TLS took longer than `connect_timeout`.
    #[error("timed out connecting")]
    ConnectTimeout,
    /// The HTTP exchange broke (reset, malformed answer, closed early).
    #[error("{0}")]
    Http(#[source] hyper::Error),
    /// The egress proxy could not be reached, closed, failed its TLS or did not answer.
    #[error("egress proxy: {0}")]
    ProxyUnreachable(String),
    /// The egress proxy answered the CONNECT with this non-2xx status.
    #[error("the egress proxy answered the CONNECT with {0}")]
    ProxyDenied(u16),
    /// The upstream host is not a DNS name or IP address rustls accepts.
    #[error("`{0}` is not a valid TLS server name")]
    BadHost(String),
}

impl UpstreamError {
    /// The answer the sidecar gives for this failure.
    pub fn to_proxy_error(&self) -> ProxyError {
        match self {
            UpstreamError::Connect(e) => ProxyError::UpstreamUnreachable(innermost(e)),
            UpstreamError::Tls(e) => match chain(e).find_map(|c| c.downcast_ref::<rustls::Error>())
            {
                Some(tls) => ProxyError::UpstreamTls(describe_tls(tls)),
                None => ProxyError::UpstreamUnreachable(format!(
                    "the connection closed during the TLS handshake ({})",
                    innermost(e)
                )),
            },
            UpstreamError::ConnectTimeout => {
                ProxyError::UpstreamUnreachable("timed out connecting".into())
            }
            UpstreamError::BadHost(_) => ProxyError::UpstreamUnreachable(self.to_string()),
            UpstreamError::ProxyUnreachable(why) => ProxyError::EgressProxyUnreachable(why.clone()),
            UpstreamError::ProxyDenied(status) => ProxyError::EgressProxyDenied { status: *status },
            UpstreamError::Http(e) => {
                if let Some(body) = chain(e).find_map(|c| c.downcast_ref::<BodyError>()) {
                    return ProxyError::from_request_body(*body);
                }
                ProxyError::UpstreamProtocol(innermost(e))
            }
        }
    }

    /// Whether the request surely never reached the upstream (safe to try again).
    pub fn before_sending(&self) -> bool {
        !matches!(self, UpstreamError::Http(_))
    }
}

/// The error and its causes, looking inside `io::Error`s (whose `source()` skips the error
/// they wrap, which is where tokio-rustls puts TLS alerts and certificate failures).
fn chain<'a>(
    err: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    let mut next = Some(err);
    std::iter::from_fn(move || {
        let cur = next?;
        next = match cur
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn StdError + 'static)),
            None => cur.source(),
        };
        Some(cur)
    })
}

fn innermost(err: &(dyn StdError + 'static)) -> String {
    chain(err).last().map(|e| e.to_string()).unwrap_or_default()
}

fn describe_tls(err: &rustls::Error) -> String {
    match err {
        rustls::Error::InvalidCertificate(c) => {
            format!("the upstream certificate is not trusted ({c:?})")
        }
        rustls::Error::AlertReceived(a) => format!("the upstream refused the handshake ({a:?})"),
        other => other.to_string(),
    }
}
