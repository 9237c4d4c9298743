//! One route's current credentials, published atomically. Requests take a snapshot
//! ([`CredentialStore::current`]); a reload builds and checks a new set first and swaps it
//! in only if it is good, so a bad file never replaces the last good credential.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::RootCertStore;

use super::{ApiKey, ClientCert, CredentialError};
use crate::config::{EgressPath, Route};
use crate::upstream::egress::Proxy;
use crate::upstream::{UpstreamClient, tls};

/// The credentials in force for a route, with the connection pool made for its client
/// certificate. A new certificate comes with a new pool, so connections authenticated with
/// the old one are dropped once the requests using them finish.
pub struct Live {
    pub api_key: Option<ApiKey>,
    pub client_cert: Option<ClientCert>,
    pub client: UpstreamClient,
    /// Counts successful loads that changed something; 0 is the first.
    pub generation: u64,
    /// The egress proxy the client dials through, with its credentials as last read.
    proxy: Option<Proxy>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live")
            .field("api_key", &self.api_key)
            .field("client_cert", &self.client_cert)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

/// What a reload did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reloaded {
    /// The sources hold what is already in force.
    Unchanged,
    /// A new key and/or certificate is in force.
    Changed,
}

/// Holds and reloads one route's credentials.
pub struct CredentialStore {
    route: Route,
    roots: Arc<RootCertStore>,
    connect_timeout: Duration,
    live: ArcSwap<Live>,
    reloading: Mutex<()>,
}

impl std::fmt::Debug for CredentialStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialStore")
            .field("route", &self.route.name)
            .field("live", &self.live.load())
            .finish()
    }
}

impl CredentialStore {
    /// Load the route's credentials for the first time; any problem is an error.
    pub fn load(route: &Route, connect_timeout: Duration) -> Result<Self, CredentialError> {
        let roots = super::trust::roots(route.ca_file.as_deref())?;
        let proxy = load_proxy(route)?;
        let (api_key, client_cert) = read(route)?;
        let client = new_client(
            route,
            &roots,
            client_cert.as_ref(),
            connect_timeout,
            proxy.clone(),
        )?;
        Ok(Self {
            route: route.clone(),
            roots,
            connect_timeout,
            live: ArcSwap::from_pointee(Live {
                api_key,
                client_cert,
                client,
                generation: 0,
                proxy,
            }),
            reloading: Mutex::new(()),
        })
    }

    /// The credentials for the next request.
    pub fn current(&self) -> Arc<Live> {
        self.live.load_full()
    }

    /// The route this store serves.
    pub fn route(&self) -> &Route {
        &self.route
    }

    /// Read the sources again. On error the last good credentials stay in force.
    pub fn reload(&self) -> Result<Reloaded, CredentialError> {
        let _one_at_a_time = self.reloading.lock().unwrap_or_else(|p| p.into_inner());
        let (api_key, client_cert) = read(&self.route)?;
        let proxy = load_proxy(&self.route)?;
        if let Some(cert) = &client_cert
            && cert.expired_at(std::time::SystemTime::now())
        {
            let file = self
                .route
                .client_cert
                .as_ref()
                .and_then(|c| c.files().into_iter().next())
                .map(|f| format!("{} ", f.display()))
                .unwrap_or_default();
            return Err(CredentialError::Certificate {
                what: format!("{file}(route {})", self.route.name),
                reason: format!(
                    "the new client certificate ({}) expired on {}",
                    cert.subject(),
                    cert.not_after_display()
                ),
            });
        }
        let old = self.live.load_full();
        let key_same = match (&old.api_key, &api_key) {
            (Some(a), Some(b)) => a.same_secret(b),
            (None, None) => true,
            _ => false,
        };
        let cert_same = match (&old.client_cert, &client_cert) {
            (Some(a), Some(b)) => a.same_as(b),
            (None, None) => true,
            _ => false,
        };
        let proxy_same = match (&old.proxy, &proxy) {
            (Some(a), Some(b)) => a.same_credentials(b),
            (None, None) => true,
            _ => false,
        };
        if key_same && cert_same && proxy_same {
            return Ok(Reloaded::Unchanged);
        }
        let client = if cert_same && proxy_same {
            old.client.clone()
        } else {
            new_client(
                &self.route,
                &self.roots,
                client_cert.as_ref(),
                self.connect_timeout,
                proxy.clone(),
            )?
        };
        self.live.store(Arc::new(Live {
            api_key,
            client_cert,
            client,
            generation: old.generation + 1,
            proxy,
        }));
        Ok(Reloaded::Changed)
    }
}

/// A connection pool to the route's upstream that presents `cert` (if any).
fn new_client(
    route: &Route,
    roots: &Arc<RootCertStore>,
    cert: Option<&ClientCert>,
    connect_timeout: Duration,
    proxy: Option<Proxy>,
) -> Result<UpstreamClient, CredentialError> {
    let tls = tls::client_config(roots.clone(), cert.map(ClientCert::certified_key));
    UpstreamClient::new(tls, &route.upstream, connect_timeout, proxy).map_err(|e| {
        CredentialError::Certificate {
            what: format!("route {}", route.name),
            reason: e.to_string(),
        }
    })
}

/// The route's egress proxy with its credentials read now, if it goes through one.
fn load_proxy(route: &Route) -> Result<Option<Proxy>, CredentialError> {
    match &route.egress {
        EgressPath::Proxy(p) => super::proxy::load(p).map(Some),
        EgressPath::Direct { .. } => Ok(None),
    }
}

fn read(route: &Route) -> Result<(Option<ApiKey>, Option<ClientCert>), CredentialError> {
    let api_key = route.api_key.as_ref().map(ApiKey::load).transpose()?;
    let client_cert = route
        .client_cert
        .as_ref()
        .map(ClientCert::load)
        .transpose()?;
    Ok((api_key, client_cert))
}
