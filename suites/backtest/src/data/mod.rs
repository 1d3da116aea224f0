//! OHLCV bars in: CSV or Parquet files read with polars' eager readers, then validated.
//!
//! Every check names the 1-based data row (and, for CSV, the file line, assuming one
//! line per record) and the column. Timestamps become Unix nanoseconds (UTC) from:
//!
//! - integer epochs in seconds, milliseconds, microseconds or nanoseconds, declared
//!   ([`LoadOptions::time_unit`]) or inferred from the magnitude of the first value
//!   (below 10¹¹ seconds, 10¹⁴ ms, 10¹⁷ µs, else ns) — the choice is always reported;
//! - polars `Datetime` columns (Parquet timestamps), in their own unit;
//! - ISO-8601 / RFC 3339 strings in CSV (`2024-01-02T03:04:05Z`, with an offset, or
//!   without one meaning UTC, `T` or a space as separator; a bare date is midnight UTC).

use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};

use polars::prelude::{ParallelStrategy, ParquetReader, PolarsError, SerReader, Series};
use serde::Deserialize;

/// The bars the loader returns: the workspace's one bar type, from `gauntlet-fixtures`.
pub use gauntlet_fixtures::Bars;

mod check;
mod convert;
mod parquet;
mod plain;

pub use check::{Gaps, longest_trading_gap, validate, validate_bars};
pub use convert::parse_iso;
pub use parquet::{write_parquet, write_parquet_with};

use check::scan_rows;
use convert::{check_columns, csv_header, floats, read_csv, timestamps};
use parquet::no_null_columns;
use plain::{Consumer, claimed_rows, read_plain};

/// The largest file the loader reads, so a wrong path cannot exhaust memory.
pub const MAX_FILE_BYTES: u64 = 4 << 30;

/// The most bars a file may hold: 100 million (4.8 GB of columns, ~19 GB at a backtest's
/// peak of 4× them). A Parquet file's metadata is checked before anything is allocated for
/// its rows, so that a file claiming more is refused by name rather than aborting the
/// process on an allocation it cannot get.
pub const MAX_BARS: usize = 100_000_000;

/// Unit of integer epoch timestamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TimeUnit {
    /// Seconds.
    #[serde(rename = "s")]
    Seconds,
    /// Milliseconds.
    #[serde(rename = "ms")]
    Millis,
    /// Microseconds.
    #[serde(rename = "us")]
    Micros,
    /// Nanoseconds.
    #[serde(rename = "ns")]
    Nanos,
}

impl TimeUnit {
    fn nanos(self) -> i64 {
        match self {
            TimeUnit::Seconds => 1_000_000_000,
            TimeUnit::Millis => 1_000_000,
            TimeUnit::Micros => 1_000,
            TimeUnit::Nanos => 1,
        }
    }

    /// The unit whose epochs of today's order of magnitude look like `value`.
    fn infer(value: i64) -> TimeUnit {
        match value.unsigned_abs() {
            v if v < 100_000_000_000 => TimeUnit::Seconds,
            v if v < 100_000_000_000_000 => TimeUnit::Millis,
            v if v < 100_000_000_000_000_000 => TimeUnit::Micros,
            _ => TimeUnit::Nanos,
        }
    }
}

impl fmt::Display for TimeUnit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TimeUnit::Seconds => "seconds",
            TimeUnit::Millis => "milliseconds",
            TimeUnit::Micros => "microseconds",
            TimeUnit::Nanos => "nanoseconds",
        })
    }
}

impl std::str::FromStr for TimeUnit {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "s" => Ok(TimeUnit::Seconds),
            "ms" => Ok(TimeUnit::Millis),
            "us" => Ok(TimeUnit::Micros),
            "ns" => Ok(TimeUnit::Nanos),
            other => Err(format!("unknown time unit {other:?} (s, ms, us or ns)")),
        }
    }
}

/// Names of the six columns in the user's file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct ColumnNames {
    /// Timestamp column (default `timestamp`).
    pub timestamp: String,
    /// Open price column (default `open`).
    pub open: String,
    /// High price column (default `high`).
    pub high: String,
    /// Low price column (default `low`).
    pub low: String,
    /// Close price column (default `close`).
    pub close: String,
    /// Volume column (default `volume`).
    pub volume: String,
}

