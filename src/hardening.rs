//! Process hardening at start: no core dumps and no ptrace/`/proc/PID/mem` by other
//! processes of the same user (both would expose key material), and a panic message that
//! cannot carry a formatted value.

/// Disable core dumps and mark the process non-dumpable. Failures are logged, not fatal.
pub fn lock_down() {
    use nix::sys::resource::{Resource, setrlimit};
    if let Err(e) = setrlimit(Resource::RLIMIT_CORE, 0, 0) {
        tracing::warn!(error = %e, "cannot disable core dumps");
    }
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        tracing::warn!(error = %e, "cannot mark the process non-dumpable");
    }
}

/// Panics print where they happened and a literal message only: a message built with
/// `format!` (which could, through a bug, hold a secret) is not printed.
pub fn quiet_panics() {
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&'static str>()
            .copied()
            .unwrap_or("(message withheld)");
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        tracing::error!(location, message, "internal error (panic)");
        eprintln!("digicert-sidecar: internal error at {location}: {message}");
    }));
}

#[cfg(test)]
mod tests {
    #[test]
    fn core_dumps_are_off_after_lock_down() {
        super::lock_down();
        let (soft, hard) =
            nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_CORE).unwrap();
        assert_eq!((soft, hard), (0, 0));
        assert!(!nix::sys::prctl::get_dumpable().unwrap());
        // Leave the test process dumpable again for the other tests' tools.
        let _ = nix::sys::prctl::set_dumpable(true);
    }
}
