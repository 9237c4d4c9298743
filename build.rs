//! Release builds of the binary on x86_64 Linux lay out first, together, the functions the
//! sidecar runs when it starts and serves (`deploy/link/order.txt`, made by
//! `deploy/link/train`). The kernel maps a binary's code in large blocks as it is first run;
//! code run and code never run interleaved would map most of the file. Ordered, the running
//! sidecar maps less than half of it (docs/performance.md, "Second session on issue 12").
//!
//! The order goes to the linker as `--symbol-ordering-file`, which rust-lld (Rust's default
//! linker for `x86_64-unknown-linux-gnu` since 1.90) understands. Names the code no longer
//! has are skipped silently; an order file gone stale costs memory, never correctness.
//! `DIGICERT_SIDECAR_LINK_ORDER=0` leaves it out (another linker, say).

use std::env;
use std::path::Path;

fn main() {
    let order = Path::new(&env::var("CARGO_MANIFEST_DIR").unwrap_or_default())
        .join("deploy")
        .join("link")
        .join("order.txt");
    println!("cargo::rerun-if-changed={}", order.display());
    println!("cargo::rerun-if-env-changed=DIGICERT_SIDECAR_LINK_ORDER");
    let wanted = env::var("DIGICERT_SIDECAR_LINK_ORDER").map_or(true, |v| v != "0");
    let release = env::var("PROFILE").is_ok_and(|p| p == "release");
    let target = env::var("TARGET").unwrap_or_default();
    if wanted && release && target == "x86_64-unknown-linux-gnu" && order.is_file() {
        for arg in [
            format!("-Wl,--symbol-ordering-file={}", order.display()),
            "-Wl,--no-warn-symbol-ordering".to_string(),
        ] {
            println!("cargo::rustc-link-arg-bin=digicert-sidecar={arg}");
        }
    }
}
