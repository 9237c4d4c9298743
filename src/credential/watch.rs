//! Reloading credentials while serving: on a change in the directory of any credential file
//! (Kubernetes swaps a `..data` symlink there; editors rename over files; `echo >` rewrites
//! in place), on SIGHUP, and when DigiCert rejects a credential. A reload that fails keeps
//! the last good credential, logs one error line and counts it. Callers' token files
//! (`[[callers]] token_file`) are watched and reloaded the same way.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use notify::event::{AccessKind, AccessMode, ModifyKind};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::store::{CredentialStore, Reloaded};
use crate::config::{EgressPath, ProxyAuth, Route, SecretSource};
use crate::metrics::Metrics;

/// Changes closer together than this are taken as one (a rewrite is truncate + write).
const SETTLE: Duration = Duration::from_millis(150);

/// Reload one route's credentials now, and report: a log line and the reload counter.
/// Returns `None` if the reload failed (the last good credential stays).
pub fn reload_route(store: &CredentialStore, metrics: &Metrics, cause: &str) -> Option<Reloaded> {
    let name = store.route().name.as_str();
    match store.reload() {
        Ok(Reloaded::Changed) => {
            metrics.reload(name, "success");
            publish_expiry(store, metrics);
            tracing::info!(
                route = name,
                cause,
                "credential reloaded; new requests use it"
            );
            Some(Reloaded::Changed)
        }
        Ok(Reloaded::Unchanged) => {
            metrics.reload(name, "unchanged");
            tracing::debug!(route = name, cause, "credential unchanged");
            Some(Reloaded::Unchanged)
        }
        Err(e) => {
            metrics.reload(name, "error");
            tracing::error!(route = name, cause, error = %e, "credential reload failed; keeping the last good credential");
            None
        }
    }
}

/// [`reload_route`] on the blocking pool: reading and decrypting a PKCS#12 file takes
/// milliseconds of CPU, which must not stall the requests sharing the runtime's thread.
pub async fn reload_route_off_thread(
    store: &Arc<CredentialStore>,
    metrics: &Arc<Metrics>,
    cause: &'static str,
) -> Option<Reloaded> {
    let (store, metrics) = (store.clone(), metrics.clone());
    tokio::task::spawn_blocking(move || reload_route(&store, &metrics, cause))
        .await
        .ok()
        .flatten()
}

/// Set the not-after gauge of a route with a client certificate.
pub fn publish_expiry(store: &CredentialStore, metrics: &Metrics) {
    if let Some(cert) = &store.current().client_cert {
        let secs = cert
            .not_after()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        metrics.cert_not_after(&store.route().name, secs);
    }
}

/// The files a route's credentials are read from.
fn files(route: &Route) -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let Some(k) = &route.api_key
        && let SecretSource::File(p) = &k.source
    {
        files.push(p.clone());
    }
    if let Some(c) = &route.client_cert {
        files.extend(c.files());
    }
    if let EgressPath::Proxy(p) = &route.egress
        && let Some(ProxyAuth::Secret(SecretSource::File(f))) = &p.auth
    {
        files.push(f.clone());
    }
    files
}

/// What a watched file belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    /// The route at this index.
    Route(usize),
    /// The callers' tokens.
    Callers,
}

/// Watches the directories of every credential file. Made before the credentials are first
/// read, so that no change after that read goes unnoticed.
pub struct FileWatch {
    _watcher: Option<RecommendedWatcher>,
    events: mpsc::UnboundedReceiver<Vec<PathBuf>>,
    /// Directory -> (file name, owner) of every credential file in it.
    by_dir: BTreeMap<PathBuf, Vec<(OsString, Owner)>>,
}

