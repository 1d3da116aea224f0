//! The `security` suite: attacks on a target's security controls, each a case tagged with
//! the requirement it checks (see `harness/requirements.toml`).
//!
//! - SEC-SIG: forged, expired, future-dated, replayed, body-swapped, query-added and
//!   unknown-key admin calls are refused; an unsigned model load is refused (a target that accepts one **fails**).
//! - SEC-AUTHZ: a role without the permission gets 403; reading the audit log needs a signed
//!   call by a role that may read it.
//! - SEC-ENC, SEC-KEYROT: tampered artifact bytes, header or AAD, a wrong key and a retired
//!   key are refused, and the live model is unchanged afterwards.
//! - SEC-INPUT: oversized, deeply nested, header-flood and slowloris requests are refused or
//!   cut off; a client still uploading a body the target answered early reads the answer.
//! - SEC-SECRETS: no secret the run used (raw, hex or base64) and no stack trace appears in an
//!   error body or in `/metrics`; the TLS port refuses plain HTTP and TLS below 1.2.
//! - SEC-SECRETS, SEC-SIG, SEC-ENC: key files group or others may read, or malformed ones
//!   (admin keys, read tokens, keyring), are refused at start naming the file or field, and
//!   no refusal quotes a secret (in process only: by URL the engine read its files before the
//!   run); `[security]` settings that would weaken a control (a clock-skew window of 0 or over
//!   an hour, zero or unbounded limits, a certificate without its key) are refused naming the
//!   setting (in process only too).
//! - SEC-ENC at rest: with `require-encrypted-artifacts`, a load by name from the model
//!   directory reads only the sealed regular file of that name; plain, tampered, renamed,
//!   oversized or missing files are refused (in process only, on an engine of the case's own).
//!
//! Against the in-process engine the suite attacks its secured twin ([`Target::secured`]): the
//! same build with admin keys, a keyring, a read token and TLS, all generated for the run. A
//! URL target is attacked with what the user gave (`--admin-credentials`, `--header`,
//! `--ca-file`); a case that needs something missing is skipped with the reason. Every case's
//! message says what was sent (secrets redacted) and what came back, on a pass too.
//!
//! ```
//! use std::sync::Arc;
//!
//! use gauntlet_harness::config::Settings;
//! use gauntlet_harness::{InProcess, Suite, SuiteCtx, Target};
//! use gauntlet_security::SecuritySuite;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let runtime = tokio::runtime::Runtime::new()?;
//! let models = gauntlet_fixtures::load_embedded()?;
//! let target: Arc<dyn Target> = Arc::new(InProcess::with_models(Default::default(), models)?);
//! let settings = Settings::default();
//! let planned = SecuritySuite.gates(&settings)?;
//! let planned: Vec<_> = planned.into_iter().filter(|p| p.name.starts_with("forged")).collect();
//! let ctx = SuiteCtx { target, settings, planned, progress: false };
//! let output = runtime.block_on(SecuritySuite.run(ctx))?;
//! assert_eq!(output.cases[0].outcome.label(), "pass", "{:?}", output.cases[0].message);
//! assert!(output.cases[0].message.as_deref().unwrap().contains("401"));
//! # Ok(())
//! # }
//! ```
//!
//! [`Target::secured`]: gauntlet_harness::Target::secured
#![deny(missing_docs)]

mod artifacts;
mod files;
mod input;
mod leaks;
mod model_dir;
mod probe;
mod sig;

use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::future::BoxFuture;

use gauntlet_harness::config::Settings;
use gauntlet_harness::suite::{PlannedCase, Suite, SuiteCtx, SuiteError, SuiteOutput, no_settings};
use gauntlet_reports::Outcome;

use crate::probe::{Ctx, Verdict};

/// Version of this crate, recorded in every report.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Longest one attack may take (the slowloris waits up to 30 s for the cut-off).
const ATTACK_TIMEOUT: Duration = Duration::from_secs(60);

/// One attack: its case name, requirement ids and body.
struct Attack {
    name: &'static str,
    requirements: &'static [&'static str],
    run: for<'a> fn(&'a Ctx) -> BoxFuture<'a, Verdict>,
}

macro_rules! attack {
    ($module:ident :: $name:ident, [$($req:literal),+]) => {
        Attack {
            name: stringify!($name),
            requirements: &[$($req),+],
            run: |c| Box::pin($module::$name(c)),
        }
    };
}

