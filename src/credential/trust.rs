//! The trust roots of a route's upstream connections: the bundled Mozilla roots (so a
//! `scratch` image needs no CA bundle), plus those of the route's `ca_file`.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use super::CredentialError;

/// The trust roots of a route: the bundled Mozilla roots, plus those of `ca_file`.
pub fn roots(ca_file: Option<&Path>) -> Result<Arc<RootCertStore>, CredentialError> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = ca_file {
        let what = path.display().to_string();
        let pem = super::read_bytes(path)?;
        let certs = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| CredentialError::CaFile(what.clone(), e.to_string()))?;
        if certs.is_empty() {
            return Err(CredentialError::CaFile(
                what,
                "no CERTIFICATE in the file".into(),
            ));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| CredentialError::CaFile(what.clone(), e.to_string()))?;
        }
    }
    Ok(Arc::new(roots))
}
