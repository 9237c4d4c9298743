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
// trade nginx's `access_log … buffer= flush=` makes). A full batch is handed to the
// `log-flush` thread, which writes it while the workers go on serving: the write(2) of 32 KiB
// (and a disk that throttles it) stays off the thread that answers requests. A flusher
// still writing when the next batch fills lets that one grow to [`MAX_HELD`]; past it, the
// worker writes itself (a disk slower than the traffic slows the traffic, it never costs
// memory without bound). Every other line (warnings, errors, reloads) writes what is
// gathered and itself at once, so lines keep their order and a problem is never held back.
// An idle sidecar wakes no thread.

/// Hand the batch to the flusher once it holds this much.
const BATCH: usize = 32 * 1024;
/// Most a batch grows to while the flusher is still writing the one before.
const MAX_HELD: usize = 8 * BATCH;
/// Longest an access line waits in memory.
const FLUSH_AFTER: Duration = Duration::from_millis(100);

pub(super) struct Sink {
    state: Mutex<State>,
    /// Signalled when the batch stops being empty and when a full batch is ready.
    wake: Condvar,
    /// Held while bytes go to stderr, taken with `state` held: writes happen in the order
    /// their bytes left `state`.
    out: Mutex<()>,
}

struct State {
    /// Lines gathered since the last hand-off.
    batch: Vec<u8>,
    /// A full batch for the flusher, not yet taken.
    ready: Vec<u8>,
    /// An empty buffer with capacity, swapped in for a batch handed off.
    spare: Vec<u8>,
    /// The flusher thread runs (else full batches are written where they fill).
    flusher: bool,
}

impl State {
    /// The batch gathered so far; the spare buffer takes its place.
    fn take_batch(&mut self) -> Vec<u8> {
        let spare = std::mem::take(&mut self.spare);
        std::mem::replace(&mut self.batch, spare)
    }
}

pub(super) static SINK: Sink = Sink {
    state: Mutex::new(State {
        batch: Vec::new(),
        ready: Vec::new(),
        spare: Vec::new(),
        flusher: false,
    }),
    wake: Condvar::new(),
    out: Mutex::new(()),
};

impl Sink {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_out(&self) -> MutexGuard<'_, ()> {
        self.out.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn buffer(&self, line: &[u8]) {
        self.append(|batch| batch.extend_from_slice(line));
    }

    /// Add a line that `write` puts into the batch.
    pub(super) fn append(&self, write: impl FnOnce(&mut Vec<u8>)) {
        let mut state = self.lock();
        let was_empty = state.batch.is_empty();
        write(&mut state.batch);
        let len = state.batch.len();
        if len >= BATCH && state.flusher && state.ready.is_empty() {
            state.ready = state.take_batch();
            self.wake.notify_one();
        } else if len >= MAX_HELD || (len >= BATCH && !state.flusher) {
            self.write_held(state, &[]);
        } else if was_empty {
            self.wake.notify_one();
        }
    }

    fn write_now(&self, line: &[u8]) {
        self.write_held(self.lock(), line);
    }

    pub(super) fn flush(&self) {
        self.write_held(self.lock(), &[]);
    }

    /// Write everything gathered, then `line`, in order. A failed write drops the bytes, as
    /// a failed write to stderr always did: logging never stops serving.
    fn write_held(&self, mut state: MutexGuard<'_, State>, line: &[u8]) {
        let _out = self.lock_out();
        let mut stderr = std::io::stderr().lock();
        let state = &mut *state;
        for held in [&mut state.ready, &mut state.batch] {
            if !held.is_empty() {
                let _ = stderr.write_all(held);
                held.clear();
                if held.capacity() > MAX_HELD {
                    held.shrink_to(BATCH);
                }
            }
        }
        if !line.is_empty() {
            let _ = stderr.write_all(line);
        }
    }

    /// The flusher's loop: write each full batch as it is handed over, and a batch that has
    /// waited [`FLUSH_AFTER`].
    fn flush_forever(&self) -> ! {
        loop {
            let mut state = self.lock();
            while state.ready.is_empty() && state.batch.is_empty() {
                state = self
                    .wake
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            if state.ready.is_empty() {
                state = self
                    .wake
                    .wait_timeout_while(state, FLUSH_AFTER, |s| s.ready.is_empty())
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            let mut chunk = if state.ready.is_empty() {
                state.take_batch()
            } else {
                std::mem::take(&mut state.ready)
            };
            let out = self.lock_out();
            drop(state);
            if !chunk.is_empty() {
                let _ = std::io::stderr().lock().write_all(&chunk);
            }
            drop(out);
            chunk.clear();
            if chunk.capacity() <= MAX_HELD {
                let mut state = self.lock();
                if state.spare.capacity() < chunk.capacity() {
                    state.spare = chunk;
                }
            }
        }
    }
}

pub(super) fn start_flusher() {
    let spawned = std::thread::Builder::new()
        .name("log-flush".into())
        .stack_size(64 * 1024)
        .spawn(|| SINK.flush_forever());
    match spawned {
        Ok(_) => SINK.lock().flusher = true,
        // Without the thread, batches still go out when full and at exit; say so.
        Err(_) => eprintln!(
            "digicert-sidecar: cannot start the log flusher; access lines are written in 32 KiB batches"
        ),
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
