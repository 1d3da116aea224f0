//! Reading what cargo-mutants wrote in `mutants.out/`: one file per outcome (`caught.txt`,
//! `missed.txt`, `timeout.txt`, `unviable.txt`), a mutant a line
//! (`engine/src/x.rs:12:5: replace f -> bool with true`), and the score they give; the
//! record `gauntlet mutants` keeps of a run (`mutants-run.json`), and shards merged into the
//! score of the whole engine.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use gauntlet_reports::{Section, Table};
use serde::{Deserialize, Serialize};

/// One mutant: where and what was changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mutant {
    /// Source file, relative to the workspace.
    pub file: String,
    /// Line of the change.
    pub line: u32,
    /// The mutation, as cargo-mutants words it.
    pub mutation: String,
}

impl Mutant {
    /// `engine/src/x.rs:12:5: replace f -> bool with true`; `None` for any other line.
    pub fn parse(line: &str) -> Option<Mutant> {
        let mut parts = line.splitn(4, ':');
        let file = parts.next()?.trim();
        let line_no = parts.next()?.trim().parse().ok()?;
        // The column is there in current releases; older ones wrote `file:line: mutation`.
        let third = parts.next()?;
        let mutation = match parts.next() {
            Some(rest) if third.trim().parse::<u32>().is_ok() => rest,
            Some(rest) => {
                return Some(Mutant {
                    file: file.to_owned(),
                    line: line_no,
                    mutation: format!("{}:{}", third, rest).trim().to_owned(),
                });
            }
            None => third,
        };
        (!file.is_empty()).then(|| Mutant {
            file: file.to_owned(),
            line: line_no,
            mutation: mutation.trim().to_owned(),
        })
    }
}

/// The outcomes of a run (or a shard of one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcomes {
    /// Mutants some test failed on.
    pub caught: Vec<Mutant>,
    /// Mutants every test passed with: faults the suites would not catch.
    pub missed: Vec<Mutant>,
    /// Mutants whose tests ran past the timeout (counted as caught, as cargo-mutants does:
    /// a hang is noticed).
    pub timeout: Vec<Mutant>,
    /// Mutants that did not build; not counted.
    pub unviable: Vec<Mutant>,
}

impl Outcomes {
    /// Reads the four files of `dir` (`mutants.out`); a missing file is an empty outcome,
    /// as cargo-mutants writes none for an outcome that did not occur in older releases.
    pub fn read(dir: &Path) -> std::io::Result<Outcomes> {
        let read = |name: &str| -> std::io::Result<Vec<Mutant>> {
            match std::fs::read_to_string(dir.join(name)) {
                Ok(text) => Ok(text.lines().filter_map(Mutant::parse).collect()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
                Err(e) => Err(e),
            }
        };
        Ok(Outcomes {
            caught: read("caught.txt")?,
            missed: read("missed.txt")?,
            timeout: read("timeout.txt")?,
            unviable: read("unviable.txt")?,
        })
    }

    /// Viable mutants: caught, missed and timed out.
    pub fn viable(&self) -> usize {
        self.caught.len() + self.missed.len() + self.timeout.len()
    }

    /// Caught and timed-out share of the viable mutants, in percent; `None` when none was
    /// viable (undefined, not 100 %).
    pub fn score(&self) -> Option<f64> {
        let viable = self.viable();
        (viable > 0)
            .then(|| 100.0 * (self.caught.len() + self.timeout.len()) as f64 / viable as f64)
    }
}

/// What `gauntlet mutants` writes beside `mutants.out/` as `mutants-run.json`: which tree was
/// mutated, which part of its mutants, and how many, so that shards run apart (on CI's
/// parallel jobs, or on different days) can be checked to be parts of one run and merged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RunRecord {
    /// `git rev-parse HEAD` of the mutated workspace; `None` outside a git checkout.
    pub commit: Option<String>,
    /// No tracked file differed from that commit when the run started.
    pub clean: bool,
    /// The shard, K of N (0 of 1 for a run of every mutant).
    pub shard: u32,
    /// N, the number of shards.
    pub shards: u32,
    /// cargo-mutants' `--sharding` (`slice` or `round-robin`).
    pub sharding: String,
    /// Limited to the lines of a diff (`--in-diff`): not a part of the whole engine's run.
    pub in_diff: bool,
    /// The suites of the test command.
    pub suites: String,
    /// `cargo mutants --version`.
    pub cargo_mutants: String,
    /// Mutants in the selection (cargo-mutants' `mutants.json`).
    pub selected: usize,
    /// Wall time of cargo-mutants, in seconds.
    pub wall_seconds: f64,
}

