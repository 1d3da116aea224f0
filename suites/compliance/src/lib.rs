//! The `compliance` suite: the controls a compliance officer signs off, checked against any
//! target that implements the engine's named extensions (`gauntlet_audit`, `gauntlet_trading`,
//! `gauntlet_four_eyes` in `GET /v2`), and a traceability matrix from regulatory clause to
//! requirement to case in every report.
//!
//! Cases (each skipped with the reason when its extension is not advertised):
//!
//! | case | requirements |
//! |---|---|
//! | `kill_switch_stops_every_intent` | CMP-KILL |
//! | `pretrade_controls_name_the_control` | CMP-PRETRADE |
//! | `derived_orders_round_to_the_passive_tick` | CMP-PRETRADE |
//! | `self_approval_is_refused` | CMP-4EYES |
//! | `promotion_needs_a_passing_run` | CMP-TEST, CMP-4EYES |
//! | `record_proves_inclusion_and_consistency` | CMP-AUDIT |
//! | `timestamps_are_utc_microseconds` | CMP-CLOCK |
//! | `client_ids_are_pseudonymised` | CMP-GDPR |
//! | `no_route_deletes_records` | CMP-AUDIT, CMP-RETAIN |
//! | `retention_refuses_young_prunes` | CMP-RETAIN |
//!
//! Gates, measured after the cases: `audit_log_verifies` (CMP-AUDIT: every served record
//! proves its inclusion under the signed checkpoint, see [`remote`]) and `tamper_located`
//! (CMP-AUDIT: on copies of a file-backed target's directory, `[profile.X.compliance]
//! audit-dir`, a flipped byte, a rewritten record and a forged checkpoint are each named),
//! and, on the log's key files (the in-process engine's, or `[profile.X.compliance]
//! signing-key-file` and `pseudonym-key-file`; see [`keys`]), `audit_keys_private` (CMP-AUDIT,
//! CMP-GDPR: owner-only, random, distinct, weak copies refused) and `audit_log_reopens`
//! (CMP-AUDIT: a copy reopens where the log stopped, and after a crash; CMP-RETAIN: a pruned
//! copy reopens and verifies).
//!
//! In process, cases and gates check the engine's audited twin ([`support::subject`]): the
//! same build and models with an audit log and four-eyes promotion, its log in the report
//! directory's `audit-log/` under `gauntlet run`, found by `tamper_located` without a setting.
//! The run attaches the clauses of `clauses.toml` and the final checkpoint as evidence, which
//! the reports join with every case of the run.
//!
//! ```
//! use gauntlet_harness::Suite as _;
//! let suite = gauntlet_compliance::Compliance;
//! assert_eq!(suite.name(), "compliance");
//! assert!(suite.cases().iter().all(|c| c.requirements.iter().all(|r| r.starts_with("CMP-"))));
//! let clauses = gauntlet_compliance::clauses().unwrap();
//! assert!(clauses.iter().any(|c| c.clause == "RTS 6 Art. 12"));
//! ```
#![deny(missing_docs)]

mod cases;
pub mod keys;
pub mod remote;
pub mod support;
mod tamper;

use std::path::PathBuf;
use std::time::Instant;

use async_trait::async_trait;
use http::Method;

use gauntlet_harness::config::Settings;
use gauntlet_harness::gate::{GateResult, Verdict};
use gauntlet_harness::suite::{PlannedCase, Suite, SuiteCtx, SuiteError, SuiteOutput};
use gauntlet_harness::{AuditKeyFiles, Capability, Case, case};
use gauntlet_reports::{AuditEvidence, Clause, Section, TraceabilitySpec};

pub use cases::KILL_BOUND;
pub use tamper::tamper_check;

/// Version of this crate, recorded in every report.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The clause → requirement mapping the report traces (`suites/compliance/clauses.toml`).
pub const CLAUSES: &str = include_str!("../clauses.toml");
/// The principal the suite's gates sign checkpoints as.
pub const GATE_PRINCIPAL: &str = "gauntlet-compliance";

