//! The `digicert-sidecar` command: `run` (the default), `check`, `demo`, `exec` and `wait`.
#![forbid(unsafe_code)]

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use digicert_sidecar::{check, config, demo, exec, hardening, server, systemd, telemetry, wait};

/// A local credential sidecar for the DigiCert APIs.
///
/// Applications send plain HTTP to the sidecar on loopback or a Unix socket; it attaches
/// the DigiCert credential (CertCentral X-DC-DEVKEY, DigiCert ONE x-api-key, or a client
/// certificate for the clientauth. hosts) and forwards the call over HTTPS. The secret
/// never lives in the application.
#[derive(Parser)]
#[command(name = "digicert-sidecar", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve (the default). Configuration: --config FILE, else $DIGICERT_SIDECAR_CONFIG,
    /// else one route from DIGICERT_DEVKEY[_FILE], DIGICERT_API_KEY[_FILE] or
    /// DIGICERT_CLIENT_CERT_P12 + DIGICERT_CLIENT_CERT_PASSWORD[_FILE] (zero-config).
    /// Keys of the file can be overridden with DIGICERT_SIDECAR_<SECTION>__<KEY>.
    Run {
        /// TOML configuration file.
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Validate the configuration and every credential (files, PKCS#12 passwords,
    /// certificate expiry), print a summary without secrets; exit 1 on any problem.
    Check {
        /// TOML configuration file (same lookup as `run`).
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// A self-contained first run: a mock of the DigiCert APIs and a sidecar in front of
    /// it, with curl lines to try. No DigiCert account needed.
    Demo {
        /// Address of the demo sidecar.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// The mock offers only HTTP/1.1 (ALPN), as a DigiCert host without HTTP/2 would;
        /// by default it offers HTTP/2 as well, and the sidecar multiplexes over one
        /// connection.
        #[arg(long)]
        mock_http1: bool,
    },
    /// Run a command with a sidecar beside it for as long as it runs (cron jobs, CI jobs,
    /// scripts). The sidecar starts first; CMD runs once it is ready, with
    /// DIGICERT_SIDECAR_URL=http://127.0.0.1:PORT (or DIGICERT_SIDECAR_SOCKET=PATH) in its
    /// environment and no secret. SIGTERM and SIGINT are passed on to CMD. Exits with CMD's
    /// status (128+N if signal N ended it; 127 if CMD is not found; 1, without running CMD,
    /// if the sidecar cannot start).
    Exec {
        /// TOML configuration file (same lookup as `run`).
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Also set HTTP_PROXY and http_proxy to the sidecar, for clients that honour them.
        #[arg(long)]
        proxy_env: bool,
        /// The command and its arguments, after `--`.
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<OsString>,
    },
    /// Wait until the sidecar is ready (its admin /readyz answers 200): exit 0 then, or 1
    /// with what it last saw when the timeout passes first. For entrypoints:
    /// `digicert-sidecar wait && exec app`.
    Wait {
        /// The sidecar's admin listener.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9901")]
        admin: String,
        /// How long to wait, e.g. "30s", "2m".
        #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    hardening::quiet_panics();
    let command = cli.command.unwrap_or(Command::Run { config: None });
    if matches!(command, Command::Run { .. }) {
        // Before any thread exists: this takes LISTEN_FDS out of the environment.
        systemd::take_passed_sockets();
    }
    match command {
        Command::Run { config } => run(config),
        Command::Exec {
            config,
            proxy_env,
            command,
        } => run_exec(config, exec::Exec { command, proxy_env }),
        Command::Wait { admin, timeout } => {
            match runtime(1).block_on(wait::until_ready(&admin, timeout)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(last) => {
                    eprintln!("digicert-sidecar wait: {last}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Check { config } => {
            let report = check::run(config.as_deref());
            print!("{}", report.text);
            if report.problems.is_empty() {
                println!("configuration ok");
                ExitCode::SUCCESS
            } else {
                for p in &report.problems {
                    eprintln!("error: {p}");
                }
                ExitCode::FAILURE
            }
        }
        Command::Demo { listen, mock_http1 } => {
            let _log = telemetry::init(config::LogFormat::Text, "info");
            hardening::lock_down();
            let result = runtime(1).block_on(demo::run(listen, mock_http1));
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn run(path: Option<PathBuf>) -> ExitCode {
    let config = match config::load(path.as_deref()) {
        Ok((config, _)) => config,
        Err(e) => {
            eprintln!("error: configuration: {e}");
            return ExitCode::FAILURE;
        }
    };
    let _log = telemetry::init(config.log.format, &config.log.level);
    hardening::lock_down();
    runtime(config.server.worker_threads).block_on(async move {
        match digicert_sidecar::Sidecar::bind(config).await {
            Ok(sidecar) => {
                systemd::ready();
                tokio::spawn(systemd::watchdog());
                sidecar.serve(server::termination_signal()).await;
                ExitCode::SUCCESS
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot start");
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

fn run_exec(path: Option<PathBuf>, how: exec::Exec) -> ExitCode {
    let config = match config::load(path.as_deref()) {
        Ok((config, _)) => config,
        Err(e) => {
            eprintln!("error: configuration: {e}");
            return ExitCode::from(exec::CANNOT_START);
        }
    };
    let _log = telemetry::init(config.log.format, &config.log.level);
    hardening::lock_down();
    runtime(config.server.worker_threads).block_on(async move {
        match digicert_sidecar::Sidecar::bind(config.clone()).await {
            Ok(sidecar) => ExitCode::from(exec::run(sidecar, &config, how).await),
            Err(e) => {
                tracing::error!(error = %e, "cannot start; the command is not run");
                eprintln!("error: {e}");
                ExitCode::from(exec::CANNOT_START)
            }
        }
    })
}

/// Tasks the single-threaded runtime polls, while tasks keep being ready, before it looks
/// for I/O events and timers again (a non-blocking `epoll_wait`); tokio's default is 61.
/// Under load the one worker nearly always has tasks ready, so this sets how many requests
/// it takes on between looks: 512 (some 100 requests) served 5 % more requests per second
/// for 3 % less CPU per request than 61 in alternated rounds on the bench's header route,
/// with p99 no worse (docs/performance.md, "Fifth session on issue 12"). A lone
/// connection sees no difference: with nothing else ready the worker looks at once.
const EVENT_INTERVAL: u32 = 512;

/// One worker: tokio's single-threaded runtime, where a request, its upstream connection
/// and its access line never change threads (no cross-thread wake-ups, one malloc arena).
/// More: the work-stealing runtime. See docs/performance.md for the measurements.
fn runtime(workers: usize) -> tokio::runtime::Runtime {
    let mut builder = if workers <= 1 {
        let mut b = tokio::runtime::Builder::new_current_thread();
        b.event_interval(EVENT_INTERVAL);
        b
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(workers);
        b
    };
    builder
        .enable_all()
        .build()
        .expect("the tokio runtime starts")
}
