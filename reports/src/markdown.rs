//! A GitHub-flavoured Markdown summary, sized for a CI job summary or a PR comment.
//!
//! Sections, in order: a title with the verdict, the run metadata, the counts,
//! failed and errored cases (omitted when there are none), one table per suite
//! with every case, skipped cases with their reasons (omitted when none), then
//! each section's notes and tables (its charts are in `report.html`).

use std::io::{self, Write};

use crate::{CaseResult, Format, Outcome, ReportError, RunReport, fmt};

/// Writes `report` as a Markdown summary.
///
/// # Errors
///
/// [`ReportError::Write`] when `out` fails.
pub fn write(report: &RunReport, mut out: impl Write) -> Result<(), ReportError> {
    render(report, &mut out).map_err(|source| ReportError::Write {
        format: Format::Markdown,
        source,
    })
}

fn render(report: &RunReport, out: &mut impl Write) -> io::Result<()> {
    let meta = &report.meta;
    writeln!(out, "# Gauntlet run: {}", fmt::headline(report))?;
    writeln!(out)?;
    writeln!(out, "| Run | |")?;
    writeln!(out, "|---|---|")?;
    let rows = [
        ("Target", cell(&meta.target)),
        ("Profile", cell(&meta.profile)),
        ("Seed", fmt::seed(meta.seed)),
        ("Git commit", code(fmt::git_commit(meta))),
        (
            "Tool version",
            cell(&format!("{} {}", meta.tool, meta.tool_version)),
        ),
        ("Started", fmt::timestamp(meta.started_at)),
        ("Duration", fmt::duration_secs(meta.wall_time())),
    ];
    for (name, value) in rows {
        writeln!(out, "| {name} | {value} |")?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "**{} cases:** {}",
        report.summary.total,
        fmt::counts(&report.summary)
    )?;

    let problems: Vec<&CaseResult> = report
        .cases
        .iter()
        .filter(|case| case.outcome.is_problem())
        .collect();
    if !problems.is_empty() {
        writeln!(out)?;
        writeln!(out, "## Failed, errored and invalid cases")?;
        writeln!(out)?;
        writeln!(out, "| Case | Outcome | Requirements | Message |")?;
        writeln!(out, "|---|---|---|---|")?;
        for case in problems {
            writeln!(
                out,
                "| {} | {} | {} | {} |",
                code(&case.id),
                fmt::status(&case.outcome),
                cell(&fmt::requirements(&case.requirements)),
                cell(fmt::message(case)),
            )?;
        }
    }

    for (suite, cases) in report.suites() {
        writeln!(out)?;
        writeln!(out, "## Suite {}", code(suite))?;
        writeln!(out)?;
        writeln!(out, "| Case | Requirements | Outcome | Duration (ms) |")?;
        writeln!(out, "|---|---|---|---:|")?;
        for case in cases {
            writeln!(
                out,
                "| {} | {} | {} | {} |",
                code(&case.id),
                cell(&fmt::requirements(&case.requirements)),
                fmt::status(&case.outcome),
                fmt::duration_ms(case.duration),
            )?;
        }
    }

    let skipped: Vec<&CaseResult> = report
        .cases
        .iter()
        .filter(|case| matches!(case.outcome, Outcome::Skip { .. }))
        .collect();
    if !skipped.is_empty() {
        writeln!(out)?;
        writeln!(out, "## Skipped cases")?;
        writeln!(out)?;
        writeln!(out, "| Case | Reason |")?;
        writeln!(out, "|---|---|")?;
        for case in skipped {
            writeln!(out, "| {} | {} |", code(&case.id), cell(fmt::message(case)))?;
        }
    }

    if let Some(matrix) = &report.traceability {
        traceability(matrix, out)?;
    }

    for section in &report.sections {
        writeln!(out)?;
        writeln!(out, "## {}", cell(&section.title))?;
        for note in &section.notes {
            writeln!(out)?;
            writeln!(out, "{}", cell(note))?;
        }
        for table in &section.tables {
            writeln!(out)?;
            writeln!(out, "**{}**", cell(&table.title))?;
            writeln!(out)?;
            let header: Vec<String> = table.columns.iter().map(|c| cell(c)).collect();
            writeln!(out, "| {} |", header.join(" | "))?;
            writeln!(out, "|{}", "---|".repeat(table.columns.len().max(1)))?;
            for row in &table.rows {
                let cells: Vec<String> = row.iter().map(|c| cell(c)).collect();
                writeln!(out, "| {} |", cells.join(" | "))?;
            }
        }
        if !section.charts.is_empty() {
            writeln!(out)?;
            let titles: Vec<String> = section.charts.iter().map(|c| cell(&c.title)).collect();
            writeln!(out, "Charts in `report.html`: {}.", titles.join(", "))?;
        }
    }
    Ok(())
}

