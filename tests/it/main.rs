//! Integration stories: a real TLS upstream (the DigiCert mock, with a CA made per test) on
//! 127.0.0.1:0, the real sidecar in front of it, real requests.

mod admin;
mod answers;
mod callers;
mod cli;
mod credentials;
mod egress;
mod errors;
mod fleet;
mod guardrails;
mod hardening_inbound;
mod hardening_upstream;
mod hosts;
mod inbound;
mod lifecycle;
mod rotation;
mod secrets;
mod stack;
mod support;
mod threads;
mod upstream;
