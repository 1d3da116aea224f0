//! Reading what cargo-llvm-cov wrote: the JSON summary (`llvm-cov export -summary-only`) for
//! per-file counts, and `lcov.info` for the lines no run reached. Gauntlet reads LLVM's own
//! exports; it does not read `.profraw` files itself.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use gauntlet_reports::{Section, Table};

/// Covered and total of one kind of coverage item (lines, regions, functions, branches).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct Count {
    /// Items counted.
    pub count: u64,
    /// Items the runs reached.
    pub covered: u64,
}

impl Count {
    /// Covered share in percent; `None` when there is nothing to cover (undefined, not 0 %).
    pub fn percent(self) -> Option<f64> {
        (self.count > 0).then(|| 100.0 * self.covered as f64 / self.count as f64)
    }

    fn add(&mut self, other: Count) {
        self.count += other.count;
        self.covered += other.covered;
    }
}

/// The four counts llvm-cov reports for a file or a group of files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct Counts {
    /// Source lines with code.
    pub lines: Count,
    /// Code regions (LLVM's unit: a statement, a branch arm).
    pub regions: Count,
    /// Functions (every monomorphisation counted once).
    pub functions: Count,
    /// Branch outcomes; zero where the toolchain does not instrument branches (stable rustc).
    #[serde(default)]
    pub branches: Count,
}

impl Counts {
    fn add(&mut self, other: &Counts) {
        self.lines.add(other.lines);
        self.regions.add(other.regions);
        self.functions.add(other.functions);
        self.branches.add(other.branches);
    }
}

/// One source file's counts, its path relative to the workspace.
#[derive(Debug, Clone, PartialEq)]
pub struct FileCoverage {
    /// Path relative to the workspace root (`engine/src/server.rs`).
    pub path: String,
    /// The workspace crate the file belongs to (`gauntlet-engine`), or `other`.
    pub krate: String,
    /// Its counts.
    pub counts: Counts,
}

/// Why an export could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CoverageError {
    /// The JSON summary is not llvm-cov's export format.
    #[error("{path}: not an llvm-cov JSON export: {reason}")]
    Json {
        /// The file.
        path: String,
        /// The parser's message.
        reason: String,
    },
}

#[derive(Deserialize)]
struct Export {
    data: Vec<ExportData>,
}

#[derive(Deserialize)]
struct ExportData {
    files: Vec<ExportFile>,
}

#[derive(Deserialize)]
struct ExportFile {
    filename: String,
    summary: Counts,
}

