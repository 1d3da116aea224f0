//! The `conformance` suite: Open Inference Protocol conformance of one target, case by case.
//!
//! Each case sends a few fixed requests (derived from the case seed where inputs vary) and
//! checks every field the protocol and the engine's contract define, saying what differed.

mod grpc;
mod infer;
mod metrics;
mod protocol;
mod repository;
mod sanitiser;
pub(crate) mod subject;
mod validation;

use gauntlet_engine::artifact::ModelArtifact;
use gauntlet_fixtures::{REF_ENSEMBLE, REF_LINEAR};
use gauntlet_harness::{Case, CaseCtx, CaseError};

/// The conformance cases, by area.
pub(crate) fn cases() -> Vec<Case> {
    [
        protocol::cases(),
        infer::cases(),
        validation::cases(),
        sanitiser::cases(),
        repository::cases(),
        metrics::cases(),
        grpc::cases(),
    ]
    .concat()
}

/// Both reference models, `ref-linear` first; a skip when the run lacks one, saying that the
/// case compares with them.
fn both_references(ctx: &CaseCtx) -> Result<[&ModelArtifact; 2], CaseError> {
    let compared = |e: CaseError| match e {
        CaseError::Skip(why) => CaseError::Skip(format!(
            "compares served predictions or metadata with the reference models: {why}"
        )),
        other => other,
    };
    Ok([
        ctx.reference(REF_LINEAR).map_err(compared)?,
        ctx.reference(REF_ENSEMBLE).map_err(compared)?,
    ])
}