/// The file name of a [`RunRecord`] in a report directory.
pub const RUN_RECORD: &str = "mutants-run.json";

/// One report directory of `gauntlet mutants`: its record and outcomes.
#[derive(Debug, Clone)]
pub struct Part {
    /// The report directory.
    pub dir: PathBuf,
    /// Its `mutants-run.json`.
    pub record: RunRecord,
    /// Its `mutants.out/`.
    pub outcomes: Outcomes,
}

impl Part {
    /// Reads `dir/mutants-run.json` and `dir/mutants.out/`; the error names the file.
    pub fn read(dir: &Path) -> Result<Part, String> {
        let path = dir.join(RUN_RECORD);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            format!(
                "{}: {e} (a report directory of `gauntlet mutants` holds it; cargo-mutants' \
                 own output does not say which commit it mutated)",
                path.display()
            )
        })?;
        let record: RunRecord =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let out = dir.join("mutants.out");
        let outcomes = Outcomes::read(&out).map_err(|e| format!("{}: {e}", out.display()))?;
        Ok(Part {
            dir: dir.to_path_buf(),
            record,
            outcomes,
        })
    }
}

/// Shards merged: the union of their outcomes, and what is missing from the whole.
#[derive(Debug, Clone)]
pub struct Merged {
    /// Every part's outcomes together.
    pub outcomes: Outcomes,
    /// The one commit every part mutated.
    pub commit: String,
    /// N.
    pub shards: u32,
    /// `slice` or `round-robin`.
    pub sharding: String,
    /// The suites of the test command.
    pub suites: String,
    /// The cargo-mutants versions the parts ran (one, normally).
    pub cargo_mutants: Vec<String>,
    /// Shards present, in order.
    pub present: Vec<u32>,
    /// Shards of N not among the parts, in order.
    pub missing: Vec<u32>,
    /// Wall time of every part together, in seconds (one machine running them in turn).
    pub wall_total: f64,
    /// The longest part's wall time (the critical path when they run in parallel).
    pub wall_max: f64,
}

/// Merges the parts of one run. Refused, naming the directory and the field: a part without
/// a commit, or run on a tree with uncommitted changes, or limited to a diff; parts of
/// different commits, shard counts, sharding or suites; the same shard twice; a part that did
/// not test every mutant it selected (an interrupted run). Shards that are absent are not an
/// error: [`Merged::missing`] names them.
pub fn merge(parts: &[Part]) -> Result<Merged, String> {
    let first = parts.first().ok_or("--merge: no report directory given")?;
    let name = |p: &Part| p.dir.display().to_string();
    let mut by_shard: BTreeMap<u32, &Part> = BTreeMap::new();
    for p in parts {
        let r = &p.record;
        let commit = r
            .commit
            .as_deref()
            .ok_or_else(|| format!("{}: commit unknown (not run in a git checkout)", name(p)))?;
        if !r.clean {
            return Err(format!(
                "{}: run on a tree with uncommitted changes to {commit}: its mutants are not \
                 that commit's",
                name(p)
            ));
        }
        if r.in_diff {
            return Err(format!(
                "{}: limited to a diff (--in-diff): not a shard of the whole engine",
                name(p)
            ));
        }
        let f = &first.record;
        for (field, a, b) in [
            (
                "commit",
                r.commit.clone().unwrap_or_default(),
                f.commit.clone().unwrap_or_default(),
            ),
            ("shards", r.shards.to_string(), f.shards.to_string()),
            ("sharding", r.sharding.clone(), f.sharding.clone()),
            ("suites", r.suites.clone(), f.suites.clone()),
        ] {
            if a != b {
                return Err(format!(
                    "{}: {field} {a:?}, but {} has {b:?}: not parts of one run",
                    name(p),
                    name(first)
                ));
            }
        }
        let o = &p.outcomes;
        let tested = o.viable() + o.unviable.len();
        if tested != r.selected {
            return Err(format!(
                "{}: shard {}/{} tested {tested} of its {} mutants: interrupted; run it again",
                name(p),
                r.shard,
                r.shards,
                r.selected
            ));
        }
        if let Some(other) = by_shard.insert(r.shard, p) {
            return Err(format!(
                "{} and {}: both are shard {}/{}",
                name(other),
                name(p),
                r.shard,
                r.shards
            ));
        }
    }
    let mut outcomes = Outcomes::default();
    let mut cargo_mutants: Vec<String> = Vec::new();
    for p in by_shard.values() {
        outcomes.caught.extend(p.outcomes.caught.iter().cloned());
        outcomes.missed.extend(p.outcomes.missed.iter().cloned());
        outcomes.timeout.extend(p.outcomes.timeout.iter().cloned());
        outcomes
            .unviable
            .extend(p.outcomes.unviable.iter().cloned());
        if !cargo_mutants.contains(&p.record.cargo_mutants) {
            cargo_mutants.push(p.record.cargo_mutants.clone());
        }
    }
    for list in [
        &mut outcomes.caught,
        &mut outcomes.missed,
        &mut outcomes.timeout,
        &mut outcomes.unviable,
    ] {
        list.sort_by(|a, b| (&a.file, a.line, &a.mutation).cmp(&(&b.file, b.line, &b.mutation)));
    }
    let r = &first.record;
    Ok(Merged {
        outcomes,
        commit: r.commit.clone().unwrap_or_default(),
        shards: r.shards,
        sharding: r.sharding.clone(),
        suites: r.suites.clone(),
        cargo_mutants,
        present: by_shard.keys().copied().collect(),
        missing: (0..r.shards)
            .filter(|k| !by_shard.contains_key(k))
            .collect(),
        wall_total: by_shard.values().map(|p| p.record.wall_seconds).sum(),
        wall_max: by_shard
            .values()
            .map(|p| p.record.wall_seconds)
            .fold(0.0, f64::max),
    })
}

