//! rustls for the upstream: TLS 1.2+, the route's trust roots (see `credential::trust`), ALPN
//! h2 and http/1.1, and the route's client certificate (if any) for mTLS.

use std::sync::Arc;

use rustls::client::ResolvesClientCert;
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, SignatureScheme};

/// A client configuration for one route and one generation of its client certificate.
pub fn client_config(
    roots: Arc<RootCertStore>,
    cert: Option<Arc<CertifiedKey>>,
) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("the ring provider supports TLS 1.2 and 1.3")
        .with_root_certificates(roots);
    let mut config = match cert {
        Some(cert) => builder.with_client_cert_resolver(Arc::new(FixedClientCert(cert))),
        None => builder.with_no_client_auth(),
    };
    // h2 first: one multiplexed connection serves every request (see `pool.rs`).
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

/// Presents one certificate whenever the server asks. A new certificate means a new
/// `ClientConfig` (and a new pool), so connections made with the old one drain away.
#[derive(Debug)]
struct FixedClientCert(Arc<CertifiedKey>);

impl ResolvesClientCert for FixedClientCert {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}
