//! DigiCert's last word on a route's credential, as the probe heard it: accepted, rejected,
//! or not asked yet. Readiness reads it; only a *rejection* makes a route unready.

use std::sync::atomic::{AtomicU8, Ordering};

/// DigiCert's last verdict on a route's credential, from the probe.
#[derive(Debug, Default)]
pub struct Verdict(AtomicU8);

// 0: no probe answer yet (the default).
const ACCEPTED: u8 = 1;
const REJECTED: u8 = 2;

impl Verdict {
    /// Whether DigiCert rejected the credential at the last probe.
    pub fn rejected(&self) -> bool {
        self.0.load(Ordering::Relaxed) == REJECTED
    }

    /// DigiCert accepted the credential.
    pub fn accept(&self) {
        self.0.store(ACCEPTED, Ordering::Relaxed);
    }

    /// DigiCert rejected the credential.
    pub fn reject(&self) {
        self.0.store(REJECTED, Ordering::Relaxed);
    }
}
