//! The runner: selects cases, runs them against a target with a concurrency
//! limit and a per-case timeout, and turns each verdict into a report entry.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;

use gauntlet_reports::{CaseResult, Location, Outcome};

use crate::case::{Case, CaseCtx, CaseError, References};
pub use crate::case::{RunOptions, replay_command};
use crate::target::Target;

/// Which cases a run takes. Empty lists select everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// Suites to run (`conformance`, `property`, …); empty means all.
    pub suites: Vec<String>,
    /// Substring that the case id (`suite::name`) must contain.
    pub filter: Option<String>,
    /// Requirement ids of which a case must name at least one; empty means all.
    pub requirements: Vec<String>,
}

impl Selection {
    /// Whether `case` is selected.
    pub fn matches(&self, case: &Case) -> bool {
        self.matches_parts(case.suite, &case.id(), case.requirements)
    }

    /// Whether a case of `suite` with `id` and `requirements` is selected.
    pub fn matches_parts<R: AsRef<str>>(&self, suite: &str, id: &str, requirements: &[R]) -> bool {
        (self.suites.is_empty() || self.suites.iter().any(|s| s == suite))
            && self.filter.as_deref().is_none_or(|f| id.contains(f))
            && (self.requirements.is_empty()
                || requirements
                    .iter()
                    .any(|r| self.requirements.iter().any(|q| q == r.as_ref())))
    }

    /// The selected cases, in registry order.
    pub fn apply(&self, cases: &[Case]) -> Vec<Case> {
        cases.iter().filter(|c| self.matches(c)).copied().collect()
    }
}

/// What the runner tells its listeners as the run progresses.
#[derive(Debug)]
#[non_exhaustive]
pub enum RunEvent<'a> {
    /// The run is about to start this many cases.
    Started {
        /// Number of selected cases.
        total: usize,
    },
    /// A case reached its verdict.
    CaseFinished(&'a CaseResult),
}

