//! Columns of a polars frame to the bars' columns: CSV headers, typed reads with a text
//! fallback, floats and timestamps of every supported kind, each bad value named.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, NaiveDateTime};
use polars::prelude::{
    CsvReadOptions, DataFrame, DataType, Field, PolarsError, Schema, SerReader, Series,
};

use super::{ColumnNames, DataError, LoadOptions, RowRef, TimeUnit, TimestampSource};

/// The header fields of a CSV file (comma-separated, quotes stripped).
pub(super) fn csv_header(path: &Path) -> std::io::Result<Vec<String>> {
    let mut line = String::new();
    BufReader::new(File::open(path)?).read_line(&mut line)?;
    Ok(line
        .trim_end_matches(['\r', '\n'])
        .trim_start_matches('\u{feff}')
        .split(',')
        .map(|f| f.trim().trim_matches('"').to_owned())
        .collect())
}

pub(super) fn check_columns(
    path: &Path,
    names: &ColumnNames,
    header: &[String],
) -> Result<(), DataError> {
    if header.iter().all(|h| h.is_empty()) {
        return Err(DataError::Empty {
            path: path.to_owned(),
        });
    }
    for name in names.all() {
        if !header.iter().any(|h| h == name) {
            return Err(DataError::MissingColumn {
                column: name.to_owned(),
                path: path.to_owned(),
                available: header.join(", "),
            });
        }
    }
    Ok(())
}

/// Reads the six columns; prices as Float64 straight away. When a value does not parse, the
/// file is read again with every column as text, so the loader can name the row.
pub(super) fn read_csv(path: &Path, names: &ColumnNames) -> Result<DataFrame, PolarsError> {
    let columns: Arc<[_]> = names.all().iter().map(|s| (*s).into()).collect();
    let floats: Schema = names
        .prices()
        .iter()
        .map(|n| Field::new((*n).into(), DataType::Float64))
        .collect();
    let typed = CsvReadOptions::default()
        .with_has_header(true)
        .with_columns(Some(columns.clone()))
        .with_schema_overwrite(Some(Arc::new(floats)))
        .try_into_reader_with_file_path(Some(path.to_owned()))?
        .finish();
    match typed {
        Ok(frame) => Ok(frame),
        Err(_) => CsvReadOptions::default()
            .with_has_header(true)
            .with_columns(Some(columns))
            .with_infer_schema_length(Some(0))
            .try_into_reader_with_file_path(Some(path.to_owned()))?
            .finish(),
    }
}

pub(super) fn floats(
    series: &Series,
    name: &str,
    at: &impl Fn(usize) -> RowRef,
) -> Result<Vec<f64>, DataError> {
    let missing = |i| DataError::Missing {
        at: at(i),
        column: name.to_owned(),
    };
    let dtype = series.dtype();
    if dtype.is_string() {
        let text = series.str().map_err(|_| column_type(name, dtype))?;
        return text
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let v = v.ok_or_else(|| missing(i))?;
                v.trim().parse::<f64>().map_err(|_| DataError::Unparsable {
                    at: at(i),
                    column: name.to_owned(),
                    text: v.to_owned(),
                    expected: "a number",
                })
            })
            .collect();
    }
    if !dtype.is_primitive_numeric() {
        return Err(column_type(name, dtype));
    }
    let cast;
    let values = if *dtype == DataType::Float64 {
        series.f64().map_err(|_| column_type(name, dtype))?
    } else {
        cast = series
            .cast(&DataType::Float64)
            .map_err(|_| column_type(name, dtype))?;
        cast.f64().map_err(|_| column_type(name, dtype))?
    };
    if values.null_count() == 0 {
        let mut out = Vec::with_capacity(values.len());
        for chunk in values.downcast_iter() {
            out.extend_from_slice(chunk.values());
        }
        return Ok(out);
    }
    values
        .iter()
        .enumerate()
        .map(|(i, v)| v.ok_or_else(|| missing(i)))
        .collect()
}

fn column_type(name: &str, dtype: &DataType) -> DataError {
    DataError::ColumnType {
        column: name.to_owned(),
        dtype: dtype.to_string(),
        expected: "a number",
    }
}

