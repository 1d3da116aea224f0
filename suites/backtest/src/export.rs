//! Full-precision exports of the reported run: `trades.csv` (one row a trade) and the
//! per-period returns (one row a return period), as `returns.parquet` (the default: LZ4,
//! the floats' own bits) or `returns.csv` ([`ReturnsFormat`]). CSV floats are written in
//! their shortest form that reads back to the same bits (ryu's: `1e-25`, `0.5`, `1.0`), so a
//! figure recomputed from either file equals the report's.
//!
//! `returns.csv` is 86 MB at 1M bars: its rows are formatted by ryu, with timestamps
//! written by hand (the date cached per UTC day), a chunk a core at a time; even so the
//! formatting was a quarter to half of `gauntlet backtest --no-sweep`'s time, where the
//! Parquet file (the columns' bytes, compressed) costs a fraction of that
//! (suites/backtest/README.md, Figures).

use std::io::{self, Write};
use std::path::Path;

use serde::Deserialize;

use crate::suite::Outcome;

const NS_PER_DAY: i64 = 86_400_000_000_000;

/// The format of the per-period returns export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReturnsFormat {
    /// `returns.parquet`: LZ4 Parquet, timestamps as UTC nanosecond datetimes, floats as
    /// their bits.
    #[default]
    Parquet,
    /// `returns.csv`: RFC 3339 timestamps, floats in their shortest round-trip text.
    Csv,
}

impl ReturnsFormat {
    /// The file it is written to.
    pub fn file_name(self) -> &'static str {
        match self {
            ReturnsFormat::Parquet => "returns.parquet",
            ReturnsFormat::Csv => "returns.csv",
        }
    }
}

impl std::str::FromStr for ReturnsFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "parquet" => Ok(ReturnsFormat::Parquet),
            "csv" => Ok(ReturnsFormat::Csv),
            other => Err(format!("unknown returns format {other:?} (parquet or csv)")),
        }
    }
}

impl std::fmt::Display for ReturnsFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ReturnsFormat::Parquet => "parquet",
            ReturnsFormat::Csv => "csv",
        })
    }
}

/// RFC 3339 text of Unix-nanosecond timestamps, byte for byte what chrono's
/// `to_rfc3339_opts(SecondsFormat::AutoSi, true)` writes (UTC, `Z`, no fraction or 3, 6 or
/// 9 digits), the date formatted once per UTC day.
#[derive(Debug, Clone)]
struct Stamps {
    day: Option<i64>,
    date: [u8; 10],
}

impl Stamps {
    fn new() -> Self {
        Stamps {
            day: None,
            date: *b"1970-01-01",
        }
    }

    fn write(&mut self, out: &mut Vec<u8>, ns: i64) {
        let day = ns.div_euclid(NS_PER_DAY);
        let in_day = ns.rem_euclid(NS_PER_DAY);
        if self.day != Some(day) {
            self.day = Some(day);
            // i64 nanoseconds span the years 1677 to 2262: always four digits.
            let date = i32::try_from(day + 719_163)
                .ok()
                .and_then(chrono::NaiveDate::from_num_days_from_ce_opt);
            if let Some(d) = date {
                let text = d.format("%Y-%m-%d").to_string();
                self.date.copy_from_slice(&text.as_bytes()[..10]);
            }
        }
        out.extend_from_slice(&self.date);
        let secs = in_day / 1_000_000_000;
        let nano = in_day % 1_000_000_000;
        let (h, m, s) = (secs / 3_600, secs / 60 % 60, secs % 60);
        let two = |x: i64| [b'0' + (x / 10) as u8, b'0' + (x % 10) as u8];
        out.push(b'T');
        out.extend_from_slice(&two(h));
        out.push(b':');
        out.extend_from_slice(&two(m));
        out.push(b':');
        out.extend_from_slice(&two(s));
        let (digits, value) = if nano == 0 {
            (0, 0)
        } else if nano % 1_000_000 == 0 {
            (3, nano / 1_000_000)
        } else if nano % 1_000 == 0 {
            (6, nano / 1_000)
        } else {
            (9, nano)
        };
        if digits > 0 {
            out.push(b'.');
            let mut buf = [b'0'; 9];
            let mut v = value;
            for slot in buf[..digits].iter_mut().rev() {
                *slot = b'0' + (v % 10) as u8;
                v /= 10;
            }
            out.extend_from_slice(&buf[..digits]);
        }
        out.push(b'Z');
    }
}

