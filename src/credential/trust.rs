//! The trust roots of a route's upstream connections: the bundled Mozilla roots (so a
//! `scratch` image needs no CA bundle), those of `SSL_CERT_FILE` and `SSL_CERT_DIR` when set
//! (where corporate base images put their TLS-inspection CA), and those of the route's
//! `ca_file`.
//!
//! `SSL_CERT_FILE`/`SSL_CERT_DIR` are read leniently, as OpenSSL does: a missing file or a
//! certificate rustls cannot use is skipped with a warning, since a base image may set them
//! for other tools. The route's `ca_file` is the operator's own word and must load whole.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use super::CredentialError;

/// Where the roots of a route came from, and how many each gave, for `check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub name: String,
    /// Roots this source added.
    pub loaded: usize,
    /// Roots it holds that were already trusted (a system bundle repeats the Mozilla roots,
    /// and `SSL_CERT_DIR` holds each file under its hash name too).
    pub already: usize,
    /// Why some or all of it was skipped, if it was.
    pub skipped: Option<String>,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} root(s)", self.name, self.loaded)?;
        if self.already > 0 {
            write!(f, " (+{} already trusted)", self.already)?;
        }
        if let Some(why) = &self.skipped {
            write!(f, " ({why})")?;
        }
        Ok(())
    }
}

/// The trust roots of a route: built-in, `SSL_CERT_FILE`/`SSL_CERT_DIR`, and `ca_file`.
pub fn roots(ca_file: Option<&Path>) -> Result<Arc<RootCertStore>, CredentialError> {
    let (roots, sources) = roots_with_sources(ca_file, &|name| std::env::var_os(name))?;
    for s in &sources {
        if let Some(why) = &s.skipped {
            tracing::warn!(source = %s.name, loaded = s.loaded, "trust roots skipped: {why}");
        }
    }
    Ok(Arc::new(roots))
}

/// [`roots`], and what each source gave; `env` reads the environment.
pub fn roots_with_sources(
    ca_file: Option<&Path>,
    env: &dyn Fn(&str) -> Option<std::ffi::OsString>,
) -> Result<(RootCertStore, Vec<Source>), CredentialError> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let mut sources = vec![Source {
        name: "built-in (Mozilla)".into(),
        loaded: roots.len(),
        already: 0,
        skipped: None,
    }];
    if let Some(file) = env("SSL_CERT_FILE").filter(|v| !v.is_empty()) {
        let path = PathBuf::from(file);
        sources.push(lenient(
            &mut roots,
            format!("SSL_CERT_FILE {}", path.display()),
            &[path],
        ));
    }
    if let Some(dirs) = env("SSL_CERT_DIR").filter(|v| !v.is_empty()) {
        // A colon-separated list, as OpenSSL reads it.
        for dir in std::env::split_paths(&dirs) {
            let name = format!("SSL_CERT_DIR {}", dir.display());
            match std::fs::read_dir(&dir) {
                Ok(entries) => {
                    let mut files: Vec<PathBuf> = entries
                        .filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|p| p.is_file())
                        .collect();
                    files.sort();
                    sources.push(lenient(&mut roots, name, &files));
                }
                Err(e) => sources.push(Source {
                    name,
                    loaded: 0,
                    already: 0,
                    skipped: Some(format!("cannot read it: {e}")),
                }),
            }
        }
    }
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
        let loaded = certs.len();
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| CredentialError::CaFile(what.clone(), e.to_string()))?;
        }
        sources.push(Source {
            name: format!("ca_file {what}"),
            loaded,
            already: 0,
            skipped: None,
        });
    }
    Ok((roots, sources))
}

/// Add every usable certificate of `files` not already trusted; say what was skipped
/// rather than fail.
fn lenient(roots: &mut RootCertStore, name: String, files: &[PathBuf]) -> Source {
    let mut known: HashSet<(Vec<u8>, Vec<u8>)> = roots
        .roots
        .iter()
        .map(|a| (a.subject.to_vec(), a.subject_public_key_info.to_vec()))
        .collect();
    let (mut loaded, mut already, mut unusable) = (0, 0, 0);
    let mut unreadable = None;
    for path in files {
        let pem = match std::fs::read(path) {
            Ok(p) => p,
            Err(e) => {
                unreadable = Some(format!("cannot read {}: {e}", path.display()));
                continue;
            }
        };
        for cert in CertificateDer::pem_slice_iter(&pem).filter_map(Result::ok) {
            let mut one = RootCertStore::empty();
            if one.add(cert).is_err() {
                unusable += 1;
                continue;
            }
            for anchor in one.roots {
                let id = (
                    anchor.subject.to_vec(),
                    anchor.subject_public_key_info.to_vec(),
                );
                if known.insert(id) {
                    roots.roots.push(anchor);
                    loaded += 1;
                } else {
                    already += 1;
                }
            }
        }
    }
    let skipped = match (unreadable, unusable) {
        (Some(why), _) => Some(why),
        (None, 0) if loaded + already == 0 => Some("no certificate in it".into()),
        (None, 0) => None,
        (None, n) => Some(format!("{n} certificate(s) rustls cannot use")),
    };
    Source {
        name,
        loaded,
        already,
        skipped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca_pem() -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.self_signed(&key).unwrap().pem()
    }

    #[test]
    fn ssl_cert_file_and_dir_are_added_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bundle.pem");
        std::fs::write(&file, format!("{}{}", ca_pem(), ca_pem())).unwrap();
        let certs = dir.path().join("certs");
        std::fs::create_dir(&certs).unwrap();
        let one = ca_pem();
        std::fs::write(certs.join("a.0"), &one).unwrap();
        std::fs::write(certs.join("a.pem"), &one).unwrap();
        std::fs::write(certs.join("README"), "not a certificate").unwrap();
        let env = |name: &str| match name {
            "SSL_CERT_FILE" => Some(file.clone().into_os_string()),
            "SSL_CERT_DIR" => {
                Some(std::env::join_paths([certs.clone(), dir.path().join("missing")]).unwrap())
            }
            _ => None,
        };
        let (roots, sources) = roots_with_sources(None, &env).unwrap();
        let builtin = webpki_roots::TLS_SERVER_ROOTS.len();
        assert_eq!(roots.len(), builtin + 3);
        assert_eq!(sources[1].loaded, 2, "{sources:?}");
        assert_eq!(sources[2].loaded, 1, "{sources:?}");
        assert_eq!(sources[2].already, 1, "{sources:?}");
        assert_eq!(sources[3].loaded, 0);
        assert!(
            sources[3].to_string().contains("cannot read"),
            "{}",
            sources[3]
        );
    }

    #[test]
    fn a_missing_ssl_cert_file_is_skipped_but_a_bad_ca_file_is_an_error() {
        let env = |name: &str| {
            (name == "SSL_CERT_FILE").then(|| std::ffi::OsString::from("/nonexistent/ca.pem"))
        };
        let (roots, sources) = roots_with_sources(None, &env).unwrap();
        assert_eq!(roots.len(), webpki_roots::TLS_SERVER_ROOTS.len());
        assert!(sources[1].skipped.is_some());
        let none = |_: &str| None;
        assert!(roots_with_sources(Some(Path::new("/nonexistent/ca.pem")), &none).is_err());
    }
}