/// The report section: counts, score and every missed mutant.
pub fn section(outcomes: &Outcomes, notes: Vec<String>) -> Section {
    let mut s = Section::new("mutants", "Mutation testing", "mutants");
    s.notes = notes;
    let score = outcomes.score();
    s.tables.push(Table {
        title: "Outcomes".to_owned(),
        columns: ["caught", "missed", "timeout", "unviable", "score"]
            .map(str::to_owned)
            .to_vec(),
        rows: vec![vec![
            outcomes.caught.len().to_string(),
            outcomes.missed.len().to_string(),
            outcomes.timeout.len().to_string(),
            outcomes.unviable.len().to_string(),
            score.map_or_else(
                || "undefined (no viable mutant)".to_owned(),
                |p| format!("{p:.1} %"),
            ),
        ]],
    });
    s.tables.push(Table {
        title: "Missed mutants".to_owned(),
        columns: vec!["where".to_owned(), "mutation".to_owned()],
        rows: outcomes
            .missed
            .iter()
            .map(|m| vec![format!("{}:{}", m.file, m.line), m.mutation.clone()])
            .collect(),
    });
    s.values.insert("score".to_owned(), score);
    for (k, n) in [
        ("caught", outcomes.caught.len()),
        ("missed", outcomes.missed.len()),
        ("timeout", outcomes.timeout.len()),
        ("unviable", outcomes.unviable.len()),
    ] {
        s.values.insert(k.to_owned(), Some(n as f64));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_with_and_without_a_column_parse() {
        assert_eq!(
            Mutant::parse("engine/src/a.rs:12:5: replace f -> bool with true"),
            Some(Mutant {
                file: "engine/src/a.rs".into(),
                line: 12,
                mutation: "replace f -> bool with true".into()
            })
        );
        assert_eq!(
            Mutant::parse("engine/src/a.rs:7: replace < with <= in g")
                .unwrap()
                .mutation,
            "replace < with <= in g"
        );
        assert_eq!(
            Mutant::parse(
                "engine/src/a.rs:9:1: replace <impl Foo for Bar>::x with ::std::default()"
            )
            .unwrap()
            .mutation,
            "replace <impl Foo for Bar>::x with ::std::default()"
        );
        assert_eq!(Mutant::parse("garbage"), None);
    }

    #[test]
    fn the_score_counts_timeouts_as_caught_and_ignores_unviable() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("caught.txt"),
            "e/a.rs:1:1: one\ne/a.rs:2:1: two\ne/a.rs:3:1: three\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("missed.txt"),
            "e/b.rs:9:1: replace x with y\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("unviable.txt"),
            "e/c.rs:1:1: u\ne/c.rs:2:1: u\n",
        )
        .unwrap();
        // No timeout.txt: an outcome that did not occur.
        let o = Outcomes::read(dir.path()).unwrap();
        assert_eq!((o.viable(), o.unviable.len()), (4, 2));
        assert_eq!(o.score(), Some(75.0));
        let s = section(&o, vec![]);
        assert_eq!(s.tables[1].rows, [["e/b.rs:9", "replace x with y"]]);
        assert_eq!(Outcomes::default().score(), None);
    }

    fn part(k: u32, n: u32, caught: &[u32], missed: &[u32]) -> Part {
        let m = |line: &u32| Mutant {
            file: "engine/src/a.rs".into(),
            line: *line,
            mutation: "m".into(),
        };
        Part {
            dir: PathBuf::from(format!("shard-{k}")),
            record: RunRecord {
                commit: Some("abc".into()),
                clean: true,
                shard: k,
                shards: n,
                sharding: "round-robin".into(),
                in_diff: false,
                suites: "conformance".into(),
                cargo_mutants: "cargo-mutants 27.1.0".into(),
                selected: caught.len() + missed.len(),
                wall_seconds: 10.0 * f64::from(k + 1),
            },
            outcomes: Outcomes {
                caught: caught.iter().map(m).collect(),
                missed: missed.iter().map(m).collect(),
                ..Outcomes::default()
            },
        }
    }

    #[test]
    fn shards_of_one_run_merge_and_name_the_missing_ones() {
        let m = merge(&[part(2, 4, &[9, 1], &[5]), part(0, 4, &[3], &[])]).unwrap();
        assert_eq!(
            (m.present.as_slice(), m.missing.as_slice()),
            (&[0, 2][..], &[1, 3][..])
        );
        assert_eq!(m.outcomes.score(), Some(75.0));
        let lines: Vec<u32> = m.outcomes.caught.iter().map(|c| c.line).collect();
        assert_eq!(lines, [1, 3, 9]);
        assert_eq!((m.wall_total, m.wall_max), (40.0, 30.0));
        assert_eq!(m.commit, "abc");
    }

    #[test]
    fn parts_of_different_runs_or_unfinished_ones_are_refused() {
        let refused = |b: Part| merge(&[part(0, 2, &[1], &[]), b]).unwrap_err();
        let mut other = part(1, 2, &[2], &[]);
        other.record.commit = Some("def".into());
        assert!(refused(other).contains("commit \"def\""));
        let mut other = part(1, 2, &[2], &[]);
        other.record.sharding = "slice".into();
        assert!(refused(other).contains("sharding"));
        let mut other = part(1, 2, &[2], &[]);
        other.record.suites = "security".into();
        assert!(refused(other).contains("suites"));
        let mut other = part(1, 3, &[2], &[]);
        other.record.shard = 1;
        assert!(refused(other).contains("shards"));
        assert!(refused(part(0, 2, &[2], &[])).contains("both are shard 0/2"));
        let mut other = part(1, 2, &[2], &[]);
        other.record.selected = 5;
        assert!(refused(other).contains("tested 1 of its 5 mutants"));
        let mut other = part(1, 2, &[2], &[]);
        other.record.clean = false;
        assert!(refused(other).contains("uncommitted changes"));
        let mut other = part(1, 2, &[2], &[]);
        other.record.in_diff = true;
        assert!(refused(other).contains("--in-diff"));
        let mut other = part(1, 2, &[2], &[]);
        other.record.commit = None;
        assert!(refused(other).contains("commit unknown"));
        assert!(merge(&[]).is_err());
    }

    #[test]
    fn a_part_is_read_from_its_report_directory() {
        let dir = tempfile::tempdir().unwrap();
        let err = Part::read(dir.path()).unwrap_err();
        assert!(err.contains("mutants-run.json"), "{err}");
        let p = part(0, 1, &[4], &[7]);
        std::fs::write(
            dir.path().join(RUN_RECORD),
            serde_json::to_string(&p.record).unwrap(),
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("mutants.out")).unwrap();
        std::fs::write(
            dir.path().join("mutants.out/caught.txt"),
            "engine/src/a.rs:4:1: m\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("mutants.out/missed.txt"),
            "engine/src/a.rs:7:1: m\n",
        )
        .unwrap();
        let read = Part::read(dir.path()).unwrap();
        assert_eq!((read.record, read.outcomes), (p.record, p.outcomes));
    }
}