/// A float in its shortest round-trip form; `NaN`, `inf`, `-inf` as std writes them.
#[inline]
fn float(out: &mut Vec<u8>, buf: &mut ryu::Buffer, x: f64) {
    out.extend_from_slice(buf.format(x).as_bytes());
}

/// `trades.csv`: entry and exit time, bar and fill price (slippage included), side, units,
/// fees and slippage paid (equity units; the account starts at 1), return, and whether the
/// trade was still open (then its exit is the last close, unpaid).
///
/// # Errors
///
/// The writer's error.
pub fn write_trades(out: &mut impl Write, outcome: &Outcome, ts_ns: &[i64]) -> io::Result<()> {
    let mut text = Vec::with_capacity(64 * 1024);
    text.extend_from_slice(
        b"entry_time,exit_time,entry_bar,exit_bar,side,units,entry_price,exit_price,fees,slippage,return,open\n",
    );
    let (mut stamps, mut buf) = (Stamps::new(), ryu::Buffer::new());
    for t in &outcome.execution.trades {
        for bar in [t.entry_bar, t.exit_bar] {
            if let Some(&ns) = ts_ns.get(bar) {
                stamps.write(&mut text, ns);
            }
            text.push(b',');
        }
        let side = if t.direction > 0 { "long" } else { "short" };
        write!(text, "{},{},{side},", t.entry_bar, t.exit_bar)?;
        for x in [
            t.units,
            t.entry_price,
            t.exit_price,
            t.fees,
            t.slippage,
            t.ret,
        ] {
            float(&mut text, &mut buf, x);
            text.push(b',');
        }
        text.extend_from_slice(if t.open { b"true\n" } else { b"false\n" });
        if text.len() >= 60 * 1024 {
            out.write_all(&text)?;
            text.clear();
        }
    }
    out.write_all(&text)
}

/// Rows `range` of `returns.csv` into `text` (cleared first), from the equity and its
/// running peak before the first.
fn returns_rows(
    rows: Rows<'_>,
    range: std::ops::Range<usize>,
    (mut equity, mut peak): (f64, f64),
    text: &mut Vec<u8>,
) {
    text.clear();
    let (mut stamps, mut buf) = (Stamps::new(), ryu::Buffer::new());
    for k in range {
        let r = rows.returns[k];
        equity *= 1.0 + r;
        peak = peak.max(equity);
        if let Some(&ns) = rows.ts_ns.get(k) {
            stamps.write(text, ns);
        }
        text.push(b',');
        float(text, &mut buf, rows.held.get(k).copied().unwrap_or(0.0));
        text.push(b',');
        float(text, &mut buf, equity);
        text.push(b',');
        float(text, &mut buf, r);
        text.push(b',');
        float(text, &mut buf, 1.0 - equity / peak);
        text.push(b'\n');
    }
}

/// The columns `returns.csv` is written from: each period's return, position held and
/// timestamp.
#[derive(Debug, Clone, Copy)]
struct Rows<'a> {
    returns: &'a [f64],
    held: &'a [f64],
    ts_ns: &'a [i64],
}

/// Rows of `returns.csv` one thread formats at a time (about 6 MB of text).
const CHUNK_ROWS: usize = 1 << 16;

/// `returns.csv`: per return period (bars `1..n`), the bar's timestamp, the target position
/// held over it, equity after it (start 1), its return and the drawdown after it.
///
/// The rows are formatted in rounds of one chunk of 65,536 rows per core, written in order
/// before the next round (memory stays a few chunks whatever the length); each chunk starts
/// from the equity and peak compounded, in order, over the rows before it, so every figure
/// has the bits a single pass gives.
///
/// # Errors
///
/// The writer's error.
pub fn write_returns(out: &mut impl Write, outcome: &Outcome) -> io::Result<()> {
    let rows = Rows {
        returns: &outcome.execution.returns,
        held: &outcome.execution.held,
        ts_ns: &outcome.period_ts_ns,
    };
    write_rows(out, rows)
}