/// Makes free text safe and literal inside one table cell: `|` would end the
/// cell, a newline the row, `<` would open an HTML tag that GitHub swallows and
/// `*`, `_`, `` ` ``, `[` would format a message that should read as written.
/// The traceability matrix: one row per clause, uncovered ones included.
fn traceability(matrix: &crate::Traceability, out: &mut impl Write) -> io::Result<()> {
    writeln!(out)?;
    writeln!(out, "## Compliance traceability")?;
    writeln!(out)?;
    writeln!(out, "{}", cell(&matrix.evidence_line()))?;
    writeln!(out)?;
    writeln!(out, "| Clause | Requirements | Cases | Verdict |")?;
    writeln!(out, "|---|---|---|---|")?;
    for row in &matrix.clauses {
        writeln!(
            out,
            "| {} | {} | {} | {} |",
            cell(&format!("{}: {}", row.clause, row.title)),
            cell(&fmt::requirements(&row.requirements)),
            cell(&crate::traceability::cases_cell(row)),
            row.status.label(),
        )?;
    }
    Ok(())
}

fn cell(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    let mut chars = text.trim().chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' | '`' | '*' | '_' | '[' | ']' | '~' | '|' => {
                escaped.push('\\');
                escaped.push(c);
            }
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '\r' if chars.peek() == Some(&'\n') => {}
            '\r' | '\n' => escaped.push_str("<br>"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// Shows an identifier (case id, suite, commit) as inline code in a table cell.
///
/// Code spans show their content literally, so only `|` (which the table
/// splits on before inline parsing) needs escaping; the fence is longer than
/// any run of backticks inside.
fn code(text: &str) -> String {
    let text = text.replace(['\r', '\n'], " ").replace('|', "\\|");
    let longest_run = text
        .split(|c| c != '`')
        .map(str::len)
        .max()
        .unwrap_or_default();
    let fence = "`".repeat(longest_run + 1);
    // A space keeps a leading or trailing backtick from merging into the fence.
    let pad = if text.starts_with('`') || text.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{text}{pad}{fence}")
}

#[cfg(test)]
mod tests {
    use super::{cell, code};

    #[test]
    fn cell_escapes_pipes_newlines_html_and_emphasis() {
        assert_eq!(cell("a|b"), "a\\|b");
        assert_eq!(
            cell("one\ntwo\r\nthree\rfour"),
            "one<br>two<br>three<br>four"
        );
        assert_eq!(cell("<b> & </b>"), "&lt;b&gt; &amp; &lt;/b&gt;");
        assert_eq!(
            cell("*not* `code` [link]"),
            "\\*not\\* \\`code\\` \\[link\\]"
        );
        assert_eq!(cell("  padded\n"), "padded");
    }

    #[test]
    fn code_escapes_pipes_and_outfences_backticks() {
        assert_eq!(code("unit::health_live"), "`unit::health_live`");
        assert_eq!(code("a|b"), "`a\\|b`");
        assert_eq!(code("a``b"), "```a``b```");
        assert_eq!(code("`x"), "`` `x ``");
    }
}