/// Runs `cases` against `target` and returns one result per case, in the order given.
///
/// `on_event` sees each verdict as it arrives (for live progress lines).
pub async fn run(
    cases: &[Case],
    target: Arc<dyn Target>,
    references: &References,
    options: &RunOptions,
    mut on_event: impl FnMut(RunEvent<'_>),
) -> Vec<CaseResult> {
    on_event(RunEvent::Started { total: cases.len() });
    let mut indexed: Vec<(usize, CaseResult)> = Vec::with_capacity(cases.len());
    let mut stream = futures::stream::iter(cases.iter().copied().enumerate().map(|(i, case)| {
        let ctx = CaseCtx::for_case(&case, Arc::clone(&target), options, references);
        let timeout = options.case_timeout;
        async move { (i, run_one(case, ctx, timeout).await) }
    }))
    .buffer_unordered(options.concurrency.max(1));
    while let Some((i, result)) = stream.next().await {
        on_event(RunEvent::CaseFinished(&result));
        indexed.push((i, result));
    }
    indexed.sort_by_key(|(i, _)| *i);
    indexed.into_iter().map(|(_, r)| r).collect()
}

/// Runs one case: skipped when the target lacks a capability it needs, an
/// error when it panics or passes its deadline.
pub async fn run_one(case: Case, ctx: CaseCtx, timeout: Duration) -> CaseResult {
    let started = Instant::now();
    let verdict = match case.missing_capability(ctx.target.as_ref()) {
        Some(cap) => Err(CaseError::Skip(format!("target lacks {cap}"))),
        None => {
            let cancelled = Arc::clone(&ctx.cancelled);
            // Labelled, so a request retried on a fresh connection names its case.
            let mut task = tokio::spawn(crate::target::with_case(case.id(), (case.body)(ctx)));
            match tokio::time::timeout(timeout, &mut task).await {
                Ok(Ok(v)) => v,
                Ok(Err(join)) => Err(CaseError::Error(panic_message(join))),
                Err(_) => {
                    // A case past its deadline must not keep loading the target in the
                    // background while the next cases run.
                    cancelled.store(true, std::sync::atomic::Ordering::Relaxed);
                    task.abort();
                    Err(CaseError::Error(format!(
                        "case timed out after {} ms",
                        timeout.as_millis()
                    )))
                }
            }
        }
    };
    result_of(&case, verdict, started.elapsed())
}

/// Turns a case verdict into its report entry.
pub fn result_of(case: &Case, verdict: Result<(), CaseError>, duration: Duration) -> CaseResult {
    let (outcome, message) = match verdict {
        Ok(()) => (Outcome::Pass, None),
        Err(CaseError::Fail(m)) => (Outcome::Fail, Some(m)),
        Err(CaseError::Skip(reason)) => (Outcome::Skip { reason }, None),
        Err(CaseError::Error(m)) => (Outcome::Error, Some(m)),
    };
    CaseResult {
        id: case.id(),
        suite: case.suite.to_owned(),
        name: case.name.to_owned(),
        requirements: case.requirements.iter().map(|r| (*r).to_owned()).collect(),
        outcome,
        duration,
        message,
        location: Some(Location {
            file: case.file.to_owned(),
            line: case.line,
        }),
    }
}

fn panic_message(join: tokio::task::JoinError) -> String {
    if join.is_cancelled() {
        return "case was cancelled".to_owned();
    }
    let payload = join.into_panic();
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_owned());
    format!("case panicked: {text}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::case::CaseOutcome;
    use crate::target::Capability;
    use crate::{case, ensure};

    async fn passes(_ctx: CaseCtx) -> CaseOutcome {
        Ok(())
    }
    async fn fails(_ctx: CaseCtx) -> CaseOutcome {
        ensure!(1 + 1 == 3, "arithmetic: expected 3, got {}", 1 + 1);
        Ok(())
    }
    async fn panics(_ctx: CaseCtx) -> CaseOutcome {
        panic!("boom")
    }
    static SLEEPER_WOKE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

    async fn sleeps(_ctx: CaseCtx) -> CaseOutcome {
        tokio::time::sleep(Duration::from_millis(400)).await;
        SLEEPER_WOKE.store(true, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
    async fn needs_nothing_real(_ctx: CaseCtx) -> CaseOutcome {
        Ok(())
    }

    fn opts() -> RunOptions {
        RunOptions {
            concurrency: 3,
            case_timeout: Duration::from_millis(200),
            seed: 1,
            property_cases: 4,
            ..RunOptions::default()
        }
    }

    #[tokio::test]
    async fn verdicts_map_to_outcomes_in_order() {
        let cases = [
            case!("conformance", passes, ["ENG-OIP"], []),
            case!("conformance", fails, ["ENG-OIP"], []),
            case!("conformance", panics, ["ENG-OIP"], []),
            case!("conformance", sleeps, ["ENG-OIP"], []),
            case!(
                "unit",
                needs_nothing_real,
                ["ENG-OIP"],
                [Capability::Repository]
            ),
        ];
        let target: Arc<dyn Target> = Arc::new(crate::target::Fixed {
            status: http::StatusCode::OK,
            capabilities: Default::default(),
        });
        let mut seen = 0;
        let results = run(&cases, target, &References::default(), &opts(), |e| {
            if matches!(e, RunEvent::CaseFinished(_)) {
                seen += 1;
            }
        })
        .await;
        assert_eq!(seen, 5);
        let outcomes: Vec<_> = results.iter().map(|r| r.outcome.label()).collect();
        assert_eq!(outcomes, ["pass", "fail", "error", "error", "skip"]);
        assert!(results[1].message.as_deref().unwrap().contains("got 2"));
        assert!(results[2].message.as_deref().unwrap().contains("boom"));
        assert!(results[3].message.as_deref().unwrap().contains("timed out"));
        // The timed-out case was aborted, not left running.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!SLEEPER_WOKE.load(std::sync::atomic::Ordering::SeqCst));
        assert_eq!(results[0].location.as_ref().unwrap().file, file!());
        match &results[4].outcome {
            Outcome::Skip { reason } => assert!(reason.contains("repository"), "{reason}"),
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn selection_by_suite_filter_and_requirement() {
        let a = case!("unit", passes, ["ENG-OIP"], []);
        let b = case!("property", fails, ["ENG-VAL", "ENG-SAN"], []);
        let all = [a, b];
        let pick = |s: Selection| s.apply(&all).iter().map(Case::id).collect::<Vec<_>>();
        assert_eq!(pick(Selection::default()).len(), 2);
        let by_suite = Selection {
            suites: vec!["property".into()],
            ..Selection::default()
        };
        assert_eq!(pick(by_suite), ["property::fails"]);
        let by_filter = Selection {
            filter: Some("pass".into()),
            ..Selection::default()
        };
        assert_eq!(pick(by_filter), ["unit::passes"]);
        let by_req = Selection {
            requirements: vec!["ENG-SAN".into()],
            ..Selection::default()
        };
        assert_eq!(pick(by_req), ["property::fails"]);
    }

    #[test]
    fn case_seeds_differ_by_case_and_are_stable() {
        let a = case!("unit", passes, ["ENG-OIP"], []);
        let b = case!("unit", fails, ["ENG-OIP"], []);
        assert_ne!(a.seed(1), b.seed(1));
        assert_eq!(a.seed(1), a.seed(1));
        assert_ne!(a.seed(1), a.seed(2));
    }
}