/// [`write_returns`] of the columns.
fn write_rows(out: &mut impl Write, rows: Rows<'_>) -> io::Result<()> {
    out.write_all(b"timestamp,position,equity,return,drawdown\n")?;
    let returns = rows.returns;
    let n = returns.len();
    let threads = if n <= CHUNK_ROWS {
        1
    } else {
        std::thread::available_parallelism().map_or(1, |c| c.get().min(8))
    };
    let mut texts: Vec<Vec<u8>> = (0..threads)
        .map(|_| Vec::with_capacity(CHUNK_ROWS.min(n) * 96))
        .collect();
    let (mut equity, mut peak) = (1.0_f64, 1.0_f64);
    let mut next = 0;
    while next < n {
        let mut jobs = Vec::with_capacity(threads);
        while jobs.len() < threads && next < n {
            let range = next..(next + CHUNK_ROWS).min(n);
            jobs.push((range.clone(), (equity, peak)));
            for &r in &returns[range.clone()] {
                equity *= 1.0 + r;
                peak = peak.max(equity);
            }
            next = range.end;
        }
        std::thread::scope(|scope| {
            let mut slots = texts.iter_mut().zip(&jobs);
            let first = slots.next();
            for (text, (range, start)) in slots {
                let (range, start) = (range.clone(), *start);
                scope.spawn(move || returns_rows(rows, range, start, text));
            }
            if let Some((text, (range, start))) = first {
                returns_rows(rows, range.clone(), *start, text);
            }
        });
        for text in &texts[..jobs.len()] {
            out.write_all(text)?;
        }
    }
    Ok(())
}

/// Rows a row group of `returns.parquet`: polars' writer default (512²), so readers that
/// split work by row group get four at 1M rows.
const ROW_GROUP_ROWS: usize = 512 * 512;

/// `returns.parquet`: the columns of `returns.csv` (timestamp as a UTC nanosecond datetime,
/// position, equity, return, drawdown), LZ4-compressed (`LZ4_RAW`), 262,144 rows a row
/// group, each column PLAIN-encoded with min/max and null-count statistics.
///
/// Written through polars-parquet's `FileWriter` rather than polars' `ParquetWriter`,
/// whose only encoding choice for numbers is to try a dictionary first: it estimated every
/// float column's cardinality (a HyperLogLog pass, ~6 % of `gauntlet backtest
/// --no-sweep`'s instructions at 1M bars) to find, every time, what the data says up front:
/// these floats barely repeat (suites/backtest/README.md, Figures). The file is what
/// polars wrote but for the encoding (PLAIN, which every reader handles), the UTC tag
/// below, and row groups of exactly 262,144 rows.
///
/// # Errors
///
/// The writer's error, as an I/O error.
pub fn write_returns_parquet(out: impl Write, outcome: &Outcome) -> io::Result<()> {
    use polars::prelude::{
        ArrowDataType, ArrowTimeUnit, Column, CompatLevel, DataFrame, Float64Chunked, Int64Chunked,
        IntoSeries, PolarsResult, SchemaExt,
    };
    use polars_parquet::write::{
        CompressionOptions, Encoding, FileWriter, RowGroupIterator, StatisticsOptions, Version,
        WriteOptions,
    };
    let returns = &outcome.execution.returns;
    let n = returns.len();
    let ts = outcome.period_ts_ns.get(..n).ok_or_else(|| {
        io::Error::other(format!(
            "{} returns but {} period timestamps",
            n,
            outcome.period_ts_ns.len()
        ))
    })?;
    let held = &outcome.execution.held;
    let to_io = |e: polars::prelude::PolarsError| io::Error::other(e.to_string());
    // One row group's frame: its columns own their values, which move into the arrays
    // written (no copy). The times stay Int64, the physical type a timestamp is written as:
    // the schema below makes them UTC nanosecond timestamps; cast to polars' Datetime
    // first, each group's column was copied again on its way to an arrow array.
    let frame =
        |ts: Vec<i64>, columns: [(&str, Vec<f64>); 4]| -> PolarsResult<DataFrame> {
            let height = ts.len();
            let mut all = vec![Column::from(
                Int64Chunked::from_vec("timestamp".into(), ts).into_series(),
            )];
            all.extend(columns.map(|(name, v)| {
                Column::from(Float64Chunked::from_vec(name.into(), v).into_series())
            }));
            DataFrame::new(height, all)
        };
    let names = ["position", "equity", "return", "drawdown"];
    let mut schema = frame(Vec::new(), names.map(|name| (name, Vec::new())))
        .map_err(to_io)?
        .schema()
        .to_arrow(CompatLevel::newest());
    // Timestamps in nanoseconds tagged UTC (Parquet's `isAdjustedToUTC`), as the values are:
    // pandas or DuckDB would read local-less wall times otherwise.
    if let Some(field) = schema.get_mut("timestamp") {
        field.dtype = ArrowDataType::Timestamp(ArrowTimeUnit::Nanosecond, Some("UTC".into()));
    }
    // LZ4 (Parquet's LZ4_RAW, which pyarrow, polars, DuckDB and Spark read): zstd at its
    // default level spent a fifth of `gauntlet backtest --no-sweep`'s instructions on these
    // floats' bytes for a file 11 % smaller (suites/backtest/README.md, Figures).
    let options = WriteOptions {
        statistics: StatisticsOptions::default(),
        version: Version::V1,
        compression: CompressionOptions::Lz4Raw,
        data_page_size: None,
    };
    let encodings = vec![vec![Encoding::Plain]; schema.len()];
    // Each row group's columns are built when the writer asks for them and freed once
    // written, the equity and its running peak carried from one to the next (the same
    // arithmetic in the same order as `returns.csv`'s rows): a few MB at a time, where the
    // whole columns copied up front were 40 MB of fresh pages at 1M bars.
    let (mut equity, mut peak) = (1.0_f64, 1.0_f64);
    let rows_of = |g: usize| g * ROW_GROUP_ROWS..((g + 1) * ROW_GROUP_ROWS).min(n);
    let groups = (0..n.div_ceil(ROW_GROUP_ROWS)).flat_map(|g| {
        let range = rows_of(g);
        let mut curve = Vec::with_capacity(range.len());
        let mut drawdown = Vec::with_capacity(range.len());
        for &r in &returns[range.clone()] {
            equity *= 1.0 + r;
            peak = peak.max(equity);
            curve.push(equity);
            drawdown.push(1.0 - equity / peak);
        }
        let position: Vec<f64> = range
            .clone()
            .map(|k| held.get(k).copied().unwrap_or(0.0))
            .collect();
        let columns = [
            (names[0], position),
            (names[1], curve),
            (names[2], returns[range.clone()].to_vec()),
            (names[3], drawdown),
        ];
        match frame(ts[range].to_vec(), columns) {
            Ok(f) => f
                .iter_chunks(CompatLevel::newest(), false)
                .map(Ok)
                .collect::<Vec<_>>(),
            Err(e) => vec![Err(e)],
        }
    });
    let row_groups =
        RowGroupIterator::try_new(groups, &schema, options, encodings.into()).map_err(to_io)?;
    let mut writer = FileWriter::try_new(out, schema, options).map_err(to_io)?;
    for (g, columns) in row_groups.enumerate() {
        writer
            .write(rows_of(g).len() as u64, columns.map_err(to_io)?)
            .map_err(to_io)?;
    }
    writer.end(None).map_err(to_io)?;
    Ok(())
}

