//! Atomic swaps: readers running through a storm of promotions and rollbacks each see one
//! complete model version, and none of their requests fails.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use gauntlet_engine::artifact::{ModelArtifact, ModelParams};
use gauntlet_engine::oip::InferRequest;
use gauntlet_fixtures::REF_LINEAR;
use gauntlet_harness::{
    Capability, Case, CaseCtx, CaseError, CaseOutcome, Target, TargetExt, case, ensure,
};

use crate::repository::{Action, renamed, stage, switch, with_scratch};
use crate::support::{
    Draws, Layout, describe, infer_request, prediction_values, present, scratch_name, typical_rows,
};

pub(super) fn cases() -> Vec<Case> {
    vec![case!(
        "property",
        readers_see_whole_versions_during_swaps,
        ["ENG-SWAP", "SLA-AVAIL"],
        [Capability::Repository, Capability::ArtifactUpload]
    )]
}

/// Concurrent readers.
const READERS: usize = 8;
/// Promotions and rollbacks while they read.
const SWAPS: usize = 60;
/// Rows per read: a torn model would show as mixed predictions within one batch.
const ROWS: usize = 4;
/// Longest wait for the readers to make progress between two swaps.
const PROGRESS_DEADLINE: Duration = Duration::from_secs(5);

/// The two versions: every weight 0, so each predicts exactly its intercept, whatever the row.
const VERSIONS: [(&str, f64); 2] = [("1", 1.0), ("2", 2.0)];

/// A linear model named `name`, version `version`, that always predicts `constant`.
fn constant_model(
    reference: &ModelArtifact,
    name: &str,
    version: &str,
    constant: f64,
) -> ModelArtifact {
    let mut artifact = renamed(reference, name, version);
    artifact.model = ModelParams::Linear {
        intercept: constant,
        weights: vec![0.0; reference.features.len()],
    };
    artifact
}

/// What one reader saw: reads per version, or the first inconsistency.
type Seen = Result<[usize; 2], String>;

/// Reads until `stop`, checking that each response is one whole version; the first problem
/// stops every reader and the writer.
async fn reader(
    target: Arc<dyn Target>,
    name: String,
    request: InferRequest,
    stop: Arc<AtomicBool>,
    reads: Arc<AtomicUsize>,
) -> Seen {
    let seen = read_until_stopped(target.as_ref(), &name, &request, &stop, &reads).await;
    if seen.is_err() {
        stop.store(true, Ordering::Relaxed);
    }
    seen
}

async fn read_until_stopped(
    target: &dyn Target,
    name: &str,
    request: &InferRequest,
    stop: &AtomicBool,
    reads: &AtomicUsize,
) -> Seen {
    let mut seen = [0usize; 2];
    while !stop.load(Ordering::Relaxed) {
        let reply = target
            .infer(name, None, request)
            .await
            .map_err(|e| format!("a read during swaps did not complete: {e}"))?;
        if reply.status != http::StatusCode::OK {
            return Err(format!(
                "a read during swaps failed: expected 200, got {}",
                describe(&reply)
            ));
        }
        let response: gauntlet_engine::oip::InferResponse = reply.json().map_err(|e| {
            format!("a read during swaps: the 200 body is not an infer response: {e}")
        })?;
        let Some(v) = VERSIONS
            .iter()
            .position(|(label, _)| *label == response.model_version)
        else {
            return Err(format!(
                "a read during swaps: `model_version` expected \"1\" or \"2\", got {:?}",
                response.model_version
            ));
        };
        let predictions = prediction_values(&response, ROWS)
            .map_err(|why| format!("a read during swaps: {why}"))?;
        let expected = VERSIONS[v].1;
        if let Some((row, got)) = predictions
            .iter()
            .enumerate()
            .find(|(_, p)| **p != expected)
        {
            return Err(format!(
                "torn read: the response says version {:?}, which predicts {expected}, but row {row} got {got} (all rows: {predictions:?})",
                response.model_version
            ));
        }
        seen[v] += 1;
        reads.fetch_add(1, Ordering::Relaxed);
        // The in-process target answers without ever returning `Pending`: without this, eight
        // readers would hold every worker thread and starve the writer.
        tokio::task::yield_now().await;
    }
    Ok(seen)
}