/// The files of an llvm-cov JSON export (`--json --summary-only`), paths made relative to
/// `root` and each assigned to the crate of `crates` (crate name → its directory relative to
/// `root`) whose directory is the longest prefix of its path.
pub fn read_summary(
    text: &str,
    origin: &str,
    root: &Path,
    crates: &BTreeMap<String, String>,
) -> Result<Vec<FileCoverage>, CoverageError> {
    let export: Export = serde_json::from_str(text).map_err(|e| CoverageError::Json {
        path: origin.to_owned(),
        reason: e.to_string(),
    })?;
    let mut files = Vec::new();
    for data in export.data {
        for file in data.files {
            let path = relative(&file.filename, root);
            files.push(FileCoverage {
                krate: crate_of(&path, crates),
                path,
                counts: file.summary,
            });
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

fn relative(path: &str, root: &Path) -> String {
    Path::new(path)
        .strip_prefix(root)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|_| path.to_owned())
}

fn crate_of(path: &str, crates: &BTreeMap<String, String>) -> String {
    crates
        .iter()
        .filter(|(_, dir)| path.starts_with(&format!("{dir}/")))
        .max_by_key(|(_, dir)| dir.len())
        .map_or_else(|| "other".to_owned(), |(name, _)| name.clone())
}

/// Per crate, the sum of its files' counts.
pub fn by_crate(files: &[FileCoverage]) -> BTreeMap<String, Counts> {
    let mut out: BTreeMap<String, Counts> = BTreeMap::new();
    for f in files {
        out.entry(f.krate.clone()).or_default().add(&f.counts);
    }
    out
}

/// The lines with code that no run reached, per source file (absolute path as in the
/// lcov file), as sorted inclusive ranges.
pub fn uncovered_ranges(lcov: &str) -> BTreeMap<String, Vec<(u32, u32)>> {
    let mut out = BTreeMap::new();
    let mut file: Option<String> = None;
    let mut zero: Vec<u32> = Vec::new();
    for line in lcov.lines() {
        if let Some(name) = line.strip_prefix("SF:") {
            file = Some(name.to_owned());
            zero.clear();
        } else if let Some(rest) = line.strip_prefix("DA:") {
            let mut parts = rest.split(',');
            if let (Some(Ok(n)), Some(Ok(hits))) = (
                parts.next().map(str::parse::<u32>),
                parts.next().map(str::parse::<u64>),
            ) && hits == 0
            {
                zero.push(n);
            }
        } else if line == "end_of_record"
            && let Some(name) = file.take()
        {
            zero.sort_unstable();
            zero.dedup();
            let mut ranges: Vec<(u32, u32)> = Vec::new();
            for &n in &zero {
                match ranges.last_mut() {
                    Some((_, end)) if *end + 1 == n => *end = n,
                    _ => ranges.push((n, n)),
                }
            }
            out.insert(name, ranges);
            zero.clear();
        }
    }
    out
}

/// `12-14, 20, 31-40` (at most `max` ranges, then `… (N more)`).
pub fn format_ranges(ranges: &[(u32, u32)], max: usize) -> String {
    let mut parts: Vec<String> = ranges
        .iter()
        .take(max)
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect();
    if ranges.len() > max {
        parts.push(format!("… ({} more)", ranges.len() - max));
    }
    parts.join(", ")
}

fn pct(c: Count) -> String {
    c.percent()
        .map_or_else(|| "undefined".to_owned(), |p| format!("{p:.1} %"))
}

fn cell(c: Count) -> String {
    format!("{} ({}/{})", pct(c), c.covered, c.count)
}

/// The coverage section of a report: per crate, per file of `focus` (the engine), and the
/// `least` least-covered files of `focus` with their uncovered line ranges. `values` carries
/// `lines.<crate>` and friends at full precision; `null` where nothing was counted.
pub fn section(
    files: &[FileCoverage],
    uncovered: &BTreeMap<String, Vec<(u32, u32)>>,
    root: &Path,
    focus: &str,
    least: usize,
    notes: Vec<String>,
) -> Section {
    let mut s = Section::new("coverage", "Code coverage", "coverage");
    s.notes = notes;
    let crates = by_crate(files);
    let branches_counted = files.iter().any(|f| f.counts.branches.count > 0);
    if !branches_counted {
        s.notes.push(
            "Branch coverage is undefined: this toolchain does not instrument branches \
             (stable rustc; nightly's -Z coverage-options=branch does)."
                .to_owned(),
        );
    }
    let columns = |first: &str| {
        vec![
            first.to_owned(),
            "lines".to_owned(),
            "regions".to_owned(),
            "functions".to_owned(),
            "branches".to_owned(),
        ]
    };
    let row = |name: String, c: &Counts| {
        vec![
            name,
            cell(c.lines),
            cell(c.regions),
            cell(c.functions),
            cell(c.branches),
        ]
    };
    s.tables.push(Table {
        title: "Per crate".to_owned(),
        columns: columns("crate"),
        rows: crates.iter().map(|(k, c)| row(k.clone(), c)).collect(),
    });
    for (k, c) in &crates {
        s.values.insert(format!("lines.{k}"), c.lines.percent());
        s.values.insert(format!("regions.{k}"), c.regions.percent());
        s.values
            .insert(format!("functions.{k}"), c.functions.percent());
        s.values
            .insert(format!("branches.{k}"), c.branches.percent());
    }
    let focused: Vec<&FileCoverage> = files.iter().filter(|f| f.krate == focus).collect();
    s.tables.push(Table {
        title: format!("Per file of {focus}"),
        columns: columns("file"),
        rows: focused
            .iter()
            .map(|f| row(f.path.clone(), &f.counts))
            .collect(),
    });
    let mut worst: Vec<&&FileCoverage> = focused
        .iter()
        .filter(|f| f.counts.lines.count > 0)
        .collect();
    worst.sort_by(|a, b| {
        let pa = a.counts.lines.percent().unwrap_or(100.0);
        let pb = b.counts.lines.percent().unwrap_or(100.0);
        pa.total_cmp(&pb).then(
            (b.counts.lines.count - b.counts.lines.covered)
                .cmp(&(a.counts.lines.count - a.counts.lines.covered)),
        )
    });
    s.tables.push(Table {
        title: format!("Least-covered files of {focus}"),
        columns: vec![
            "file".to_owned(),
            "lines".to_owned(),
            "uncovered lines".to_owned(),
        ],
        rows: worst
            .iter()
            .take(least)
            .map(|f| {
                let abs = root.join(&f.path).to_string_lossy().into_owned();
                let ranges = uncovered
                    .get(&abs)
                    .or_else(|| uncovered.get(&f.path))
                    .map(|r| format_ranges(r, 12))
                    .unwrap_or_default();
                vec![f.path.clone(), cell(f.counts.lines), ranges]
            })
            .collect(),
    });
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXPORT: &str = r#"{"type":"llvm.coverage.json.export","version":"2.0.1","data":[{"files":[
      {"filename":"/ws/engine/src/a.rs","summary":{"lines":{"count":10,"covered":9,"percent":90},"regions":{"count":4,"covered":2,"notcovered":2,"percent":50},"functions":{"count":2,"covered":2,"percent":100},"instantiations":{"count":2,"covered":2,"percent":100},"branches":{"count":0,"covered":0,"notcovered":0,"percent":0}}},
      {"filename":"/ws/engine/src/audit/log.rs","summary":{"lines":{"count":20,"covered":0,"percent":0},"regions":{"count":5,"covered":0,"notcovered":5,"percent":0},"functions":{"count":3,"covered":0,"percent":0},"instantiations":{"count":3,"covered":0,"percent":0}}},
      {"filename":"/ws/suites/load/src/x.rs","summary":{"lines":{"count":4,"covered":4,"percent":100},"regions":{"count":1,"covered":1,"notcovered":0,"percent":100},"functions":{"count":1,"covered":1,"percent":100},"instantiations":{"count":1,"covered":1,"percent":100}}},
      {"filename":"/elsewhere/lib.rs","summary":{"lines":{"count":0,"covered":0,"percent":0},"regions":{"count":0,"covered":0,"notcovered":0,"percent":0},"functions":{"count":0,"covered":0,"percent":0},"instantiations":{"count":0,"covered":0,"percent":0}}}
    ],"totals":{}}]}"#;

    fn crates() -> BTreeMap<String, String> {
        [
            ("gauntlet-engine", "engine"),
            ("gauntlet-load", "suites/load"),
            ("gauntlet-suites", "suites"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .collect()
    }

    #[test]
    fn files_are_grouped_by_the_longest_crate_directory() {
        let files = read_summary(EXPORT, "x.json", Path::new("/ws"), &crates()).unwrap();
        let krates: Vec<(&str, &str)> = files
            .iter()
            .map(|f| (f.path.as_str(), f.krate.as_str()))
            .collect();
        assert_eq!(
            krates,
            [
                ("/elsewhere/lib.rs", "other"),
                ("engine/src/a.rs", "gauntlet-engine"),
                ("engine/src/audit/log.rs", "gauntlet-engine"),
                ("suites/load/src/x.rs", "gauntlet-load"),
            ]
        );
        let sums = by_crate(&files);
        let engine = sums["gauntlet-engine"];
        assert_eq!((engine.lines.covered, engine.lines.count), (9, 30));
        assert_eq!(engine.lines.percent(), Some(30.0));
        assert_eq!(
            engine.branches.percent(),
            None,
            "no branch counted is undefined"
        );
        assert_eq!(sums["other"].lines.percent(), None);
    }

    #[test]
    fn uncovered_lines_become_ranges() {
        let lcov = "SF:/ws/engine/src/a.rs\nDA:1,3\nDA:2,0\nDA:3,0\nDA:5,0\nDA:7,1\nDA:8,0\n\
                    end_of_record\nSF:/ws/b.rs\nDA:1,1\nend_of_record\n";
        let r = uncovered_ranges(lcov);
        assert_eq!(r["/ws/engine/src/a.rs"], [(2, 3), (5, 5), (8, 8)]);
        assert!(r["/ws/b.rs"].is_empty());
        assert_eq!(
            format_ranges(&r["/ws/engine/src/a.rs"], 2),
            "2-3, 5, … (1 more)"
        );
    }

    #[test]
    fn the_section_puts_the_least_covered_file_first_with_its_lines() {
        let files = read_summary(EXPORT, "x.json", Path::new("/ws"), &crates()).unwrap();
        let lcov = "SF:/ws/engine/src/audit/log.rs\nDA:4,0\nDA:5,0\nend_of_record\n";
        let s = section(
            &files,
            &uncovered_ranges(lcov),
            Path::new("/ws"),
            "gauntlet-engine",
            5,
            vec![],
        );
        let least = &s.tables[2];
        assert_eq!(least.rows[0][0], "engine/src/audit/log.rs");
        assert_eq!(least.rows[0][1], "0.0 % (0/20)");
        assert_eq!(least.rows[0][2], "4-5");
        assert_eq!(s.values["lines.gauntlet-engine"], Some(30.0));
        assert_eq!(s.values["branches.gauntlet-engine"], None);
        assert!(
            s.notes
                .iter()
                .any(|n| n.contains("Branch coverage is undefined"))
        );
    }

    #[test]
    fn a_file_that_is_not_an_export_is_an_error_naming_it() {
        let e = read_summary("{}", "cov.json", Path::new("/"), &crates()).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("cov.json: not an llvm-cov JSON export"),
            "{e}"
        );
    }
}
