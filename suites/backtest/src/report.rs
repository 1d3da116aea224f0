//! What a run shows: the metrics table, the fold table, the gate cases; each figure is
//! formatted once here and rendered by the terminal and every report format.

use std::io::{self, Write};
use std::time::Duration;

use gauntlet_harness::suite::{PlannedCase, gate_results};
use gauntlet_reports::{CaseResult, Chart, Section, Series, Table};

use crate::tearsheet;

use crate::suite::{DataInfo, GateResult, Outcome, Verdict, requirements};

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
    // A metric that is undefined on the run says so, with the reason, instead of a number.
    let d = |text: String| match &outcome.undefined {
        Some(why) => format!("undefined: {why}"),
        None => text,
    };
    let mut rows = vec![
        ["signal".into(), outcome.signal.clone()],
        ["bars".into(), outcome.bars.to_string()],
        ["periods per year".into(), outcome.annualisation.to_string()],
        [
            "execution".into(),
            format!(
                "{} positions, fill {}, {}fees {} bps and slippage {} bps of traded notional",
                outcome.exec.model,
                outcome.exec.fill,
                if outcome.exec.long_only {
                    "long only, "
                } else {
                    ""
                },
                outcome.exec.costs.fees_bps,
                outcome.exec.costs.slippage_bps
            ),
        ],
        ["risk-free rate (annual)".into(), pct(m.risk_free)],
        ["total return".into(), pct(m.total_return)],
        ["CAGR".into(), pct(m.cagr)],
        ["annual volatility".into(), pct(m.annual_volatility)],
        ["Sharpe (annualised)".into(), d(num(m.sharpe))],
        ["Sortino (annualised)".into(), d(opt(m.sortino, num))],
        ["Calmar".into(), d(opt(m.calmar, num))],
        ["max drawdown".into(), d(pct(m.max_drawdown))],
        [
            "max drawdown duration".into(),
            format!("{} bars", m.max_drawdown_bars),
        ],
        ["hit rate (trades)".into(), d(opt(m.hit_rate, pct))],
        ["profit factor".into(), d(opt(m.profit_factor, num))],
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
        ["PSR (vs 0)".into(), d(num(outcome.psr))],
        [
            format!(
                "DSR (N = {}: declared trials and the sweep's)",
                outcome.deflated.trials
            ),
            d(format!(
                "{} (SR₀ {:.5} per period)",
                num(outcome.deflated.dsr),
                outcome.deflated.benchmark
            )),
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
    if let Some(why) = &outcome.skipped_checks {
        rows.push([
            "look-ahead, walk-forward and cost checks".into(),
            format!("skipped: {why}"),
        ]);
    }
    if let Some(w) = &outcome.walk_forward {
        rows.push([
            format!(
                "walk-forward OOS Sharpe ({:?}, {} folds)",
                w.mode,
                w.folds.len()
            ),
            match &outcome.walk_forward_undefined {
                Some(why) => format!("undefined: {why}"),
                None => num(w.oos.sharpe),
            },
        ]);
    }
    rows
}

/// The date of a Unix-nanosecond timestamp (UTC).
fn date(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns)
        .format("%Y-%m-%d")
        .to_string()
}

/// Header and rows of the per-fold table.
pub fn fold_rows(outcome: &Outcome) -> (Vec<String>, Vec<Vec<String>>) {
    // Periods `a..b` by the dates of their first and last bars, and their indices.
    let span = |p: std::ops::Range<usize>| {
        let at = |i: usize| {
            outcome
                .period_ts_ns
                .get(i)
                .map_or_else(String::new, |&t| date(t))
        };
        format!(
            "{} – {} ({}..{})",
            at(p.start),
            at(p.end.saturating_sub(1)),
            p.start,
            p.end
        )
    };
    let header = [
        "fold",
        "train periods (UTC)",
        "test periods (UTC)",
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
                span(f.train.clone()),
                span(f.test.clone()),
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
    let planned: Vec<PlannedCase> = gates
        .iter()
        .map(|g| PlannedCase::new(g.name.clone(), requirements(&g.name)))
        .collect();
    gate_results(SUITE, &planned, gates, duration)
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
            Verdict::Invalid(_) => "INVALID",
        };
        writeln!(
            out,
            "{label}  {SUITE}::{} [{}] {}",
            g.name,
            requirements(&g.name).join(", "),
            g.message
        )?;
    }
    Ok(())
}

/// Most points per chart series (the HTML report embeds every chart as SVG).
pub const MAX_CHART_POINTS: usize = 2_000;

