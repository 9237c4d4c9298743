//! systemd, beside the request path: the sockets systemd passed (`listen = "systemd:NAME"`,
//! from `LISTEN_FDS` / `LISTEN_FDNAMES`) and sd_notify (`READY=1`, `RELOADING=1`,
//! `STOPPING=1`, `WATCHDOG=1`). Without `LISTEN_FDS` and `NOTIFY_SOCKET` all of it is a
//! no-op, so the same binary runs under any supervisor.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use sd_notify::NotifyState;

/// A listening socket that systemd passed.
#[derive(Debug)]
pub enum Passed {
    Tcp(std::net::TcpListener),
    Unix(std::os::unix::net::UnixListener),
}

/// What [`take_passed_sockets`] found: usable sockets by `FileDescriptorName=`, and why any
/// others could not be used.
#[derive(Debug, Default)]
struct PassedSockets {
    by_name: BTreeMap<String, Passed>,
    names_seen: Vec<String>,
}

static PASSED: OnceLock<Mutex<PassedSockets>> = OnceLock::new();

/// Take the listening sockets that systemd passed to this process (`LISTEN_FDS` with
/// `LISTEN_PID` naming this process), keyed by their `LISTEN_FDNAMES` name.
///
/// Call it once at start, before any thread exists: reading the sockets removes
/// `LISTEN_FDS` and `LISTEN_PID` from the environment, so that no child inherits them.
/// Later calls do nothing.
pub fn take_passed_sockets() {
    PASSED.get_or_init(|| Mutex::new(collect()));
}

fn collect() -> PassedSockets {
    let mut found = PassedSockets::default();
    // sd_listen_fds(3): the sockets are ours only if LISTEN_PID names this process.
    let ours = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.trim().parse::<u32>().ok())
        == Some(std::process::id());
    if !ours {
        return found;
    }
    let names: Vec<String> = std::env::var("LISTEN_FDNAMES")
        .unwrap_or_default()
        .split(':')
        .map(str::to_owned)
        .collect();
    let mut fds = listenfd::ListenFd::from_env();
    for i in 0..fds.len() {
        // systemd names an unnamed socket "unknown".
        let name = names
            .get(i)
            .filter(|n| !n.is_empty())
            .cloned()
            .unwrap_or_else(|| "unknown".to_owned());
        found.names_seen.push(name.clone());
        let socket = match fds.take_unix_listener(i) {
            Ok(Some(l)) => Passed::Unix(l),
            _ => match fds.take_tcp_listener(i) {
                Ok(Some(l)) => Passed::Tcp(l),
                // A datagram socket, a FIFO…: not something to serve HTTP on.
                _ => continue,
            },
        };
        found.by_name.entry(name).or_insert(socket);
    }
    found
}

/// The passed socket named `name`, once (a second listener cannot share it).
pub fn take_socket(name: &str) -> io::Result<Passed> {
    let mut passed = PASSED
        .get_or_init(|| Mutex::new(PassedSockets::default()))
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(socket) = passed.by_name.remove(name) {
        return Ok(socket);
    }
    let detail = if passed.names_seen.is_empty() {
        "systemd passed no sockets (LISTEN_FDS/LISTEN_PID unset: is the .socket unit enabled \
         and does the service start through it?)"
            .to_owned()
    } else if passed.names_seen.iter().any(|n| n == name) {
        format!(
            "the socket named `{name}` is not a listening TCP or Unix stream socket, or is \
             already used by another listener"
        )
    } else {
        format!(
            "systemd passed sockets named {}; set FileDescriptorName={name} in the .socket unit",
            passed.names_seen.join(", ")
        )
    };
    Err(io::Error::new(io::ErrorKind::NotFound, detail))
}

/// Send `states` to the service manager, if there is one (`NOTIFY_SOCKET`).
fn notify(states: &[NotifyState]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

/// `READY=1`: listening, with every credential loaded (and again after a reload).
pub fn ready() {
    notify(&[NotifyState::Ready]);
}

/// `RELOADING=1` with `MONOTONIC_USEC`, before a SIGHUP reload; [`ready`] follows it.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => notify(&[NotifyState::Reloading, now]),
        Err(_) => notify(&[NotifyState::Reloading]),
    }
}

/// `STOPPING=1`: a graceful shutdown has begun.
pub fn stopping() {
    notify(&[NotifyState::Stopping]);
}

/// How often to send `WATCHDOG=1`: half of `WATCHDOG_USEC` (when `WATCHDOG_PID`, if set, is
/// this process), as sd_watchdog_enabled(3) advises.
pub fn watchdog_interval() -> Option<Duration> {
    std::env::var_os("NOTIFY_SOCKET")?;
    sd_notify::watchdog_enabled()
        .filter(|d| !d.is_zero())
        .map(|d| d / 2)
}

/// Send `WATCHDOG=1` every [`watchdog_interval`] for as long as the runtime runs this task;
/// returns at once when systemd asked for no watchdog. A runtime that stops making progress
/// stops the pings, and systemd restarts the service.
pub async fn watchdog() {
    let Some(every) = watchdog_interval() else {
        return;
    };
    tracing::debug!(interval = ?every, "systemd watchdog on");
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        notify(&[NotifyState::Watchdog]);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_absent_socket_is_a_clear_error() {
        let err = super::take_socket("no-such-socket").expect_err("nothing was passed");
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
        assert!(err.to_string().contains("LISTEN_FDS"), "{err}");
    }
}