pub(super) fn timestamps(
    series: &Series,
    names: &ColumnNames,
    options: &LoadOptions,
    at: &impl Fn(usize) -> RowRef,
) -> Result<(Vec<i64>, TimestampSource), DataError> {
    let name = &names.timestamp;
    let missing = |i| DataError::Missing {
        at: at(i),
        column: name.clone(),
    };
    let dtype = series.dtype().clone();
    if let DataType::Datetime(unit, _) = &dtype {
        let per = match unit {
            polars::prelude::TimeUnit::Nanoseconds => 1,
            polars::prelude::TimeUnit::Microseconds => 1_000,
            polars::prelude::TimeUnit::Milliseconds => 1_000_000,
        };
        let unit = match unit {
            polars::prelude::TimeUnit::Nanoseconds => TimeUnit::Nanos,
            polars::prelude::TimeUnit::Microseconds => TimeUnit::Micros,
            polars::prelude::TimeUnit::Milliseconds => TimeUnit::Millis,
        };
        let physical = series
            .datetime()
            .map_err(|_| datetime_type(name, &dtype))?
            .physical();
        let ns = if physical.null_count() == 0 && per == 1 {
            // Nanoseconds already: nothing to scale, nothing that can overflow.
            let mut out = Vec::with_capacity(physical.len());
            for chunk in physical.downcast_iter() {
                out.extend_from_slice(chunk.values());
            }
            out
        } else if physical.null_count() == 0 {
            let mut out = Vec::with_capacity(physical.len());
            for chunk in physical.downcast_iter() {
                for &v in chunk.values().iter() {
                    let i = out.len();
                    out.push(scale(v, per).ok_or_else(|| range_error(at(i), name, v, unit))?);
                }
            }
            out
        } else {
            physical
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let v = v.ok_or_else(|| missing(i))?;
                    scale(v, per).ok_or_else(|| range_error(at(i), name, v, unit))
                })
                .collect::<Result<_, _>>()?
        };
        return Ok((ns, TimestampSource::Datetime));
    }
    if dtype.is_integer() {
        let ints = series
            .cast(&DataType::Int64)
            .map_err(|_| datetime_type(name, &dtype))?;
        let ints = ints.i64().map_err(|_| datetime_type(name, &dtype))?;
        let first = ints.iter().flatten().next().unwrap_or(0);
        let (unit, inferred) = match options.time_unit {
            Some(u) => (u, false),
            None => (TimeUnit::infer(first), true),
        };
        let ns = ints
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let v = v.ok_or_else(|| missing(i))?;
                scale(v, unit.nanos()).ok_or_else(|| range_error(at(i), name, v, unit))
            })
            .collect::<Result<_, _>>()?;
        return Ok((ns, TimestampSource::Epoch { unit, inferred }));
    }
    if dtype.is_string() {
        let text = series.str().map_err(|_| datetime_type(name, &dtype))?;
        // A text column of integers: the typed read fell back to text for a bad price.
        let first = text.iter().flatten().next().unwrap_or("");
        if first.trim().parse::<i64>().is_ok() {
            let mut unit = options.time_unit;
            let ns = text
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let v = v.ok_or_else(|| missing(i))?;
                    let n = v.trim().parse::<i64>().map_err(|_| DataError::Unparsable {
                        at: at(i),
                        column: name.clone(),
                        text: v.to_owned(),
                        expected: "an integer epoch timestamp",
                    })?;
                    let u = *unit.get_or_insert_with(|| TimeUnit::infer(n));
                    scale(n, u.nanos()).ok_or_else(|| range_error(at(i), name, n, u))
                })
                .collect::<Result<_, _>>()?;
            let source = TimestampSource::Epoch {
                unit: unit.unwrap_or(TimeUnit::Seconds),
                inferred: options.time_unit.is_none(),
            };
            return Ok((ns, source));
        }
        let ns = text
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let v = v.ok_or_else(|| missing(i))?;
                parse_iso(v.trim()).ok_or_else(|| DataError::Unparsable {
                    at: at(i),
                    column: name.clone(),
                    text: v.to_owned(),
                    expected: "an ISO-8601 timestamp",
                })
            })
            .collect::<Result<_, _>>()?;
        return Ok((ns, TimestampSource::Iso8601));
    }
    Err(datetime_type(name, &dtype))
}

fn datetime_type(name: &str, dtype: &DataType) -> DataError {
    DataError::ColumnType {
        column: name.to_owned(),
        dtype: dtype.to_string(),
        expected: "integer epochs, a datetime or ISO-8601 text",
    }
}

fn range_error(at: RowRef, name: &str, value: i64, unit: TimeUnit) -> DataError {
    // A CSV row has a line and its text is the number shown; a Parquet value is shown as
    // the date it stands for (beyond nanoseconds' years, within chrono's).
    let rfc3339 = at.line.is_none().then(|| rfc3339(value, unit)).flatten();
    let text = match rfc3339 {
        Some(date) => format!("{date} ({value} {unit})"),
        None => format!("{value} {unit}"),
    };
    DataError::TimestampRange {
        at,
        column: name.to_owned(),
        value,
        unit,
        text,
    }
}

/// RFC 3339 text (UTC) of `value` `unit`s since 1970, for the years chrono spans (±262,143),
/// which reach far past Unix nanoseconds' 1677 to 2262.
pub(super) fn rfc3339(value: i64, unit: TimeUnit) -> Option<String> {
    let ns = i128::from(value) * i128::from(unit.nanos());
    let secs = i64::try_from(ns.div_euclid(1_000_000_000)).ok()?;
    let nanos = u32::try_from(ns.rem_euclid(1_000_000_000)).ok()?;
    DateTime::from_timestamp(secs, nanos)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
}

fn scale(value: i64, per: i64) -> Option<i64> {
    value.checked_mul(per)
}

/// Unix nanoseconds of an ISO-8601 timestamp; no offset means UTC.
pub fn parse_iso(text: &str) -> Option<i64> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return t.timestamp_nanos_opt();
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return t.and_utc().timestamp_nanos_opt();
        }
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f%:z", "%Y-%m-%d %H:%M:%S%.f%#z"] {
        if let Ok(t) = DateTime::parse_from_str(text, format) {
            return t.timestamp_nanos_opt();
        }
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .and_then(|t| t.and_utc().timestamp_nanos_opt())
}
