//! Where log lines go: stderr, access lines in batches.

use std::io::Write as _;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

use super::ACCESS;

// --- where lines go -----------------------------------------------------------------------
//
// One write(2) per access line was ~4 % of the CPU per request (docs/performance.md), so
// access lines are gathered in memory and written to stderr in batches: when
// [`BATCH`] bytes have gathered, else [`FLUSH_AFTER`] after the first line of a batch (the
// trade nginx's `access_log … buffer= flush=` makes). Every other line (warnings, errors,
// reloads) writes the batch and itself at once, so lines keep their order and a problem is
// never held back. An idle sidecar wakes no thread.

/// Write the batch out once it holds this much.
const BATCH: usize = 32 * 1024;
/// Longest an access line waits in memory.
const FLUSH_AFTER: Duration = Duration::from_millis(100);

pub(super) struct Sink {
    buf: Mutex<Vec<u8>>,
    /// Signalled when the batch stops being empty.
    started: Condvar,
}

pub(super) static SINK: Sink = Sink {
    buf: Mutex::new(Vec::new()),
    started: Condvar::new(),
};

impl Sink {
    fn lock(&self) -> MutexGuard<'_, Vec<u8>> {
        self.buf.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn buffer(&self, line: &[u8]) {
        let mut buf = self.lock();
        let was_empty = buf.is_empty();
        buf.extend_from_slice(line);
        if buf.len() >= BATCH {
            write_out(&mut buf);
        } else if was_empty {
            self.started.notify_one();
        }
    }

    /// Add a line that `write` puts into the batch.
    pub(super) fn append(&self, write: impl FnOnce(&mut Vec<u8>)) {
        let mut buf = self.lock();
        let was_empty = buf.is_empty();
        write(&mut buf);
        if buf.len() >= BATCH {
            write_out(&mut buf);
        } else if was_empty {
            self.started.notify_one();
        }
    }

    fn write_now(&self, line: &[u8]) {
        let mut buf = self.lock();
        buf.extend_from_slice(line);
        write_out(&mut buf);
    }

    pub(super) fn flush(&self) {
        write_out(&mut self.lock());
    }
}

/// Write and empty the batch (under the lock, so batches never interleave). A failed write
/// drops the batch, as a failed write to stderr always did: logging never stops serving.
fn write_out(buf: &mut Vec<u8>) {
    if buf.is_empty() {
        return;
    }
    let _ = std::io::stderr().lock().write_all(buf);
    buf.clear();
    if buf.capacity() > 4 * BATCH {
        buf.shrink_to(BATCH);
    }
}

pub(super) fn start_flusher() {
    let spawned = std::thread::Builder::new()
        .name("log-flush".into())
        .stack_size(64 * 1024)
        .spawn(|| {
            loop {
                let mut buf = SINK.lock();
                while buf.is_empty() {
                    buf = SINK
                        .started
                        .wait(buf)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                drop(buf);
                std::thread::sleep(FLUSH_AFTER);
                SINK.flush();
            }
        });
    if spawned.is_err() {
        // Without the thread, batches still go out when full and at exit; say so.
        eprintln!(
            "digicert-sidecar: cannot start the log flusher; access lines are written in 32 KiB batches"
        );
    }
}

/// The subscriber's writer: access lines are batched, everything else is written at once.
pub(super) struct LogWriter;

pub(super) struct LineWriter {
    batched: bool,
}

impl std::io::Write for LineWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if self.batched {
            SINK.buffer(bytes);
        } else {
            SINK.write_now(bytes);
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> LineWriter {
        LineWriter { batched: false }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> LineWriter {
        LineWriter {
            batched: meta.target() == ACCESS,
        }
    }
}
