//! Start-up and shutdown: load every route's credentials, bind the listeners, serve until
//! told to stop, then drain in-flight requests for up to `shutdown_grace`.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use hyper_util::server::graceful::GracefulShutdown;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, Admin};
use crate::caller::{CallerError, CallerStore};
use crate::config::{Config, ListenAddr};
use crate::credential::watch;
use crate::credential::{CredentialError, CredentialStore};
use crate::health::{self, Health};
use crate::listener::{self, Bound, Shared};
use crate::metrics::Metrics;
use crate::rate_limit::Store;
use crate::router::{RouteHandle, Router};
use crate::stack::{self, Stack};

/// Why the sidecar could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("route {route}: {source}")]
    Credential {
        route: String,
        source: CredentialError,
    },
    #[error("{0}")]
    Store(#[from] crate::rate_limit::store::StoreError),
    #[error("{0}")]
    Caller(#[from] CallerError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: ListenAddr,
        source: std::io::Error,
    },
}

/// A sidecar with its credentials loaded and its listeners bound, not yet serving.
pub struct Sidecar {
    config: Config,
    listeners: Vec<(Bound, Stack)>,
    routes: Vec<Arc<RouteHandle>>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    callers: Arc<CallerStore>,
    admin: Option<TcpListener>,
    file_watch: watch::FileWatch,
    /// Stops the fleet store's background probe.
    stop_store: CancellationToken,
}

impl Sidecar {
    /// Load credentials and bind every listener.
    pub async fn bind(config: Config) -> Result<Self, StartError> {
        let server = Arc::new(config.server.clone());
        let file_watch = watch::FileWatch::start(&config.routes, &config.callers.token_files());
        let callers = Arc::new(CallerStore::load(&config.callers)?);
        let mut metrics = Metrics::new();
        if config.rate_limit_store.is_some() {
            metrics.register_store();
        }
        if callers.configured() {
            metrics.label_callers(callers.names());
        }
        let metrics = Arc::new(metrics);
        let stop_store = CancellationToken::new();
        let fleet = match &config.rate_limit_store {
            None => None,
            Some(c) => {
                let store = Store::new(c, metrics.clone(), stop_store.clone())?;
                store.connect().await;
                Some(store)
            }
        };
        // A request holds its slot in the store at most this long (then it counts as done).
        let lease = server.request_timeout + std::time::Duration::from_secs(5);
        let mut routes = Vec::new();
        for route in &config.routes {
            let store = CredentialStore::load(route, server.connect_timeout).map_err(|source| {
                StartError::Credential {
                    route: route.name.clone(),
                    source,
                }
            })?;
            if let Some(cert) = &store.current().client_cert
                && cert.expired_at(std::time::SystemTime::now())
            {
                tracing::error!(route = %route.name, not_after = %cert.not_after_display(), "the client certificate has expired; DigiCert will refuse it");
            }
            routes.push(Arc::new(RouteHandle::new(
                store,
                fleet.as_ref().map(|f| (f, lease)),
            )));
        }
        for r in &routes {
            metrics.register_route(r.name());
            watch::publish_expiry(&r.store, &metrics);
        }
        let admin = match server.admin {
            None => None,
            Some(addr) => {
                Some(
                    TcpListener::bind(addr)
                        .await
                        .map_err(|source| StartError::Bind {
                            addr: ListenAddr::Tcp(addr),
                            source,
                        })?,
                )
            }
        };

        let mut by_listener: BTreeMap<String, (ListenAddr, Vec<Arc<RouteHandle>>)> =
            BTreeMap::new();
        for r in &routes {
            let addr = r.config().listen.clone().unwrap_or(server.listen.clone());
            by_listener
                .entry(addr.to_string())
                .or_insert_with(|| (addr, Vec::new()))
                .1
                .push(r.clone());
        }
        let mut listeners = Vec::new();
        for (_, (addr, routes)) in by_listener {
            let bound = Bound::bind(&addr, server.unix_socket_mode)
                .await
                .map_err(|source| StartError::Bind {
                    addr: addr.clone(),
                    source,
                })?;
            let extra_hosts = match bound.local_addr() {
                // A socket systemd passed is checked here: its address was not in the file.
                ListenAddr::Tcp(a) if !a.ip().is_loopback() && !server.allow_non_loopback => {
                    return Err(StartError::Bind {
                        addr,
                        source: std::io::Error::other(format!(
                            "{a} is not a loopback address; listen on 127.0.0.1 or a Unix \
                             socket, or set server.allow_non_loopback = true"
                        )),
                    });
                }
                ListenAddr::Tcp(a) => vec![a.ip().to_string()],
                ListenAddr::Unix(_) | ListenAddr::Systemd(_) => Vec::new(),
            };
            tracing::info!(listen = %bound.local_addr(), routes = ?routes.iter().map(|r| r.name()).collect::<Vec<_>>(), "listening");
            let stack = stack::build(
                Router::new(routes),
                extra_hosts,
                &server,
                callers.clone(),
                metrics.clone(),
            );
            listeners.push((bound, stack));
        }
        if let Some(a) = &admin
            && let Ok(addr) = a.local_addr()
        {
            tracing::info!(admin = %addr, "admin listening (/healthz /readyz /metrics)");
        }
        Ok(Self {
            health: Arc::new(Health::new(routes.clone())),
            config,
            listeners,
            routes,
            callers,
            metrics,
            admin,
            file_watch,
            stop_store,
        })
    }

