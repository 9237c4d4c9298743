//! The way out to DigiCert: rustls client configuration ([`tls`]), dialing ([`connect`]),
//! the pool of connections ([`pool`]) and what a failure means ([`error`]).

pub mod connect;
pub mod error;
pub mod pool;
pub mod tls;

pub use error::UpstreamError;
pub use pool::{PooledBody, UpstreamClient};