/// Writes `trades.csv` and the returns in `format` into `dir`, each on a thread of its own:
/// at 1M bars `trades.csv` (24k trades) was about a quarter of the exports' time (30 of
/// ~120 ms under strace), which now overlaps the returns file instead of preceding it.
///
/// # Errors
///
/// The I/O error, with the file; the trades' first when both fail.
pub fn write_all(
    dir: &Path,
    outcome: &Outcome,
    ts_ns: &[i64],
    format: ReturnsFormat,
) -> io::Result<()> {
    let named = |file: &str, e: io::Error| {
        io::Error::new(
            e.kind(),
            format!("failed to write {}: {e}", dir.join(file).display()),
        )
    };
    let write_trades_csv = || {
        let mut trades = io::BufWriter::new(
            std::fs::File::create(dir.join("trades.csv")).map_err(|e| named("trades.csv", e))?,
        );
        write_trades(&mut trades, outcome, ts_ns)
            .and_then(|()| trades.flush())
            .map_err(|e| named("trades.csv", e))
    };
    let write_returns_file = || {
        let file = format.file_name();
        let mut returns = std::fs::File::create(dir.join(file)).map_err(|e| named(file, e))?;
        match format {
            ReturnsFormat::Parquet => {
                let mut buffered = io::BufWriter::new(returns);
                write_returns_parquet(&mut buffered, outcome).and_then(|()| buffered.flush())
            }
            // Whole chunks go straight to the file: no buffer in between.
            ReturnsFormat::Csv => {
                write_returns(&mut returns, outcome).and_then(|()| returns.flush())
            }
        }
        .map_err(|e| named(file, e))
    };
    let (trades, returns) = std::thread::scope(|scope| {
        let trades = scope.spawn(write_trades_csv);
        let returns = write_returns_file();
        let trades = trades
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (trades, returns)
    });
    trades.and(returns)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chrono_text(ns: i64) -> String {
        chrono::DateTime::from_timestamp_nanos(ns)
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
    }

    /// The hand-written timestamps are chrono's, byte for byte: whole seconds, each
    /// fraction length, before 1970, both ends of the i64 range, runs within a day and
    /// across days (the cached date).
    #[test]
    fn timestamps_are_chronos_rfc3339() {
        let mut ns: Vec<i64> = vec![
            0,
            1,
            999,
            1_000,
            1_000_000,
            1_500_000_000,
            -1,
            -1_000_000_000,
            -NS_PER_DAY,
            NS_PER_DAY - 1,
            1_704_067_200_000_000_000,
            i64::MIN,
            i64::MAX,
            951_782_400_000_000_000, // 2000-02-29
        ];
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = x as i64;
            // Whole seconds, milli, micro and nanoseconds alike.
            ns.push(match x % 4 {
                0 => v / 1_000_000_000 * 1_000_000_000,
                1 => v / 1_000_000 * 1_000_000,
                2 => v / 1_000 * 1_000,
                _ => v,
            });
        }
        // One-minute bars over three days: the cached date changes at midnight.
        ns.extend((0..4_320).map(|m| 1_704_067_200_000_000_000 + m * 60_000_000_000));
        let mut stamps = Stamps::new();
        for &t in &ns {
            let mut out = Vec::new();
            stamps.write(&mut out, t);
            assert_eq!(String::from_utf8(out).unwrap(), chrono_text(t), "{t}");
        }
    }

    /// Rows formatted a chunk a thread in rounds are the rows of one pass: every equity and
    /// drawdown compounded across the chunk boundaries, bit for bit.
    #[test]
    fn chunked_rows_are_one_pass() {
        let n = 3 * CHUNK_ROWS + 1_234;
        let mut x: u64 = 7;
        let returns: Vec<f64> = (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                ((x >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * 0.02
            })
            .collect();
        let held: Vec<f64> = (0..n).map(|k| [1.0, -1.0, 0.0][k % 3]).collect();
        let ts_ns: Vec<i64> = (0..n as i64)
            .map(|k| 1_704_067_200_000_000_000 + k * 60_000_000_000)
            .collect();
        let rows = Rows {
            returns: &returns,
            held: &held,
            ts_ns: &ts_ns,
        };
        let mut got = Vec::new();
        write_rows(&mut got, rows).unwrap();
        let mut want = String::from("timestamp,position,equity,return,drawdown\n");
        let (mut equity, mut peak) = (1.0_f64, 1.0_f64);
        for ((&r, &h), &t) in returns.iter().zip(&held).zip(&ts_ns) {
            equity *= 1.0 + r;
            peak = peak.max(equity);
            want.push_str(&format!(
                "{},{h},{equity},{r},{}\n",
                chrono_text(t),
                1.0 - equity / peak
            ));
        }
        // std's and ryu's texts differ (`1` and `1.0`, `1e-7` and `0.0000001`); their
        // values must not.
        let got = String::from_utf8(got).unwrap();
        let (got, want): (Vec<&str>, Vec<&str>) = (got.lines().collect(), want.lines().collect());
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want).skip(1) {
            let (g, w): (Vec<&str>, Vec<&str>) = (g.split(',').collect(), w.split(',').collect());
            assert_eq!(g[0], w[0]);
            for (a, b) in g[1..].iter().zip(&w[1..]) {
                let (a, b): (f64, f64) = (a.parse().unwrap(), b.parse().unwrap());
                assert_eq!(a.to_bits(), b.to_bits(), "{g:?} vs {w:?}");
            }
        }
    }

    /// ryu's text reads back to the same bits, and non-finite values read as std writes them.
    #[test]
    fn floats_read_back_bit_for_bit() {
        let mut buf = ryu::Buffer::new();
        for x in [
            0.0,
            -0.0,
            1.0,
            -1.0,
            0.1,
            1e-25,
            f64::MIN_POSITIVE,
            5e-324,
            f64::MAX,
            1.0 / 3.0,
            123_456_789.123,
        ] {
            let mut out = Vec::new();
            float(&mut out, &mut buf, x);
            let back: f64 = std::str::from_utf8(&out).unwrap().parse().unwrap();
            assert_eq!(back.to_bits(), x.to_bits(), "{x}");
        }
        for x in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let mut out = Vec::new();
            float(&mut out, &mut buf, x);
            assert_eq!(String::from_utf8(out).unwrap(), x.to_string());
        }
    }
}
