//! The way out to DigiCert: rustls client configuration ([`tls`]), dialing ([`connect`]),
//! through a corporate proxy's CONNECT tunnel when there is one ([`egress`], [`tunnel`],
//! [`wire`]), the pool of connections ([`pool`]) and what a failure means ([`error`]).

pub mod connect;
pub mod egress;
pub mod error;
pub mod pool;
pub mod tls;
pub mod tunnel;
pub mod wire;

pub use error::UpstreamError;
pub use pool::{PooledBody, UpstreamClient};