/// Every attack, in run order; the leak scan is last, so it reads every answer before it.
fn attacks() -> Vec<Attack> {
    vec![
        attack!(sig::signed_admin_call_is_accepted, ["SEC-SIG"]),
        attack!(sig::forged_signature_is_refused, ["SEC-SIG"]),
        attack!(sig::expired_signature_is_refused, ["SEC-SIG"]),
        attack!(sig::future_dated_signature_is_refused, ["SEC-SIG"]),
        attack!(sig::replayed_call_is_refused, ["SEC-SIG"]),
        attack!(sig::swapped_body_is_refused, ["SEC-SIG"]),
        attack!(sig::swapped_query_is_refused, ["SEC-SIG"]),
        attack!(sig::unknown_key_is_refused, ["SEC-SIG"]),
        attack!(sig::wrong_role_is_refused, ["SEC-AUTHZ"]),
        attack!(sig::audit_read_needs_a_role, ["SEC-AUTHZ"]),
        attack!(
            sig::unsigned_admin_load_is_refused,
            ["SEC-SIG", "SEC-AUTHZ"]
        ),
        attack!(artifacts::tampered_artifact_is_refused, ["SEC-ENC"]),
        attack!(
            artifacts::wrong_key_artifact_is_refused,
            ["SEC-ENC", "SEC-KEYROT"]
        ),
        attack!(artifacts::retired_key_artifact_is_refused, ["SEC-KEYROT"]),
        attack!(input::oversized_body_is_refused, ["SEC-INPUT"]),
        attack!(input::deep_json_is_refused, ["SEC-INPUT"]),
        attack!(input::header_flood_is_refused, ["SEC-INPUT"]),
        attack!(input::slowloris_is_cut_off, ["SEC-INPUT"]),
        attack!(
            input::early_answer_reaches_an_uploading_client,
            ["SEC-INPUT"]
        ),
        attack!(
            files::weak_key_files_are_refused,
            ["SEC-SECRETS", "SEC-SIG", "SEC-ENC"]
        ),
        attack!(
            files::weak_security_settings_are_refused,
            ["SEC-SIG", "SEC-INPUT"]
        ),
        attack!(
            model_dir::model_directory_serves_only_sealed_files,
            ["SEC-ENC"]
        ),
        attack!(leaks::tls_port_refuses_plain_http, ["SEC-SECRETS"]),
        attack!(leaks::tls_below_1_2_is_refused, ["SEC-SECRETS"]),
        attack!(
            leaks::no_secret_or_trace_leaks,
            ["SEC-SECRETS", "SEC-INPUT"]
        ),
    ]
}

/// The `security` suite.
#[derive(Debug, Clone, Copy, Default)]
pub struct SecuritySuite;

#[async_trait]
impl Suite for SecuritySuite {
    fn name(&self) -> &'static str {
        "security"
    }

    fn about(&self) -> &'static str {
        "signed admin calls, roles, encrypted artifacts, hostile input, leaked secrets, TLS"
    }

    fn crate_version(&self) -> (&'static str, &'static str) {
        ("gauntlet-security", VERSION)
    }

    fn gates(&self, settings: &Settings) -> Result<Vec<PlannedCase>, SuiteError> {
        no_settings(self.name(), settings)?;
        Ok(attacks()
            .iter()
            .map(|a| PlannedCase::new(a.name, a.requirements))
            .collect())
    }

    /// Runs the selected attacks one after another (several change the target's state and the
    /// leak scan reads every answer before it).
    async fn run(&self, ctx: SuiteCtx) -> Result<SuiteOutput, SuiteError> {
        let c = Ctx::new(&ctx).map_err(SuiteError::Setup)?;
        let mut cases = Vec::new();
        for attack in attacks() {
            let Some(planned) = ctx.planned.iter().find(|p| p.name == attack.name) else {
                continue;
            };
            let started = Instant::now();
            let verdict = tokio::time::timeout(ATTACK_TIMEOUT, (attack.run)(&c))
                .await
                .unwrap_or_else(|_| {
                    Verdict::error(format!("no verdict within {} s", ATTACK_TIMEOUT.as_secs()))
                });
            let (outcome, message) = verdict.into_parts(&c);
            cases.push(planned.result(self.name(), outcome, Some(message), started.elapsed()));
        }
        Ok(SuiteOutput {
            cases,
            sections: Vec::new(),
        })
    }
}

impl Verdict {
    fn into_parts(self, c: &Ctx) -> (Outcome, String) {
        (self.outcome, c.redact(&self.message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gauntlet_harness::Catalogue;

    #[test]
    fn attacks_are_distinct_and_their_requirements_known() {
        let catalogue = Catalogue::builtin().unwrap();
        let mut names: Vec<&str> = attacks().iter().map(|a| a.name).collect();
        let n = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), n);
        for a in attacks() {
            for r in a.requirements {
                assert!(catalogue.get(r).is_some(), "{}: {r}", a.name);
            }
        }
    }
}