    /// The addresses actually bound, in a stable order.
    pub fn local_addrs(&self) -> Vec<ListenAddr> {
        self.listeners.iter().map(|(b, _)| b.local_addr()).collect()
    }

    /// The admin listener's address, unless it is off.
    pub fn admin_addr(&self) -> Option<std::net::SocketAddr> {
        self.admin.as_ref().and_then(|a| a.local_addr().ok())
    }

    /// Serve one connection, given as any byte stream, as the first listener would (for
    /// in-memory tests and fuzzing).
    pub async fn serve_io<IO>(&self, io: IO)
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let Some((_, stack)) = self.listeners.first() else {
            return;
        };
        let peer = crate::stack::Peer::Tcp(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
        let shared = Shared::new(&self.config.server);
        let strikes = std::sync::Arc::new(crate::caller::Strikes::default());
        let _ = shared.connection(io, peer, stack.clone(), strikes).await;
    }

    /// The bound TCP address serving route `name`.
    pub fn route_addr(&self, name: &str) -> Option<ListenAddr> {
        let wanted = self
            .routes
            .iter()
            .find(|r| r.name() == name)?
            .config()
            .listen
            .clone()
            .unwrap_or(self.config.server.listen.clone());
        self.listeners
            .iter()
            .map(|(b, _)| b.local_addr())
            .find(|a| match (a, &wanted) {
                (ListenAddr::Tcp(bound), ListenAddr::Tcp(w)) => {
                    bound.ip() == w.ip() && (w.port() == 0 || w.port() == bound.port())
                }
                (a, w) => a == w,
            })
    }

    /// Serve until `shutdown` completes, then stop accepting and let in-flight requests
    /// finish for up to `shutdown_grace`.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let server = &self.config.server;
        let shared = Arc::new(Shared::new(server));
        let graceful = Arc::new(GracefulShutdown::new());
        let stop_accepting = CancellationToken::new();
        let mut loops = tokio::task::JoinSet::new();
        for (bound, stack) in self.listeners {
            let g = graceful.clone();
            loops.spawn(listener::accept_loop(
                bound,
                stack,
                shared.clone(),
                move || g.watcher(),
                stop_accepting.clone(),
            ));
        }
        // Beside the listeners: admin, reloads, expiry warnings, probes. They stop after the
        // drain, so /readyz keeps answering 503 while requests finish.
        let stop_background = CancellationToken::new();
        let stores: Vec<_> = self.routes.iter().map(|r| r.store.clone()).collect();
        let mut background = tokio::task::JoinSet::new();
        // POST /quitquitquit (admin_shutdown) ends serving as SIGTERM does.
        let quit = CancellationToken::new();
        if let Some(listener) = self.admin {
            let admin = Arc::new(Admin {
                health: self.health.clone(),
                metrics: self.metrics.clone(),
                quit: server.admin_shutdown.then(|| quit.clone()),
            });
            background.spawn(admin::serve(listener, admin, stop_background.clone()));
        }
        background.spawn(watch::run(
            self.file_watch,
            stores.clone(),
            {
                let callers = self.callers.clone();
                move |cause| callers.reload_and_report(cause)
            },
            self.metrics.clone(),
            stop_background.clone(),
        ));
        background.spawn(watch::expiry_warnings(stores, stop_background.clone()));
        for r in &self.routes {
            background.spawn(health::probe_loop(
                r.clone(),
                self.metrics.clone(),
                server.request_timeout,
                stop_background.clone(),
            ));
        }

        tokio::select! {
            _ = shutdown => {}
            _ = quit.cancelled() => tracing::info!("POST /quitquitquit received"),
        }
        crate::systemd::stopping();
        self.health.start_draining();
        tracing::info!(grace = ?server.shutdown_grace, "shutting down: no new connections, finishing requests in flight");
        stop_accepting.cancel();
        while loops.join_next().await.is_some() {}
        // Every accept loop has returned, so this is the last handle.
        let Ok(graceful) = Arc::try_unwrap(graceful) else {
            tracing::warn!("connections could not be tracked; waiting out shutdown_grace");
            tokio::time::sleep(server.shutdown_grace).await;
            stop_background.cancel();
            self.stop_store.cancel();
            return;
        };
        let open = graceful.count();
        match tokio::time::timeout(server.shutdown_grace, graceful.shutdown()).await {
            Ok(()) => tracing::info!(connections = open, "all connections closed"),
            Err(_) => tracing::warn!("shutdown_grace elapsed; closing the remaining connections"),
        }
        stop_background.cancel();
        self.stop_store.cancel();
        while background.join_next().await.is_some() {}
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn termination_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing a SIGINT handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}
