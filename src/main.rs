//! The `digicert-sidecar` command: `run` (the default), `check` and `demo`.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use digicert_sidecar::{check, config, demo, hardening, server, telemetry};

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
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    hardening::quiet_panics();
    match cli.command.unwrap_or(Command::Run { config: None }) {
        Command::Run { config } => run(config),
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
        Command::Demo { listen } => {
            let _log = telemetry::init(config::LogFormat::Text, "info");
            hardening::lock_down();
            let result = runtime(1).block_on(demo::run(listen));
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

/// One worker: tokio's single-threaded runtime, where a request, its upstream connection
/// and its access line never change threads (no cross-thread wake-ups, one malloc arena).
/// More: the work-stealing runtime. See docs/performance.md for the measurements.
fn runtime(workers: usize) -> tokio::runtime::Runtime {
    let mut builder = if workers <= 1 {
        tokio::runtime::Builder::new_current_thread()
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