/// Waits until the readers have made `at_least` reads in all, or one of them has stopped.
async fn progress(
    reads: &AtomicUsize,
    at_least: usize,
    stop: &AtomicBool,
) -> Result<(), CaseError> {
    let started = Instant::now();
    while reads.load(Ordering::Relaxed) < at_least && !stop.load(Ordering::Relaxed) {
        if started.elapsed() > PROGRESS_DEADLINE {
            return Err(CaseError::Fail(format!(
                "readers made {} reads in {} ms, expected {at_least}; reads are stalled during swaps",
                reads.load(Ordering::Relaxed),
                PROGRESS_DEADLINE.as_millis()
            )));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(())
}

/// Promotes and rolls back `SWAPS` times, in an order drawn from `seed`, checking each reply.
async fn swap_storm(
    target: &dyn Target,
    name: &str,
    versions: &[ModelArtifact; 2],
    reads: &AtomicUsize,
    stop: &AtomicBool,
    seed: u64,
) -> CaseOutcome {
    let mut draws = Draws::new(seed);
    let mut live = 1usize;
    for _ in 0..SWAPS {
        progress(reads, reads.load(Ordering::Relaxed) + READERS, stop).await?;
        if stop.load(Ordering::Relaxed) {
            // A reader failed; its message is the verdict.
            return Ok(());
        }
        let next = 1 - live;
        let (to, from) = (VERSIONS[next].0, VERSIONS[live].0);
        if draws.below(4) == 0 {
            // Load the other version afresh and promote it.
            stage(target, &versions[next]).await?;
            switch(target, name, Action::Promote, to, Some(from)).await?;
        } else {
            switch(target, name, Action::Rollback, to, Some(from)).await?;
        }
        live = next;
    }
    progress(reads, reads.load(Ordering::Relaxed) + READERS, stop).await
}

/// Sets the flag when dropped: spawned readers outlive an aborted case otherwise.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

async fn readers_see_whole_versions_during_swaps(ctx: CaseCtx) -> CaseOutcome {
    let reference = ctx.template(REF_LINEAR)?;
    let name = scratch_name("prop-swap", ctx.seed);
    let target = ctx.target.as_ref();
    with_scratch(&ctx.target, &name, || async {
        let versions =
            VERSIONS.map(|(label, constant)| constant_model(reference, &name, label, constant));
        for (i, artifact) in versions.iter().enumerate() {
            stage(target, artifact).await?;
            let previous = i.checked_sub(1).map(|p| VERSIONS[p].0);
            switch(target, &name, Action::Promote, &artifact.version, previous).await?;
        }

        let rows = typical_rows(reference, ctx.seed, ROWS);
        let request = infer_request(&versions[0], &present(&rows), Layout::Matrix);
        let stop = Arc::new(AtomicBool::new(false));
        // If the case is aborted at its deadline, the readers must stop too.
        let _stop_readers = StopOnDrop(Arc::clone(&stop));
        let reads = Arc::new(AtomicUsize::new(0));
        let readers: Vec<_> = (0..READERS)
            .map(|_| {
                tokio::spawn(reader(
                    Arc::clone(&ctx.target),
                    name.clone(),
                    request.clone(),
                    Arc::clone(&stop),
                    Arc::clone(&reads),
                ))
            })
            .collect();
        let storm = swap_storm(target, &name, &versions, &reads, &stop, ctx.seed).await;
        stop.store(true, Ordering::Relaxed);
        let mut seen = [0usize; 2];
        let mut failures = Vec::new();
        for (i, handle) in readers.into_iter().enumerate() {
            match handle.await {
                Ok(Ok(counts)) => {
                    seen[0] += counts[0];
                    seen[1] += counts[1];
                }
                Ok(Err(why)) => failures.push(format!("reader {i}: {why}")),
                Err(e) => failures.push(format!("reader {i} panicked: {e}")),
            }
        }
        // A reader's inconsistency explains a failed swap reply, so it comes first.
        if let Some(first) = failures.first() {
            return Err(CaseError::Fail(format!(
                "{} of {READERS} readers saw a problem during {SWAPS} swaps; first: {first}",
                failures.len()
            )));
        }
        storm?;
        ensure!(
            seen[0] > 0 && seen[1] > 0,
            "readers should have seen both versions during {SWAPS} swaps, saw version 1 {} times and version 2 {} times",
            seen[0],
            seen[1]
        );
        Ok(())
    })
    .await
}