impl Default for ColumnNames {
    fn default() -> Self {
        ColumnNames {
            timestamp: "timestamp".into(),
            open: "open".into(),
            high: "high".into(),
            low: "low".into(),
            close: "close".into(),
            volume: "volume".into(),
        }
    }
}

impl ColumnNames {
    fn prices(&self) -> [&str; 5] {
        [&self.open, &self.high, &self.low, &self.close, &self.volume]
    }

    fn all(&self) -> [&str; 6] {
        [
            &self.timestamp,
            &self.open,
            &self.high,
            &self.low,
            &self.close,
            &self.volume,
        ]
    }
}

/// How to read a file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LoadOptions {
    /// Column names.
    pub columns: ColumnNames,
    /// Unit of integer timestamps; `None` infers it from the first value's magnitude.
    pub time_unit: Option<TimeUnit>,
}

/// The file formats the loader reads, chosen by extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// `.csv`, with a header line.
    Csv,
    /// `.parquet` or `.pq`.
    Parquet,
}

impl fmt::Display for FileFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileFormat::Csv => "CSV",
            FileFormat::Parquet => "Parquet",
        })
    }
}

/// How the timestamps were read; always reported, never silent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampSource {
    /// Integer epochs in `unit`, declared or inferred from the first value.
    Epoch {
        /// The unit.
        unit: TimeUnit,
        /// Whether the unit was inferred rather than declared.
        inferred: bool,
    },
    /// A polars `Datetime` column.
    Datetime,
    /// ISO-8601 strings.
    Iso8601,
}

impl fmt::Display for TimestampSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TimestampSource::Epoch { unit, inferred } => write!(
                f,
                "integer Unix {unit} ({})",
                if *inferred {
                    "inferred from the first value's magnitude"
                } else {
                    "declared"
                }
            ),
            TimestampSource::Datetime => f.write_str("datetime column"),
            TimestampSource::Iso8601 => f.write_str("ISO-8601 strings"),
        }
    }
}

/// Bars read from a file, with how they were read.
#[derive(Debug, Clone)]
pub struct LoadedBars {
    /// The validated bars.
    pub bars: Bars,
    /// The file.
    pub path: PathBuf,
    /// Its format.
    pub format: FileFormat,
    /// How the timestamps were read.
    pub timestamps: TimestampSource,
    /// Gaps between bars.
    pub gaps: Gaps,
}

/// Where in the file a value sits: 1-based data row and, for CSV, the file line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowRef {
    /// 1-based data row.
    pub row: usize,
    /// 1-based file line (CSV only: header on line 1, one line per record).
    pub line: Option<usize>,
}

impl fmt::Display for RowRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "row {} (line {line})", self.row),
            None => write!(f, "row {}", self.row),
        }
    }
}

