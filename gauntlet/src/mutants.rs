//! Reading what cargo-mutants wrote in `mutants.out/`: one file per outcome (`caught.txt`,
//! `missed.txt`, `timeout.txt`, `unviable.txt`), a mutant a line
//! (`engine/src/x.rs:12:5: replace f -> bool with true`), and the score they give.

use std::path::Path;

use gauntlet_reports::{Section, Table};

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
}
