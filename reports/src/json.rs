//! The JSON contract: a [`RunReport`] as pretty-printed JSON, the file CI gates read.

use std::io::{Read, Write};

use serde::Deserialize;

use crate::{Format, MIN_SCHEMA_VERSION, ReportError, RunReport, SCHEMA_VERSION};

/// Writes `report` as pretty-printed JSON followed by a newline.
///
/// # Errors
///
/// [`ReportError::Write`] when `out` fails.
pub fn write(report: &RunReport, mut out: impl Write) -> Result<(), ReportError> {
    let write_error = |source| ReportError::Write {
        format: Format::Json,
        source,
    };
    // A `RunReport` always serializes (string keys, no fallible `Serialize`), so
    // any error here comes from `out` and is an I/O error underneath.
    serde_json::to_writer_pretty(&mut out, report).map_err(|e| write_error(e.into()))?;
    out.write_all(b"\n").map_err(write_error)
}

/// Reads a report written by [`write()`], checking its `schema_version` first so
/// a report from another schema fails with that, not with a confusing field error.
///
/// # Errors
///
/// - [`ReportError::Read`] when `reader` fails or is not UTF-8;
/// - [`ReportError::Parse`] when the text is not JSON, has no numeric
///   `schema_version`, or does not match the schema;
/// - [`ReportError::UnsupportedSchema`] when `schema_version` is outside
///   [`MIN_SCHEMA_VERSION`]`..=`[`SCHEMA_VERSION`]. A report of an older
///   schema comes back upgraded (its `schema_version` set to [`SCHEMA_VERSION`]).
pub fn read(mut reader: impl Read) -> Result<RunReport, ReportError> {
    /// Only the version; serde ignores every other field.
    #[derive(Deserialize)]
    struct Versioned {
        schema_version: u64,
    }

    let mut text = String::new();
    reader
        .read_to_string(&mut text)
        .map_err(ReportError::Read)?;
    let Versioned { schema_version } = serde_json::from_str(&text).map_err(ReportError::Parse)?;
    if !(u64::from(MIN_SCHEMA_VERSION)..=u64::from(SCHEMA_VERSION)).contains(&schema_version) {
        return Err(ReportError::UnsupportedSchema {
            found: schema_version,
            oldest: MIN_SCHEMA_VERSION,
            supported: SCHEMA_VERSION,
        });
    }
    // Older schemas are subsets of this one: read them as this one.
    let mut report: RunReport = serde_json::from_str(&text).map_err(ReportError::Parse)?;
    report.schema_version = SCHEMA_VERSION;
    Ok(report)
}
