//! The one error type of this crate.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// A report format, named in [`ReportError`] so the caller knows which output broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Format {
    /// JUnit XML ([`crate::junit`]).
    Junit,
    /// The JSON contract ([`crate::json`]).
    Json,
    /// The GitHub-flavoured Markdown summary ([`crate::markdown`]).
    Markdown,
    /// The human terminal summary ([`crate::terminal`]).
    Terminal,
    /// The self-contained HTML page ([`crate::html`]).
    Html,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Junit => "JUnit XML",
            Format::Json => "JSON",
            Format::Markdown => "Markdown",
            Format::Terminal => "terminal",
            Format::Html => "HTML",
        })
    }
}

/// Why rendering, reading or persisting a report failed.
///
/// `Display` never repeats the underlying cause; walk [`std::error::Error::source`]
/// for it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// The writer a report was rendered into returned an I/O error.
    #[error("failed to write {format} report")]
    Write {
        /// The report being written.
        format: Format,
        /// The writer's error.
        source: io::Error,
    },
    /// quick-junit failed to serialize the JUnit XML report (an I/O error underneath, in practice).
    #[error("failed to write JUnit XML report")]
    Junit(#[source] quick_junit::SerializeError),
    /// The reader a JSON report was read from returned an I/O error or invalid UTF-8.
    #[error("failed to read JSON report")]
    Read(#[source] io::Error),
    /// The JSON report is not valid JSON or does not match the schema it claims.
    #[error("failed to parse JSON report")]
    Parse(#[source] serde_json::Error),
    /// The JSON report carries a `schema_version` this build does not read.
    #[error(
        "failed to read JSON report: schema_version {found} is not supported \
         (this build reads schema_version {oldest} to {supported})"
    )]
    UnsupportedSchema {
        /// The version found in the report.
        found: u64,
        /// The oldest version this build reads ([`crate::MIN_SCHEMA_VERSION`]).
        oldest: u32,
        /// The newest version this build reads ([`crate::SCHEMA_VERSION`]).
        supported: u32,
    },
    /// The report directory could not be created.
    #[error("failed to create report directory {}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The file system's error.
        source: io::Error,
    },
    /// A probe file could not be written into, or removed from, the report directory.
    #[error("failed to {action} report directory {}", path.display())]
    Probe {
        /// What failed: `write into` or `clean up a probe file in`.
        action: &'static str,
        /// The directory.
        path: PathBuf,
        /// The file system's error.
        source: io::Error,
    },
    /// A report file could not be created, flushed or moved into place.
    #[error("failed to write report file {}", path.display())]
    Persist {
        /// The final path of the file.
        path: PathBuf,
        /// The file system's error.
        source: io::Error,
    },
}
