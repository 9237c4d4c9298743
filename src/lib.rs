//! digicert-sidecar: a local HTTP proxy that attaches DigiCert credentials (CertCentral
//! `X-DC-DEVKEY`, DigiCert ONE `x-api-key`, client certificates for mTLS) to calls from
//! applications that must not hold them, and forwards them over HTTPS.
//!
//! The request flow, module by module: [`listener`] → [`stack`] (the tower layers, in order:
//! [`door`] → [`router`] → [`caller`] → [`policy`] → [`credential`] → [`rate_limit`] → [`upstream`]) with
//! [`error`] turning failures into responses. Beside it: [`config`], [`telemetry`], [`server`] (start and stop), [`check`]
//! and the DigiCert stand-in [`mock`] used by `demo` and the tests; for hosts without
//! Kubernetes, [`systemd`] (socket activation, sd_notify), [`exec`] and [`wait`].
#![forbid(unsafe_code)]

pub mod admin;
pub mod body;
pub mod caller;
pub mod check;
pub mod config;
pub mod conn_guard;
pub mod credential;
pub mod demo;
pub mod digicert;
pub mod door;
pub mod error;
pub mod exec;
#[doc(hidden)]
pub mod fuzzing;
pub mod hardening;
pub mod headers;
pub mod health;
pub mod listener;
pub mod metrics;
pub mod mock;
pub mod policy;
pub mod rate_limit;
pub mod router;
pub mod server;
pub mod stack;
pub mod systemd;
pub mod telemetry;
pub mod upstream;
pub mod wait;

pub use config::Config;
pub use server::{Sidecar, StartError};
