//! Full-precision exports of the reported run: `trades.csv` (one row a trade) and
//! `returns.csv` (one row a return period). Floats are written in their shortest form that
//! reads back to the same bits, so a figure recomputed from the files equals the report's.

use std::io::{self, Write};
use std::path::Path;

use crate::suite::Outcome;

/// RFC 3339 text of a Unix-nanosecond timestamp (UTC, as many fraction digits as needed).
fn iso(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// `trades.csv`: entry and exit time, bar and fill price (slippage included), side, units,
/// fees and slippage paid (equity units; the account starts at 1), return, and whether the
/// trade was still open (then its exit is the last close, unpaid).
///
/// # Errors
///
/// The writer's error.
pub fn write_trades(out: &mut impl Write, outcome: &Outcome, ts_ns: &[i64]) -> io::Result<()> {
    writeln!(
        out,
        "entry_time,exit_time,entry_bar,exit_bar,side,units,entry_price,exit_price,fees,slippage,return,open"
    )?;
    let time = |bar: usize| ts_ns.get(bar).map_or_else(String::new, |&t| iso(t));
    for t in &outcome.execution.trades {
        writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{},{},{}",
            time(t.entry_bar),
            time(t.exit_bar),
            t.entry_bar,
            t.exit_bar,
            if t.direction > 0 { "long" } else { "short" },
            t.units,
            t.entry_price,
            t.exit_price,
            t.fees,
            t.slippage,
            t.ret,
            t.open
        )?;
    }
    Ok(())
}

/// `returns.csv`: per return period (bars `1..n`), the bar's timestamp, the target position
/// held over it, equity after it (start 1), its return and the drawdown after it.
///
/// # Errors
///
/// The writer's error.
pub fn write_returns(out: &mut impl Write, outcome: &Outcome) -> io::Result<()> {
    writeln!(out, "timestamp,position,equity,return,drawdown")?;
    let e = &outcome.execution;
    let (mut equity, mut peak) = (1.0_f64, 1.0_f64);
    for (k, &r) in e.returns.iter().enumerate() {
        equity *= 1.0 + r;
        peak = peak.max(equity);
        let ts = outcome
            .period_ts_ns
            .get(k)
            .map_or_else(String::new, |&t| iso(t));
        writeln!(
            out,
            "{ts},{},{equity},{r},{}",
            e.held.get(k).copied().unwrap_or(0.0),
            1.0 - equity / peak
        )?;
    }
    Ok(())
}

/// Writes `trades.csv` and `returns.csv` into `dir`.
///
/// # Errors
///
/// The I/O error, with the file.
pub fn write_all(dir: &Path, outcome: &Outcome, ts_ns: &[i64]) -> io::Result<()> {
    let named = |file: &str, e: io::Error| {
        io::Error::new(
            e.kind(),
            format!("failed to write {}: {e}", dir.join(file).display()),
        )
    };
    let mut trades = io::BufWriter::new(
        std::fs::File::create(dir.join("trades.csv")).map_err(|e| named("trades.csv", e))?,
    );
    write_trades(&mut trades, outcome, ts_ns)
        .and_then(|()| trades.flush())
        .map_err(|e| named("trades.csv", e))?;
    let mut returns = io::BufWriter::new(
        std::fs::File::create(dir.join("returns.csv")).map_err(|e| named("returns.csv", e))?,
    );
    write_returns(&mut returns, outcome)
        .and_then(|()| returns.flush())
        .map_err(|e| named("returns.csv", e))
}