/// The clauses of [`CLAUSES`].
///
/// # Errors
/// The TOML error when the file is malformed (a test keeps it well-formed).
pub fn clauses() -> Result<Vec<Clause>, toml::de::Error> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        clause: Vec<Clause>,
    }
    Ok(toml::from_str::<File>(CLAUSES)?.clause)
}

/// Every compliance case.
pub fn all_cases() -> Vec<Case> {
    use Capability::{ArtifactUpload, Repository};
    use cases::*;
    vec![
        case!(
            "compliance",
            kill_switch_stops_every_intent,
            ["CMP-KILL"],
            [Repository, ArtifactUpload]
        ),
        case!(
            "compliance",
            pretrade_controls_name_the_control,
            ["CMP-PRETRADE"],
            [Repository, ArtifactUpload]
        ),
        case!(
            "compliance",
            derived_orders_round_to_the_passive_tick,
            ["CMP-PRETRADE"],
            [Repository, ArtifactUpload]
        ),
        case!(
            "compliance",
            self_approval_is_refused,
            ["CMP-4EYES"],
            [Repository, ArtifactUpload]
        ),
        case!(
            "compliance",
            promotion_needs_a_passing_run,
            ["CMP-TEST", "CMP-4EYES"],
            [Repository, ArtifactUpload]
        ),
        case!(
            "compliance",
            record_proves_inclusion_and_consistency,
            ["CMP-AUDIT"],
            []
        ),
        case!(
            "compliance",
            timestamps_are_utc_microseconds,
            ["CMP-CLOCK"],
            []
        ),
        case!(
            "compliance",
            client_ids_are_pseudonymised,
            ["CMP-GDPR"],
            [Repository, ArtifactUpload]
        ),
        case!(
            "compliance",
            no_route_deletes_records,
            ["CMP-AUDIT", "CMP-RETAIN"],
            []
        ),
        case!(
            "compliance",
            retention_refuses_young_prunes,
            ["CMP-RETAIN"],
            []
        ),
    ]
}

/// `[profile.X.compliance]`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ComplianceConfig {
    /// The target's audit directory, for a file-backed target: the `tamper_located` gate
    /// tampers with copies of it. Unset: the in-process engine's own log, or, by URL, that
    /// gate is skipped.
    pub audit_dir: Option<PathBuf>,
    /// The log's public key (64 hex digits), obtained out of band; unset: the key the target
    /// names in its checkpoints.
    pub public_key: Option<String>,
    /// A file-backed target's `audit.signing-key-file`, with `pseudonym-key-file`: the key
    /// gates check them (on copies; the files are only read). Unset: the in-process engine's,
    /// or, by URL, those gates are skipped.
    pub signing_key_file: Option<PathBuf>,
    /// Its `audit.pseudonym-key-file`; set with `signing-key-file`.
    pub pseudonym_key_file: Option<PathBuf>,
}

impl ComplianceConfig {
    /// Reads and checks `[profile.X.compliance]`.
    ///
    /// # Errors
    /// [`SuiteError::Config`] naming the key.
    pub fn from_settings(settings: &Settings) -> Result<ComplianceConfig, SuiteError> {
        let c: ComplianceConfig = toml::Value::Table(settings.section("compliance"))
            .try_into()
            .map_err(|e: toml::de::Error| {
                SuiteError::Config(format!("[compliance] {}", e.message()))
            })?;
        c.key()?;
        c.key_files()?;
        Ok(c)
    }

    fn key_files(&self) -> Result<Option<AuditKeyFiles>, SuiteError> {
        match (&self.signing_key_file, &self.pseudonym_key_file) {
            (Some(signing), Some(pseudonym)) => Ok(Some(AuditKeyFiles {
                signing: signing.clone(),
                pseudonym: pseudonym.clone(),
            })),
            (None, None) => Ok(None),
            _ => Err(SuiteError::Config(
                "compliance.signing-key-file and compliance.pseudonym-key-file go together: set both or neither".to_owned(),
            )),
        }
    }

    fn key(&self) -> Result<Option<[u8; 32]>, SuiteError> {
        self.public_key
            .as_deref()
            .map(|k| {
                gauntlet_engine::audit::hex::decode32(k).map_err(|e| {
                    SuiteError::Config(format!(
                        "compliance.public-key must be 64 hex digits (an Ed25519 public key): {e}"
                    ))
                })
            })
            .transpose()
    }
}