impl FileWatch {
    /// Start watching for the routes of `routes` (indices are positions in it) and the
    /// callers' `token_files`. If the watcher cannot start, credentials still reload on
    /// SIGHUP and on rejection.
    pub fn start(routes: &[Route], token_files: &[PathBuf]) -> Self {
        let mut by_dir: BTreeMap<PathBuf, Vec<(OsString, Owner)>> = BTreeMap::new();
        let owned = routes
            .iter()
            .enumerate()
            .flat_map(|(i, r)| files(r).into_iter().map(move |f| (f, Owner::Route(i))))
            .chain(token_files.iter().map(|f| (f.clone(), Owner::Callers)));
        for (f, owner) in owned {
            let dir = f
                .parent()
                .map(|p| p.to_path_buf())
                .unwrap_or_else(|| PathBuf::from("."));
            let name = f.file_name().map(OsString::from).unwrap_or_default();
            by_dir.entry(dir).or_default().push((name, owner));
        }
        let (tx, events) = mpsc::unbounded_channel::<Vec<PathBuf>>();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            // Content and names only: reading a file (ours included) yields access and
            // metadata (atime) events, which must not trigger another read.
            if let Ok(event) = event
                && matches!(
                    event.kind,
                    EventKind::Create(_)
                        | EventKind::Remove(_)
                        | EventKind::Modify(
                            ModifyKind::Data(_) | ModifyKind::Name(_) | ModifyKind::Any
                        )
                        | EventKind::Access(AccessKind::Close(AccessMode::Write))
                )
            {
                let _ = tx.send(event.paths);
            }
        });
        let watcher = match watcher {
            Ok(mut w) => {
                for dir in by_dir.keys() {
                    if let Err(e) = w.watch(dir, RecursiveMode::NonRecursive) {
                        tracing::error!(dir = %dir.display(), error = %e, "cannot watch a credential directory; changes there are picked up on SIGHUP only");
                    }
                }
                Some(w)
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot start the file watcher; credentials reload on SIGHUP only");
                None
            }
        };
        Self {
            _watcher: watcher,
            events,
            by_dir,
        }
    }

    /// The routes (indices) and callers that `changed` paths concern.
    fn affected(&self, changed: &[PathBuf]) -> Vec<Owner> {
        let mut todo = Vec::new();
        for path in changed {
            let dir = path.parent().map(|p| p.to_path_buf()).unwrap_or_default();
            let name = path.file_name().unwrap_or_default();
            // Kubernetes swaps `..data` (and writes `..<timestamp>` dirs): that changes every
            // file of the directory. Otherwise only the file itself matters.
            let whole_dir = name.as_encoded_bytes().starts_with(b"..");
            for (file, i) in self.by_dir.get(&dir).into_iter().flatten() {
                if (whole_dir || file == name) && !todo.contains(i) {
                    todo.push(*i);
                }
            }
        }
        todo
    }
}

/// Reload on file changes and on SIGHUP until `stop`. `routes` are in the order given to
/// [`FileWatch::start`]; `reload_callers` reloads the callers' tokens (`crate::caller`).
pub async fn run(
    mut watch: FileWatch,
    routes: Vec<Arc<CredentialStore>>,
    reload_callers: impl Fn(&'static str),
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::error!(error = %e, "cannot handle SIGHUP");
            None
        }
    };

    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                tracing::info!("SIGHUP: reloading every credential");
                // Under systemd (Type=notify), `systemctl reload` waits for READY=1.
                crate::systemd::reloading();
                for r in &routes {
                    reload_route_off_thread(r, &metrics, "SIGHUP").await;
                }
                reload_callers("SIGHUP");
                crate::systemd::ready();
            }
            Some(paths) = watch.events.recv() => {
                let mut changed: Vec<PathBuf> = paths;
                tokio::time::sleep(SETTLE).await;
                while let Ok(more) = watch.events.try_recv() {
                    changed.extend(more);
                }
                for owner in watch.affected(&changed) {
                    match owner {
                        Owner::Route(i) => {
                            reload_route_off_thread(&routes[i], &metrics, "file changed").await;
                        }
                        Owner::Callers => reload_callers("file changed"),
                    }
                }
            }
        }
    }
}

/// Log a warning about client certificates that expire within 30 days, once a day, until
/// `stop`. Expired certificates are reported at error level.
pub async fn expiry_warnings(routes: Vec<Arc<CredentialStore>>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(24 * 3600));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {
                for r in &routes {
                    if let Some(cert) = &r.current().client_cert {
                        warn_expiry(&r.route().name, cert, SystemTime::now());
                    }
                }
            }
        }
    }
}

/// Days left before `not_after`, or `None` once it has passed.
pub fn days_left(not_after: SystemTime, now: SystemTime) -> Option<u64> {
    not_after
        .duration_since(now)
        .ok()
        .map(|d| d.as_secs() / 86_400)
}

fn warn_expiry(route: &str, cert: &super::ClientCert, now: SystemTime) {
    match days_left(cert.not_after(), now) {
        None => tracing::error!(
            route,
            subject = cert.subject(),
            not_after = %cert.not_after_display(),
            "the client certificate has expired: DigiCert rejects it; issue a new one for the service user and replace the file"
        ),
        Some(days) if days < 30 => tracing::warn!(
            route,
            subject = cert.subject(),
            not_after = %cert.not_after_display(),
            days_left = days,
            "the client certificate expires soon: issue a new one for the service user and replace the file"
        ),
        Some(_) => {}
    }
}
