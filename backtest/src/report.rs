//! What a run shows: the metrics table, the fold table, the gate cases; each figure is
//! formatted once here and rendered by the terminal and every report format.

use std::io::{self, Write};
use std::time::Duration;

use gauntlet_reports::{CaseResult, Outcome as CaseOutcome};

use crate::suite::{DataInfo, GateResult, Outcome, Verdict};

/// The suite name of every backtest case.
pub const SUITE: &str = "backtest";

fn pct(x: f64) -> String {
    format!("{:.2} %", x * 100.0)
}

fn num(x: f64) -> String {
    format!("{x:.3}")
}

fn opt(x: Option<f64>, f: fn(f64) -> String) -> String {
    x.map_or_else(|| "n/a".to_owned(), f)
}

/// `(metric, value)` rows of the reported run.
pub fn metrics_rows(outcome: &Outcome) -> Vec<[String; 2]> {
    let m = &outcome.metrics;
    let mut rows = vec![
        ["signal".into(), outcome.signal.clone()],
        ["bars".into(), outcome.bars.to_string()],
        ["periods per year".into(), outcome.annualisation.to_string()],
        ["risk-free rate (annual)".into(), pct(m.risk_free)],
        ["total return".into(), pct(m.total_return)],
        ["CAGR".into(), pct(m.cagr)],
        ["annual volatility".into(), pct(m.annual_volatility)],
        ["Sharpe (annualised)".into(), num(m.sharpe)],
        ["Sortino (annualised)".into(), opt(m.sortino, num)],
        ["Calmar".into(), opt(m.calmar, num)],
        ["max drawdown".into(), pct(m.max_drawdown)],
        ["max drawdown duration".into(), format!("{} bars", m.max_drawdown_bars)],
        ["hit rate (trades)".into(), opt(m.hit_rate, pct)],
        ["profit factor".into(), opt(m.profit_factor, num)],
        ["turnover (per year)".into(), num(m.turnover)],
        ["exposure".into(), pct(m.exposure)],
        ["trades".into(), m.trades.to_string()],
        [
            "per-period Sharpe, skew, raw kurtosis".into(),
            format!(
                "{:.5}, {:.3}, {:.3}",
                m.moments.sharpe, m.moments.skew, m.moments.kurtosis
            ),
        ],
        ["PSR (vs 0)".into(), num(outcome.psr)],
        [
            format!("DSR (N = {})", outcome.deflated.trials),
            format!(
                "{} (SR₀ {:.5} per period)",
                num(outcome.deflated.dsr),
                outcome.deflated.benchmark
            ),
        ],
        [
            "min track record (95 %)".into(),
            opt(outcome.min_track_record, |t| format!("{t:.0} periods")),
        ],
    ];
    match &outcome.pbo {
        Ok(p) => rows.push([
            "PBO (CSCV)".into(),
            format!(
                "{} over {} splits of {} trials, {} blocks",
                num(p.pbo),
                p.splits,
                p.trials,
                p.blocks
            ),
        ]),
        Err(why) => rows.push(["PBO (CSCV)".into(), format!("n/a: {why}")]),
    }
    if let Some(w) = &outcome.walk_forward {
        rows.push([
            format!("walk-forward OOS Sharpe ({:?}, {} folds)", w.mode, w.folds.len()),
            num(w.oos.sharpe),
        ]);
    }
    rows
}

/// Header and rows of the per-fold table.
pub fn fold_rows(outcome: &Outcome) -> (Vec<String>, Vec<Vec<String>>) {
    let header = [
        "fold",
        "train periods",
        "test periods",
        "chosen",
        "train Sharpe",
        "test Sharpe",
        "test return",
        "test max drawdown",
    ]
    .map(str::to_owned)
    .to_vec();
    let rows = outcome
        .walk_forward
        .iter()
        .flat_map(|w| &w.folds)
        .map(|f| {
            vec![
                f.fold.to_string(),
                format!("{}..{}", f.train.start, f.train.end),
                format!("{}..{}", f.test.start, f.test.end),
                f.chosen.clone(),
                num(f.train_sharpe),
                num(f.metrics.sharpe),
                pct(f.metrics.total_return),
                pct(f.metrics.max_drawdown),
            ]
        })
        .collect();
    (header, rows)
}

/// Notes on the data: how timestamps were read, the median interval and the gaps.
pub fn data_notes(info: &DataInfo) -> Vec<String> {
    let mut notes = vec![format!("data: {}", info.description)];
    if let Some(t) = info.timestamps {
        notes.push(format!("timestamps: {t}"));
    }
    let g = info.gaps;
    notes.push(format!(
        "median bar interval: {} s; {} gaps longer than twice that{}",
        g.median_interval_ns as f64 / 1e9,
        g.count,
        g.largest.map_or_else(String::new, |(row, ns)| format!(
            " (largest {} s, before row {row})",
            ns as f64 / 1e9
        ))
    ));
    notes
}

/// The gate verdicts as report cases `backtest::<name>`.
pub fn gate_cases(gates: &[GateResult], duration: Duration) -> Vec<CaseResult> {
    gates
        .iter()
        .map(|g| CaseResult {
            id: format!("{SUITE}::{}", g.name),
            suite: SUITE.to_owned(),
            name: g.name.to_owned(),
            requirements: g.requirements.iter().map(|r| (*r).to_owned()).collect(),
            outcome: match &g.verdict {
                Verdict::Pass => CaseOutcome::Pass,
                Verdict::Fail => CaseOutcome::Fail,
                Verdict::Skip(reason) => CaseOutcome::Skip {
                    reason: reason.clone(),
                },
            },
            duration,
            message: Some(g.message.clone()),
            location: None,
        })
        .collect()
}

/// Prints the data notes, the metrics table, the folds and the gates.
///
/// # Errors
///
/// The writer's error.
pub fn write_terminal(
    out: &mut impl Write,
    info: &DataInfo,
    outcome: &Outcome,
    gates: &[GateResult],
) -> io::Result<()> {
    for note in data_notes(info) {
        writeln!(out, "{note}")?;
    }
    writeln!(out)?;
    let rows = metrics_rows(outcome);
    let width = rows.iter().map(|r| r[0].chars().count()).max().unwrap_or(0);
    for [k, v] in &rows {
        writeln!(out, "  {k:<width$}  {v}")?;
    }
    let (header, folds) = fold_rows(outcome);
    if !folds.is_empty() {
        writeln!(out)?;
        writeln!(out, "  {}", header.join(" | "))?;
        for row in folds {
            writeln!(out, "  {}", row.join(" | "))?;
        }
    }
    writeln!(out)?;
    for g in gates {
        let label = match g.verdict {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::Skip(_) => "SKIP",
        };
        writeln!(
            out,
            "{label}  {SUITE}::{} [{}] {}",
            g.name,
            g.requirements.join(", "),
            g.message
        )?;
    }
    Ok(())
}
