//! `[server]` and `[log]`, checked: listeners, limits, timeouts.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::ConfigError;
use super::raw::RawServer;

/// `[server]`, checked.
#[derive(Debug, Clone)]
pub struct Server {
    pub listen: ListenAddr,
    pub allow_non_loopback: bool,
    /// `None` when the admin listener is `"off"`.
    pub admin: Option<SocketAddr>,
    /// `POST /quitquitquit` from a loopback peer starts a graceful exit.
    pub admin_shutdown: bool,
    pub request_timeout: Duration,
    pub header_read_timeout: Duration,
    pub body_idle_timeout: Duration,
    pub connect_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_request_body: u64,
    pub max_connections: usize,
    /// 1: a single-threaded runtime; more: a work-stealing runtime with this many workers.
    pub worker_threads: usize,
    pub shutdown_grace: Duration,
    pub unix_socket_mode: u32,
}

/// More worker threads than this is a typo, not a plan.
pub const MAX_WORKER_THREADS: usize = 256;

/// `[log]`, checked.
#[derive(Debug, Clone)]
pub struct Log {
    pub format: LogFormat,
    pub level: String,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

/// Where a listener binds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ListenAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
    /// A socket systemd passed (socket activation), by its `FileDescriptorName=`.
    Systemd(String),
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenAddr::Tcp(a) => write!(f, "{a}"),
            ListenAddr::Unix(p) => write!(f, "unix:{}", p.display()),
            ListenAddr::Systemd(name) => write!(f, "systemd:{name}"),
        }
    }
}

pub(super) fn server(raw: &RawServer) -> Result<Server, ConfigError> {
    let listen = listen_addr("server.listen", &raw.listen, raw.allow_non_loopback)?;
    let admin = match raw.admin.trim() {
        "off" | "" => None,
        a => Some(a.parse::<SocketAddr>().map_err(|_| {
            ConfigError::invalid(
                "server.admin",
                format!(
                    "`{a}` is not an address; use host:port like \"127.0.0.1:9901\" or \"off\""
                ),
            )
        })?),
    };
    if admin.is_some_and(|a| a.port() != 0) && admin.map(ListenAddr::Tcp) == Some(listen.clone()) {
        return Err(ConfigError::invalid(
            "server.admin",
            "the admin listener must not share server.listen's address",
        ));
    }
    if raw.admin_shutdown && admin.is_none() {
        return Err(ConfigError::invalid(
            "server.admin_shutdown",
            "POST /quitquitquit is served by the admin listener; set server.admin too",
        ));
    }
    let mode = u32::from_str_radix(raw.unix_socket_mode.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| {
            ConfigError::invalid(
                "server.unix_socket_mode",
                format!(
                    "`{}` is not an octal file mode like \"0660\"",
                    raw.unix_socket_mode
                ),
            )
        })?;
    let positive = |key: &str, d: Duration| {
        if d.is_zero() {
            Err(ConfigError::invalid(key, "must be greater than zero"))
        } else {
            Ok(d)
        }
    };
    let max_header_bytes = usize::try_from(raw.max_header_bytes.as_u64())
        .ok()
        .filter(|n| (8 * 1024..=16 * 1024 * 1024).contains(n))
        .ok_or_else(|| {
            ConfigError::invalid("server.max_header_bytes", "must be between 8KiB and 16MiB")
        })?;
    if raw.max_connections == 0 {
        return Err(ConfigError::invalid(
            "server.max_connections",
            "must be at least 1",
        ));
    }
    if !(1..=MAX_WORKER_THREADS).contains(&raw.worker_threads) {
        return Err(ConfigError::invalid(
            "server.worker_threads",
            format!("must be between 1 and {MAX_WORKER_THREADS}"),
        ));
    }
    Ok(Server {
        listen,
        allow_non_loopback: raw.allow_non_loopback,
        admin,
        admin_shutdown: raw.admin_shutdown,
        request_timeout: positive("server.request_timeout", raw.request_timeout)?,
        header_read_timeout: positive("server.header_read_timeout", raw.header_read_timeout)?,
        body_idle_timeout: positive("server.body_idle_timeout", raw.body_idle_timeout)?,
        connect_timeout: positive("server.connect_timeout", raw.connect_timeout)?,
        max_header_bytes,
        max_request_body: raw.max_request_body.as_u64(),
        max_connections: raw.max_connections,
        worker_threads: raw.worker_threads,
        shutdown_grace: raw.shutdown_grace,
        unix_socket_mode: mode,
    })
}

/// Parse a listen address; TCP off loopback only with `allow_non_loopback`.
pub(super) fn listen_addr(
    key: &str,
    text: &str,
    allow_non_loopback: bool,
) -> Result<ListenAddr, ConfigError> {
    if let Some(path) = text.strip_prefix("unix:") {
        if path.is_empty() || !path.starts_with('/') {
            return Err(ConfigError::invalid(
                key,
                "a Unix socket needs an absolute path, e.g. \"unix:/run/digicert-sidecar/sock\"",
            ));
        }
        return Ok(ListenAddr::Unix(PathBuf::from(path)));
    }
    if let Some(name) = text.strip_prefix("systemd:") {
        // sd_listen_fds_with_names(3): up to 255 printable ASCII characters, no ':'.
        if name.is_empty()
            || name.len() > 255
            || !name.chars().all(|c| c.is_ascii_graphic() && c != ':')
        {
            return Err(ConfigError::invalid(
                key,
                format!(
                    "`{text}`: name the socket as its .socket unit's FileDescriptorName= does, \
                     e.g. \"systemd:proxy\""
                ),
            ));
        }
        return Ok(ListenAddr::Systemd(name.to_owned()));
    }
    let addr: SocketAddr = text.parse().map_err(|_| {
        ConfigError::invalid(
            key,
            format!(
                "`{text}` is not an address; use \"127.0.0.1:8080\", \"unix:/path\" or \
                 \"systemd:NAME\""
            ),
        )
    })?;
    if !addr.ip().is_loopback() && !allow_non_loopback {
        return Err(ConfigError::invalid(
            key,
            format!(
                "{addr} is not a loopback address: any host that reaches it could use the \
                 DigiCert credential; listen on 127.0.0.1 or a Unix socket, or set \
                 server.allow_non_loopback = true if the network in front is trusted"
            ),
        ));
    }
    Ok(ListenAddr::Tcp(addr))
}
