//! The `property` suite: invariants checked on generated inputs, driven through the target.
//!
//! Each property runs proptest's [`TestRunner`] with a ChaCha stream seeded from the case seed,
//! so a run seed fixes every input; a failure is shrunk to a minimal input and reported with the
//! seed that reproduces it. proptest is synchronous, so the loop runs on a blocking thread and
//! each target call is driven with the runtime's [`Handle`].

mod oracle;
mod robust;
mod strategies;
mod swap;

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};
use tokio::runtime::Handle;

use gauntlet_engine::artifact::ModelArtifact;
use gauntlet_harness::{Case, CaseCtx, CaseError, CaseOutcome, Target};

use crate::support::excerpt;

/// `property::name`: the id of the property case `name`, for failure messages.
macro_rules! case_id {
    ($name:ident) => {
        concat!("property::", stringify!($name))
    };
}
pub(crate) use case_id;

/// The property cases.
pub(crate) fn cases() -> Vec<Case> {
    [robust::cases(), oracle::cases(), swap::cases()].concat()
}

/// Most shrink steps after a failure: each step is a request, and a few hundred find a small
/// input without letting a failing case run for minutes.
const MAX_SHRINK_ITERS: u32 = 512;
/// Most time spent shrinking after a failure, in milliseconds.
const MAX_SHRINK_MS: u32 = 15_000;
/// Longest rendering of a minimal input in a failure message.
const MAX_INPUT_CHARS: usize = 3_000;

/// The 32-byte ChaCha seed of a case seed: the seed's bytes, repeated.
fn seed_bytes_from(seed: u64) -> [u8; 32] {
    let mut bytes = [0u8; 32];
    for chunk in bytes.chunks_exact_mut(8) {
        chunk.copy_from_slice(&seed.to_le_bytes());
    }
    bytes
}

/// What a property body gets: the target and a way to wait for its answers.
pub(crate) struct Probe {
    handle: Handle,
    target: Arc<dyn Target>,
    references: Arc<Vec<ModelArtifact>>,
}

impl Probe {
    /// The target under test.
    pub(crate) fn target(&self) -> &dyn Target {
        self.target.as_ref()
    }

    /// The reference artifacts of the run.
    pub(crate) fn references(&self) -> &[ModelArtifact] {
        &self.references
    }

    /// Runs a future (a target call) to completion on the case's runtime.
    pub(crate) fn wait<F: Future>(&self, future: F) -> F::Output {
        self.handle.block_on(future)
    }
}

/// Skips a property case when the target serves none of the reference models.
pub(crate) fn require_references(ctx: &CaseCtx) -> Result<(), CaseError> {
    if ctx.reference_models.is_empty() {
        return Err(CaseError::Skip(
            "the target serves none of the reference models (serve fixtures/models to run this case)"
                .to_owned(),
        ));
    }
    Ok(())
}

/// A failed check inside a property body.
pub(crate) fn fail(message: impl Into<String>) -> TestCaseError {
    TestCaseError::fail(message.into())
}

/// Checks `property` on `ctx.property_cases` inputs drawn from `strategy()` (built on the
/// blocking thread, so it need not be `Send`), shrinking any failure.
pub(crate) async fn check<S, P>(
    ctx: &CaseCtx,
    case_id: &'static str,
    strategy: impl FnOnce() -> S + Send + 'static,
    property: P,
) -> CaseOutcome
where
    S: Strategy + 'static,
    P: Fn(&Probe, S::Value) -> Result<(), TestCaseError> + Send + 'static,
{
    require_references(ctx)?;
    let probe = Probe {
        handle: Handle::current(),
        target: Arc::clone(&ctx.target),
        references: Arc::clone(&ctx.reference_models),
    };
    let seed = ctx.seed;
    let replay = ctx.replay_command(case_id);
    let cancelled = Arc::clone(&ctx.cancelled);
    let cases = ctx.property_cases;
    let task = tokio::task::spawn_blocking(move || {
        let config = Config {
            cases,
            failure_persistence: None,
            max_shrink_iters: MAX_SHRINK_ITERS,
            max_shrink_time: MAX_SHRINK_MS,
            ..Config::default()
        };
        let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes_from(seed));
        let mut runner = TestRunner::new_with_rng(config, rng);
        let strategy = strategy();
        let verdict = runner.run(&strategy, |value| {
            // Past the deadline the runner has given up on this case; stop sending requests.
            // Failing at once also makes any shrinking instant.
            if cancelled.load(std::sync::atomic::Ordering::Relaxed) {
                return Err(fail("cancelled: the case passed its deadline"));
            }
            property(&probe, value)
        });
        match verdict {
            Ok(()) => Ok(()),
            Err(TestError::Fail(reason, minimal)) => Err(CaseError::Fail(failure_message(
                case_id, seed, &replay, &reason, &minimal,
            ))),
            Err(TestError::Abort(reason)) => Err(CaseError::Error(format!(
                "{case_id}: the property run was aborted: {reason} (case seed {seed:#018x})"
            ))),
        }
    });
    task.await
        .map_err(|e| CaseError::Error(format!("{case_id}: the property thread failed: {e}")))?
}

/// The message of a failed property: what failed, the minimal input, and how to replay it.
fn failure_message(
    case_id: &str,
    seed: u64,
    replay: &str,
    reason: &impl std::fmt::Display,
    minimal: &impl Debug,
) -> String {
    format!(
        "{reason}\nminimal failing input: {}\ncase seed {seed:#018x} of {case_id}: replay with \
         `{replay}` (the case seed derives from the run seed and the case id, so the same run \
         seed and number of cases regenerate this input)",
        excerpt_chars(&format!("{minimal:?}"), MAX_INPUT_CHARS)
    )
}

/// At most `max` characters of `text`.
fn excerpt_chars(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_owned(),
        Some((cut, _)) => format!("{}… ({} chars in all)", &text[..cut], text.chars().count()),
    }
}

/// The outcome of one request as a property sees it.
pub(crate) fn describe_reply(reply: &gauntlet_harness::Reply) -> String {
    format!("{} {:?}", reply.status, excerpt(&reply.text()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_bytes_differ_per_seed_and_fill_32_bytes() {
        assert_ne!(seed_bytes_from(1), seed_bytes_from(2));
        assert_eq!(seed_bytes_from(1)[8..16], 1u64.to_le_bytes());
    }

    #[test]
    fn failure_message_names_input_seed_and_replay() {
        let replay = gauntlet_harness::runner::replay_command(
            "--target http://127.0.0.1:1",
            0x7,
            64,
            "property::x",
        );
        let msg = failure_message("property::x", 0xab, &replay, &"status 500", &vec![1, 2]);
        assert!(msg.contains("status 500"), "{msg}");
        assert!(msg.contains("[1, 2]"), "{msg}");
        assert!(msg.contains("0x00000000000000ab"), "{msg}");
        assert!(msg.contains("property::x"), "{msg}");
        assert!(
            msg.contains(
                "replay with `gauntlet run --target http://127.0.0.1:1 --seed 0x7 \
                 --property-cases 64 --filter property::x`"
            ),
            "{msg}"
        );
    }
}
