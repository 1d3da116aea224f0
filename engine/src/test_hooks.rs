//! Hooks for the engine's own tests: they make the timing a test depends on explicit, so it
//! passes at every optimisation level. Inert unless Rust code in the same process calls them
//! (no route, flag or config reaches them); compiled in always, because a cargo feature that
//! only the engine's tests turned on changed the engine's features between `cargo test
//! --workspace` and `cargo build -p gauntlet`, rebuilding every crate above the engine. The
//! cost on the path they sit on (the blocking pool's batches) is one uncontended lock.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Models whose blocking-pool batches are held, and for how long at most.
static HELD: Mutex<Vec<(String, Duration)>> = Mutex::new(Vec::new());

/// From now on, every batch of model `name` that runs on the blocking pool first waits
/// until its request is dropped (its deadline passed, its client left), or `most` at the
/// latest: a batch that outlasts any deadline, however fast the build.
pub fn hold_batches_of(name: &str, most: Duration) {
    let mut held = HELD
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    held.retain(|(n, _)| n != name);
    held.push((name.to_owned(), most));
}

/// The hold of [`hold_batches_of`], for the batch of `model` about to run.
pub(crate) fn hold_batch(model: &str, cancelled: &AtomicBool) {
    let most = HELD
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .find(|(n, _)| n == model)
        .map(|(_, d)| *d);
    if let Some(most) = most {
        let until = Instant::now() + most;
        while !cancelled.load(Ordering::Relaxed) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}