/// The `compliance` suite. See the crate docs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Compliance;

#[async_trait]
impl Suite for Compliance {
    fn name(&self) -> &'static str {
        "compliance"
    }
    fn about(&self) -> &'static str {
        "audit log, kill switch, pre-trade controls, four eyes, retention, pseudonyms; clause traceability"
    }
    fn crate_version(&self) -> (&'static str, &'static str) {
        ("gauntlet-compliance", VERSION)
    }
    fn cases(&self) -> Vec<Case> {
        all_cases()
    }
    fn gates(&self, settings: &Settings) -> Result<Vec<PlannedCase>, SuiteError> {
        ComplianceConfig::from_settings(settings)?;
        Ok(vec![
            PlannedCase::new("audit_log_verifies", &["CMP-AUDIT"]),
            PlannedCase::new("tamper_located", &["CMP-AUDIT"]),
            PlannedCase::new("audit_keys_private", &["CMP-AUDIT", "CMP-GDPR"]),
            PlannedCase::new("audit_log_reopens", &["CMP-AUDIT", "CMP-RETAIN"]),
        ])
    }
    async fn run(&self, ctx: SuiteCtx) -> Result<SuiteOutput, SuiteError> {
        let started = Instant::now();
        let config = ComplianceConfig::from_settings(&ctx.settings)?;
        let key = config.key()?;
        let support::Subject {
            target: subject,
            dir: own_dir,
            keys: own_keys,
        } = support::subject(&ctx.target).map_err(|e| SuiteError::Setup(e.to_string()))?;
        let target = subject.as_ref();
        let audited = support::extensions(target)
            .await
            .map_err(|e| SuiteError::Setup(e.to_string()))?
            .iter()
            .any(|e| e == support::AUDIT_EXTENSION);
        let mut gates = Vec::new();
        let mut evidence = None;
        let mut note = None;
        if audited {
            // A checkpoint over everything the run wrote: the evidence, and what is verified.
            let reply = support::call(
                target,
                Method::POST,
                "/v2/audit/checkpoint",
                Some(GATE_PRINCIPAL),
                None,
            )
            .await
            .map_err(|e| SuiteError::Setup(e.to_string()))?;
            if !reply.status.is_success() {
                note = Some(format!(
                    "POST /v2/audit/checkpoint answered {}",
                    reply.status.as_u16()
                ));
            }
            let options = remote::RemoteOptions {
                public_key: key,
                since: None,
            };
            let verdict = match remote::verify_target(target, &options).await {
                Ok(r) => {
                    evidence = Some(AuditEvidence {
                        size: r.size,
                        root: r.root.clone(),
                        time: gauntlet_engine::audit::rfc3339_micros(r.time_us),
                        public_key: r.public_key.clone(),
                    });
                    if !r.key_pinned {
                        note = Some("checked with the key the target names; pin it with compliance.public-key".to_owned());
                    }
                    (
                        Verdict::Pass,
                        format!(
                            "{} records ({} pruned) prove their inclusion under the checkpoint of size {}, root {}",
                            r.proved + r.pruned,
                            r.pruned,
                            r.size,
                            r.root
                        ),
                    )
                }
                Err(remote::RemoteError::Unreachable(e)) => {
                    return Err(SuiteError::Setup(e.to_string()));
                }
                Err(e) => (Verdict::Fail, e.to_string()),
            };
            gates.push(GateResult {
                name: "audit_log_verifies".to_owned(),
                verdict: verdict.0,
                message: verdict.1,
            });
        } else {
            let reason = format!(
                "the target does not advertise the {} extension in GET /v2",
                support::AUDIT_EXTENSION
            );
            note = Some(reason.clone());
            gates.push(GateResult {
                name: "audit_log_verifies".to_owned(),
                verdict: Verdict::Skip(reason.clone()),
                message: reason,
            });
        }
        let tamper = match config.audit_dir.as_ref().or(own_dir.as_ref()) {
            None => {
                let reason = "no audit directory: set [profile.X.compliance] audit-dir to a file-backed target's audit.dir (the in-process engine's is found)".to_owned();
                GateResult {
                    name: "tamper_located".to_owned(),
                    verdict: Verdict::Skip(reason.clone()),
                    message: reason,
                }
            }
            Some(dir) => match tamper::tamper_check(dir, key) {
                Ok(message) => GateResult {
                    name: "tamper_located".to_owned(),
                    verdict: Verdict::Pass,
                    message,
                },
                Err(message) => GateResult {
                    name: "tamper_located".to_owned(),
                    verdict: Verdict::Fail,
                    message,
                },
            },
        };
        gates.push(tamper);
        let dir = config.audit_dir.as_ref().or(own_dir.as_ref());
        let files = config.key_files()?.or(own_keys);
        gates.extend(key_gates(dir.map(PathBuf::as_path), files.as_ref()).await);
        let mut output =
            SuiteOutput::from_gates(self.name(), &ctx.planned, &gates, started.elapsed());
        let mut section = Section::new(
            "compliance.traceability",
            "Compliance: traceability",
            self.name(),
        );
        section.notes.push(
            "Each clause of RTS 6, GDPR and SOX-style change control, the requirement ids that implement it (suites/compliance/clauses.toml), the cases of this run that check them and their verdicts.".to_owned(),
        );
        section.traceability = Some(TraceabilitySpec {
            clauses: clauses().map_err(|e| SuiteError::Config(format!("clauses.toml: {e}")))?,
            evidence,
            evidence_note: note,
        });
        output.sections.push(section);
        Ok(output)
    }
}

