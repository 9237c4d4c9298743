//! The way out: rustls client configuration ([`tls`]) and the pooled HTTPS client to
//! DigiCert ([`client`]).

pub mod client;
pub mod exchange;
pub mod tls;

pub use client::{ConnectTimeout, UpstreamClient};