/// Why bars could not be loaded or are not valid.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// The file cannot be opened or read.
    #[error("failed to read {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_FILE_BYTES`].
    #[error("failed to read {}: {bytes} bytes exceeds the limit of {limit}", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        bytes: u64,
        /// The limit.
        limit: u64,
    },
    /// The extension is not one the loader reads.
    #[error("failed to read {}: unknown format (expected a .csv, .parquet or .pq file)", path.display())]
    UnknownFormat {
        /// The file.
        path: PathBuf,
    },
    /// polars could not parse the file.
    #[error("failed to parse {} as {format}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The format tried.
        format: FileFormat,
        /// polars' error.
        #[source]
        source: PolarsError,
    },
    /// The file has no header line (it is empty).
    #[error("failed to read {}: the file is empty (expected a header line naming the columns)", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// A configured column is absent.
    #[error("column {column:?} not found in {} (columns: {available})", path.display())]
    MissingColumn {
        /// The column asked for.
        column: String,
        /// The file.
        path: PathBuf,
        /// The columns present.
        available: String,
    },
    /// A column has a type the loader cannot use.
    #[error("column {column:?} has type {dtype}, expected {expected}")]
    ColumnType {
        /// The column.
        column: String,
        /// Its type.
        dtype: String,
        /// What would do.
        expected: &'static str,
    },
    /// A value is absent.
    #[error("{at}, column {column:?}: value is missing")]
    Missing {
        /// Where.
        at: RowRef,
        /// The column.
        column: String,
    },
    /// A value does not parse.
    #[error("{at}, column {column:?}: cannot parse {text:?} as {expected}")]
    Unparsable {
        /// Where.
        at: RowRef,
        /// The column.
        column: String,
        /// The text.
        text: String,
        /// What it should be.
        expected: &'static str,
    },
    /// A value breaks an OHLCV rule.
    #[error("{at}, column {column:?}: {value} {rule}")]
    Invalid {
        /// Where.
        at: RowRef,
        /// The column.
        column: String,
        /// The value.
        value: f64,
        /// The rule it breaks, e.g. `must be positive and finite`.
        rule: String,
    },
    /// Timestamps repeat or go backwards.
    #[error(
        "{at}, column {column:?}: timestamp {value} is {what} the previous row's {previous} (timestamps must be strictly increasing)"
    )]
    Order {
        /// Where.
        at: RowRef,
        /// The column.
        column: String,
        /// This row's timestamp as the file writes it (CSV), or in RFC 3339.
        value: String,
        /// The previous row's.
        previous: String,
        /// `a duplicate of` or `before`.
        what: &'static str,
    },
    /// A timestamp does not fit in Unix nanoseconds (years 1677 to 2262).
    #[error("{at}, column {column:?}: timestamp {text} is out of range (years 1677 to 2262)")]
    TimestampRange {
        /// Where.
        at: RowRef,
        /// The column.
        column: String,
        /// The value, in `unit`s since 1970.
        value: i64,
        /// Its unit.
        unit: TimeUnit,
        /// The timestamp for people: as the file writes it, with its unit (CSV, where the
        /// text is the file's own), or its RFC 3339 rendering followed by the stored value
        /// and unit (Parquet, which stores numbers).
        text: String,
    },
    /// The fixture generator refused the request.
    #[error("failed to generate fixture bars: {0}")]
    Generator(String),
    /// An interval between bars longer than `max-gap` median intervals of trading time.
    #[error(
        "failed to accept a gap in the data: {before} to {after} is {length} of trading time, \
         more than max-gap = {limit} median intervals ({median}); set allow-gaps (--allow-gaps) \
         to accept it, or raise max-gap"
    )]
    Gap {
        /// The bar before the gap (RFC 3339, UTC).
        before: String,
        /// The bar after it.
        after: String,
        /// The gap's length in trading time, in words.
        length: String,
        /// The median interval, in words.
        median: String,
        /// The limit, in median intervals.
        limit: f64,
    },
    /// Too few bars to backtest.
    #[error("{} has {bars} bars, at least {min} are needed", path.display())]
    TooFewBars {
        /// The file.
        path: PathBuf,
        /// Bars found.
        bars: usize,
        /// The minimum.
        min: usize,
    },
    /// More bars than [`MAX_BARS`].
    #[error("{} has {bars} bars, more than the limit of {limit}", path.display())]
    TooManyBars {
        /// The file.
        path: PathBuf,
        /// Bars it holds (for Parquet, as its metadata says).
        bars: usize,
        /// The limit.
        limit: usize,
    },
}

/// The fewest bars a file may hold: the feature warm-up plus a few bars to trade.
pub const MIN_BARS: usize = gauntlet_fixtures::WARMUP + 10;

/// Reads and validates the bars of a CSV or Parquet file.
///
/// # Errors
///
/// [`DataError`], naming the row and column for a bad value.
pub fn load(path: &Path, options: &LoadOptions) -> Result<LoadedBars, DataError> {
    load_then(path, options, |_| ()).map(|(loaded, ())| loaded)
}