/// `audit_keys_private` and `audit_log_reopens`, each skipped with the setting it needs.
async fn key_gates(
    dir: Option<&std::path::Path>,
    files: Option<&AuditKeyFiles>,
) -> Vec<GateResult> {
    let gate = |name: &str, outcome: Result<String, String>| GateResult {
        name: name.to_owned(),
        verdict: if outcome.is_ok() {
            Verdict::Pass
        } else {
            Verdict::Fail
        },
        message: outcome.unwrap_or_else(|e| e),
    };
    let skip = |name: &str, reason: &str| GateResult {
        name: name.to_owned(),
        verdict: Verdict::Skip(reason.to_owned()),
        message: reason.to_owned(),
    };
    const NO_KEYS: &str = "no key files: set [profile.X.compliance] signing-key-file and pseudonym-key-file to a file-backed target's audit key files (the in-process engine's are found)";
    let Some(files) = files else {
        return vec![
            skip("audit_keys_private", NO_KEYS),
            skip("audit_log_reopens", NO_KEYS),
        ];
    };
    let private = gate("audit_keys_private", keys::keys_check(files).await);
    let reopens = match dir {
        Some(dir) => gate("audit_log_reopens", keys::reopen_check(dir, files).await),
        None => skip(
            "audit_log_reopens",
            "no audit directory: set [profile.X.compliance] audit-dir with the key files",
        ),
    };
    vec![private, reopens]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_clause_requirement_and_case_requirement_is_in_the_catalogue() {
        let catalogue = gauntlet_harness::Catalogue::builtin().unwrap();
        let known = |id: &str| catalogue.get(id).is_some();
        let clauses = clauses().unwrap();
        assert_eq!(
            clauses.len(),
            10,
            "RTS 6 Art. 5, 7, 10, 12, 15, 16, 28; GDPR 25, 32; SOX"
        );
        for c in &clauses {
            for r in &c.requirements {
                assert!(known(r), "{}: unknown requirement {r}", c.clause);
            }
        }
        for case in all_cases() {
            for r in case.requirements {
                assert!(known(r), "{}: unknown requirement {r}", case.id());
            }
        }
    }

    #[test]
    fn a_bad_key_or_setting_is_named() {
        let err = toml::from_str::<ComplianceConfig>("public-key = \"zz\"")
            .unwrap()
            .key()
            .unwrap_err()
            .to_string();
        assert!(err.contains("compliance.public-key"), "{err}");
        let err = toml::from_str::<ComplianceConfig>("audit-dirr = \"x\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("audit-dirr"), "{err}");
    }
}