/// The report section of a run: notes, tables and charts.
pub fn section(info: &DataInfo, outcome: &Outcome, id: &str) -> Section {
    // The rolling Sharpe chart (two rolling passes over every period) is built on a core of
    // its own while the tables and the other charts are: at 1M bars it was a sixth of
    // `gauntlet backtest --no-sweep`'s main thread (suites/backtest/README.md, Figures).
    std::thread::scope(|scope| {
        let rolling = scope.spawn(|| tearsheet::rolling_sharpe_chart(outcome));
        section_with(info, outcome, id, || {
            rolling
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    })
}

/// [`section`], the rolling Sharpe chart (or why there is none) from `rolling`.
fn section_with(
    info: &DataInfo,
    outcome: &Outcome,
    id: &str,
    rolling: impl FnOnce() -> Result<Chart, String>,
) -> Section {
    let mut s = Section::new(
        format!("{SUITE}.{id}"),
        format!("Backtest: {}", outcome.signal),
        SUITE,
    );
    s.notes = data_notes(info);
    s.values = values(outcome);
    s.notes
        .push(format!("annualisation: {}", outcome.annualisation));
    s.notes.push(CONVENTIONS.to_owned());
    s.notes.push(format!(
        "timings: {}",
        outcome
            .timings
            .iter()
            .map(|(k, d)| format!("{k} {:.1} ms", d.as_secs_f64() * 1e3))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    s.tables.push(Table {
        title: "Metrics".into(),
        columns: vec!["metric".into(), "value".into()],
        rows: metrics_rows(outcome).into_iter().map(Vec::from).collect(),
    });
    let intraday = info.gaps.median_interval_ns < 86_400_000_000_000;
    let (columns, rows) = fold_rows(outcome);
    if !rows.is_empty() {
        s.tables.push(Table {
            title: "Walk-forward folds".into(),
            columns,
            rows,
        });
    }
    let pass = tearsheet::Pass::of(outcome);
    s.tables
        .push(tearsheet::drawdown_table(outcome, &pass, intraday));
    s.tables.push(tearsheet::monthly_table(&pass));
    s.tables.push(trade_table(outcome));
    s.tables.push(tearsheet::trades_table(outcome, intraday));
    s.tables.push(sweep_table(outcome));

    s.charts.push(tearsheet::equity_chart(outcome, &pass));
    s.charts.push(tearsheet::drawdown_chart(&pass));
    match rolling() {
        Ok(chart) => s.charts.push(chart),
        Err(why) => s.notes.push(why),
    }
    match tearsheet::histogram_chart(&pass) {
        Ok(chart) => s.charts.push(chart),
        Err(why) => s.notes.push(why),
    }
    if let Some(w) = &outcome.walk_forward {
        let categories = w
            .folds
            .iter()
            .map(|f| match outcome.period_ts_ns.get(f.test.start) {
                Some(&t) => format!("fold {} · {}", f.fold, date(t)),
                None => format!("fold {}", f.fold),
            })
            .collect();
        let train = w
            .folds
            .iter()
            .enumerate()
            .map(|(i, f)| [i as f64, f.train_sharpe])
            .collect();
        let test = w
            .folds
            .iter()
            .enumerate()
            .map(|(i, f)| [i as f64, f.metrics.sharpe])
            .collect();
        s.charts.push(
            Chart::bar(
                "Walk-forward Sharpe per fold",
                "annualised Sharpe",
                categories,
            )
            .with_series(Series::new("train", train))
            .with_series(Series::new("test (out of sample)", test)),
        );
    }
    s
}

/// Every figure of the run at full precision, by stable key; `None` where undefined.
pub fn values(outcome: &Outcome) -> std::collections::BTreeMap<String, Option<f64>> {
    let m = &outcome.metrics;
    let ok = outcome.undefined.is_none();
    let def = |x: f64| ok.then_some(x);
    let mut v: Vec<(&str, Option<f64>)> = vec![
        ("bars", Some(outcome.bars as f64)),
        ("metrics.periods", Some(m.periods as f64)),
        ("metrics.periods_per_year", Some(m.periods_per_year)),
        ("metrics.risk_free", Some(m.risk_free)),
        ("metrics.total_return", Some(m.total_return)),
        ("metrics.cagr", Some(m.cagr)),
        ("metrics.annual_volatility", Some(m.annual_volatility)),
        ("metrics.sharpe", def(m.sharpe)),
        ("metrics.sortino", m.sortino.and_then(def)),
        ("metrics.calmar", m.calmar.and_then(def)),
        ("metrics.max_drawdown", def(m.max_drawdown)),
        ("metrics.max_drawdown_bars", def(m.max_drawdown_bars as f64)),
        ("metrics.hit_rate", m.hit_rate.and_then(def)),
        ("metrics.profit_factor", m.profit_factor.and_then(def)),
        ("metrics.turnover", Some(m.turnover)),
        ("metrics.exposure", Some(m.exposure)),
        ("metrics.trades", Some(m.trades as f64)),
        ("metrics.sharpe_per_period", def(m.moments.sharpe)),
        ("metrics.mean_per_period", Some(m.moments.mean)),
        ("metrics.sd_per_period", Some(m.moments.sd)),
        ("metrics.skew", def(m.moments.skew)),
        ("metrics.kurtosis", def(m.moments.kurtosis)),
        ("psr", def(outcome.psr)),
        ("dsr", def(outcome.deflated.dsr)),
        ("dsr.trials", Some(outcome.deflated.trials as f64)),
        ("dsr.benchmark_per_period", Some(outcome.deflated.benchmark)),
        ("min_track_record", outcome.min_track_record.and_then(def)),
        ("pbo", outcome.pbo.as_ref().ok().map(|p| p.pbo)),
        ("sweep.trials", Some(outcome.sweep.trials.len() as f64)),
        ("costs.fees_bps", Some(outcome.exec.costs.fees_bps)),
        ("costs.slippage_bps", Some(outcome.exec.costs.slippage_bps)),
        ("costs.fees_paid", Some(outcome.costs.fees)),
        ("costs.slippage_paid", Some(outcome.costs.slippage)),
        ("costs.gross_total_return", outcome.costs.gross_total_return),
    ];
    if let Some(w) = &outcome.walk_forward {
        let wf_ok = outcome.walk_forward_undefined.is_none();
        v.push(("walk_forward.oos_sharpe", wf_ok.then_some(w.oos.sharpe)));
        v.push(("walk_forward.oos_total_return", Some(w.oos.total_return)));
    }
    v.into_iter().map(|(k, x)| (k.to_owned(), x)).collect()
}

/// The conventions in one note (the full table is in the `metrics` module docs).
const CONVENTIONS: &str = "conventions: simple per-bar returns net of costs; a signal at bar t's \
close trades at that close (next-close) or the next open (next-open); positions are units held \
until the target changes (or, with --sizing target-weight, rebalanced to the target fraction \
every bar); fees and slippage are charged on traded notional (fills at price × (1 ± slippage), \
fees on the filled notional), a close's costs in that bar's return; trade return = profit over \
entry notional; sample sd (ddof 1); risk-free converted per period; drawdown from the starting \
equity; PSR/DSR/MinTRL on the per-period Sharpe with raw kurtosis";

fn trade_table(outcome: &Outcome) -> Table {
    let trades = &outcome.execution.trades;
    let longs = trades.iter().filter(|t| t.direction > 0).count();
    let rets: Vec<f64> = trades.iter().map(|t| t.ret).collect();
    let best = rets.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let worst = rets.iter().copied().fold(f64::INFINITY, f64::min);
    let mean = if rets.is_empty() {
        0.0
    } else {
        rets.iter().sum::<f64>() / rets.len() as f64
    };
    let held: usize = trades
        .iter()
        .map(|t| t.exit_bar + 1 - t.entry_bar.min(t.exit_bar + 1))
        .sum();
    let rows = vec![
        vec!["trades".into(), trades.len().to_string()],
        vec![
            "long / short".into(),
            format!("{longs} / {}", trades.len() - longs),
        ],
        vec![
            "still open at the end".into(),
            trades.iter().filter(|t| t.open).count().to_string(),
        ],
        vec!["mean trade return".into(), pct(mean)],
        vec![
            "best / worst trade".into(),
            if rets.is_empty() {
                "n/a".into()
            } else {
                format!("{} / {}", pct(best), pct(worst))
            },
        ],
        vec![
            "mean bars held".into(),
            if trades.is_empty() {
                "n/a".into()
            } else {
                format!("{:.1}", held as f64 / trades.len() as f64)
            },
        ],
    ];
    Table {
        title: "Trade list summary".into(),
        columns: vec!["statistic".into(), "value".into()],
        rows,
    }
}

fn sweep_table(outcome: &Outcome) -> Table {
    let mut order: Vec<usize> = (0..outcome.sweep.trials.len()).collect();
    order.sort_by(|&a, &b| {
        outcome.sweep.trials[b]
            .sharpe
            .total_cmp(&outcome.sweep.trials[a].sharpe)
    });
    let mut rows: Vec<Vec<String>> = order
        .iter()
        .take(10)
        .map(|&i| {
            let t = &outcome.sweep.trials[i];
            vec![
                t.label.clone(),
                num(t.sharpe),
                format!("{:.5}", t.moments.sharpe),
            ]
        })
        .collect();
    if let Some(d) = &outcome.best_deflated {
        rows.push(vec![
            format!(
                "best of all {} trials: DSR with N = {}",
                outcome.sweep.trials.len(),
                d.trials
            ),
            num(d.dsr),
            format!("SR₀ {:.5}", d.benchmark),
        ]);
    }
    Table {
        title: format!(
            "Sweep: top trials of {} (every trial counted in N)",
            outcome.sweep.trials.len()
        ),
        columns: vec![
            "trial".into(),
            "Sharpe (annualised)".into(),
            "Sharpe per period".into(),
        ],
        rows,
    }
}