/// [`load`], and `consume` run on the close prices: for a strategy that reads only them (a
/// moving-average crossover with the next-close fill, a sweep of them).
///
/// In the common Parquet file (PLAIN pages, as polars, pyarrow and Spark write prices) the
/// calling thread decodes the close prices first and runs `consume` on them while the other
/// threads decode and check the other five columns: on two cores the strategy costs little
/// more than the read. `consume` then sees prices that are all positive and finite but whose
/// rows are not yet checked against the other columns; its result is returned only if every
/// row passes, and dropped with the error otherwise, so `consume` must not act on the world
/// (write files, send orders). For any other file it runs after the checks.
///
/// # Errors
///
/// As [`load`].
pub fn load_then<R>(
    path: &Path,
    options: &LoadOptions,
    consume: impl FnOnce(&[f64]) -> R,
) -> Result<(LoadedBars, R), DataError> {
    let io = |source| DataError::Io {
        path: path.to_owned(),
        source,
    };
    let format = match path.extension().and_then(|e| e.to_str()) {
        Some(e) if e.eq_ignore_ascii_case("csv") => FileFormat::Csv,
        Some(e) if e.eq_ignore_ascii_case("parquet") || e.eq_ignore_ascii_case("pq") => {
            FileFormat::Parquet
        }
        _ => {
            return Err(DataError::UnknownFormat {
                path: path.to_owned(),
            });
        }
    };
    let bytes = std::fs::metadata(path).map_err(io)?.len();
    if bytes > MAX_FILE_BYTES {
        return Err(DataError::TooLarge {
            path: path.to_owned(),
            bytes,
            limit: MAX_FILE_BYTES,
        });
    }
    let parse = |source| DataError::Parse {
        path: path.to_owned(),
        format,
        source,
    };
    let names = &options.columns;
    let mut consume = Consumer::Pending(consume);
    let (bars, timestamps, scanned, line_offset) = match format {
        FileFormat::Csv => {
            let header = csv_header(path).map_err(io)?;
            check_columns(path, names, &header)?;
            let frame = read_csv(path, names).map_err(parse)?;
            let (bars, timestamps, scanned) = frame_bars(frame, options, Some(1), &parse)?;
            (bars, timestamps, scanned, Some(1))
        }
        FileFormat::Parquet => {
            let file = File::open(path).map_err(io)?;
            let mut reader = ParquetReader::new(file.try_clone().map_err(io)?);
            let schema = reader.schema().map_err(parse)?;
            let header: Vec<String> = schema.iter_names().map(|n| n.to_string()).collect();
            check_columns(path, names, &header)?;
            let metadata = reader.get_metadata().map_err(parse)?;
            check_bar_count(path, claimed_rows(metadata, names), MAX_BARS)?;
            let (plain, consumer) = read_plain(&file, metadata, &schema, names, consume);
            consume = consumer;
            if let Some((bars, scanned)) = plain {
                // The common Parquet file: PLAIN pages straight into the bars' columns.
                (bars, TimestampSource::Datetime, Some(scanned), None)
            } else {
                let columns = names.all().iter().map(|s| (*s).to_owned()).collect();
                // One task per column: measured fastest for six columns on two cores
                // (29 ms against 37 ms for polars' default strategy on 1M bars).
                let frame = reader
                    .with_columns(Some(columns))
                    .read_parallel(ParallelStrategy::Columns)
                    .finish()
                    .map_err(parse)?;
                let (bars, timestamps, scanned) = frame_bars(frame, options, None, &parse)?;
                (bars, timestamps, scanned, None)
            }
        }
    };
    let at = |i: usize| row_ref(i, line_offset);
    check_bar_count(path, bars.len(), MAX_BARS)?;
    if bars.len() < MIN_BARS {
        return Err(DataError::TooFewBars {
            path: path.to_owned(),
            bars: bars.len(),
            min: MIN_BARS,
        });
    }
    // One branch-free pass checks every rule on every row and whether the bars are evenly
    // spaced; only when a rule fails do the row-by-row
    // checks run, to name the first bad row and column.
    let scan = scanned.unwrap_or_else(|| scan_rows(&bars));
    if !scan.valid {
        validate(&bars, names, &at).map_err(|e| with_file_text(e, path, names, format))?;
    }
    let gaps = if scan.valid && scan.even {
        Gaps::evenly_spaced(&bars.ts_ns)
    } else {
        Gaps::of(&bars.ts_ns)
    };
    // Every row valid: the consumer's result may be used (or it runs now).
    let result = consume.result(&bars.close);
    let loaded = LoadedBars {
        bars,
        path: path.to_owned(),
        format,
        timestamps,
        gaps,
    };
    Ok((loaded, result))
}

/// A CSV file's own text for the timestamps an order error names (the error keeps RFC 3339
/// text when the file cannot be read again).
fn with_file_text(e: DataError, path: &Path, names: &ColumnNames, format: FileFormat) -> DataError {
    let DataError::Order {
        at,
        column,
        value,
        previous,
        what,
    } = e
    else {
        return e;
    };
    let text = (format == FileFormat::Csv)
        .then(|| {
            at.line
                .and_then(|line| csv_field(path, &names.timestamp, line))
        })
        .flatten();
    let (value, previous) = match text {
        Some((prev, this)) => (format!("{this:?}"), format!("{prev:?}")),
        None => (value, previous),
    };
    DataError::Order {
        at,
        column,
        value,
        previous,
        what,
    }
}

/// The field `column` on CSV line `line` (1-based) and on the line before it.
fn csv_field(path: &Path, column: &str, line: usize) -> Option<(String, String)> {
    use std::io::BufRead;
    let reader = std::io::BufReader::new(File::open(path).ok()?);
    let mut lines = reader.lines();
    let header = lines.next()?.ok()?;
    let index = header
        .trim_start_matches('\u{feff}')
        .split(',')
        .position(|h| h.trim().trim_matches('"') == column)?;
    let field = |l: &str| {
        l.trim_end_matches('\r')
            .split(',')
            .nth(index)
            .map(|f| f.trim().trim_matches('"').to_owned())
    };
    let mut lines = lines.skip(line.checked_sub(3)?);
    let prev = lines.next()?.ok()?;
    let this = lines.next()?.ok()?;
    Some((field(&prev)?, field(&this)?))
}

/// [`DataError::TooManyBars`] when `bars` exceeds `limit`.
fn check_bar_count(path: &Path, bars: usize, limit: usize) -> Result<(), DataError> {
    if bars > limit {
        return Err(DataError::TooManyBars {
            path: path.to_owned(),
            bars,
            limit,
        });
    }
    Ok(())
}

/// Where row `i` (0-based) sits, the header on line `line_offset` (CSV) or no lines.
fn row_ref(i: usize, line_offset: Option<usize>) -> RowRef {
    RowRef {
        row: i + 1,
        line: line_offset.map(|o| i + 1 + o),
    }
}

/// The bars of a frame polars read, with the row checks' findings when they were made on the
/// way.
fn frame_bars(
    frame: polars::prelude::DataFrame,
    options: &LoadOptions,
    line_offset: Option<usize>,
    parse: &impl Fn(PolarsError) -> DataError,
) -> Result<(Bars, TimestampSource, Option<check::RowScan>), DataError> {
    let names = &options.columns;
    if let Some(chunks) = no_null_columns(&frame, names) {
        // polars' buffers become the bars' columns (no copy once the frame is gone, for a
        // single row group; one copy, checked on the way, otherwise).
        drop(frame);
        let (bars, scanned) = chunks.into_bars();
        return Ok((bars, TimestampSource::Datetime, scanned));
    }
    let at = |i: usize| row_ref(i, line_offset);
    let column = |name: &str| -> Result<&Series, DataError> {
        frame
            .column(name)
            .map(|c| c.as_materialized_series())
            .map_err(parse)
    };
    let (ts_ns, timestamps) = timestamps(column(&names.timestamp)?, names, options, &at)?;
    let [open, high, low, close, volume] = names
        .prices()
        .map(|name| column(name).and_then(|series| floats(series, name, &at)));
    let bars = Bars {
        ts_ns,
        open: open?,
        high: high?,
        low: low?,
        close: close?,
        volume: volume?,
    };
    Ok((bars, timestamps, None))
}
