//! Writing the report files of a run into a directory, each atomically.

use std::fs::{self, File};
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::process;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{ReportError, RunReport, html, json, junit, markdown};

/// File name of the JUnit XML report written by [`write_all`].
pub const JUNIT_FILE: &str = "junit.xml";
/// File name of the JSON report written by [`write_all`].
pub const JSON_FILE: &str = "report.json";
/// File name of the Markdown summary written by [`write_all`].
pub const MARKDOWN_FILE: &str = "summary.md";
/// File name of the self-contained HTML page written by [`write_all`].
pub const HTML_FILE: &str = "report.html";

/// Creates `dir` and proves a file can be written there, so that a run fails before any work
/// when its reports could not be written afterwards.
///
/// # Errors
/// [`ReportError::CreateDir`] or [`ReportError::Probe`], naming the directory.
pub fn check_dir(dir: &Path) -> Result<(), ReportError> {
    fs::create_dir_all(dir).map_err(|source| ReportError::CreateDir {
        path: dir.to_owned(),
        source,
    })?;
    let probe = dir.join(format!(".gauntlet-write-probe-{}", process::id()));
    let failed = |action| {
        move |source| ReportError::Probe {
            action,
            path: dir.to_owned(),
            source,
        }
    };
    fs::write(&probe, b"").map_err(failed("write into"))?;
    fs::remove_file(&probe).map_err(failed("clean up a probe file in"))
}

/// Creates `dir` (and its parents) and writes [`JUNIT_FILE`], [`JSON_FILE`],
/// [`MARKDOWN_FILE`] and [`HTML_FILE`] into it, returning their paths in that order.
///
/// Each file is rendered into a temporary file in `dir` and then renamed over
/// its final name, so a reader (or a CI upload after a crash) sees either the
/// previous file or the complete new one, never half of one. A failure leaves
/// no temporary file behind; files already written stay.
///
/// # Errors
///
/// [`ReportError::CreateDir`] when `dir` cannot be created,
/// [`ReportError::Persist`] when a file cannot be created, flushed or renamed,
/// and the renderers' errors.
pub fn write_all(report: &RunReport, dir: &Path) -> Result<Vec<PathBuf>, ReportError> {
    fs::create_dir_all(dir).map_err(|source| ReportError::CreateDir {
        path: dir.to_owned(),
        source,
    })?;
    Ok(vec![
        write_atomic(&dir.join(JUNIT_FILE), |out| junit::write(report, out))?,
        write_atomic(&dir.join(JSON_FILE), |out| json::write(report, out))?,
        write_atomic(&dir.join(MARKDOWN_FILE), |out| markdown::write(report, out))?,
        write_atomic(&dir.join(HTML_FILE), |out| html::write(report, out))?,
    ])
}

fn write_atomic(
    path: &Path,
    render: impl FnOnce(&mut BufWriter<File>) -> Result<(), ReportError>,
) -> Result<PathBuf, ReportError> {
    let temp = temp_path(path);
    let result = persist(path, &temp, render);
    if result.is_err() {
        // Best effort: the error being returned matters more than a failed cleanup.
        let _ = fs::remove_file(&temp);
    }
    result.map(|()| path.to_owned())
}

fn persist(
    path: &Path,
    temp: &Path,
    render: impl FnOnce(&mut BufWriter<File>) -> Result<(), ReportError>,
) -> Result<(), ReportError> {
    let persist_error = |source| ReportError::Persist {
        path: path.to_owned(),
        source,
    };
    // `create_new` so two writers can never share a temporary file.
    let mut out = BufWriter::new(File::create_new(temp).map_err(persist_error)?);
    render(&mut out)?;
    let file = out
        .into_inner()
        .map_err(|e| persist_error(e.into_error()))?;
    // Flush to disk before the rename, or a crash could publish an empty file.
    file.sync_all().map_err(persist_error)?;
    fs::rename(temp, path).map_err(persist_error)
}

/// A hidden name next to `path`, unique within this process and across processes.
fn temp_path(path: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy())
        .unwrap_or_default();
    let unique = NEXT.fetch_add(1, Ordering::Relaxed);
    path.with_file_name(format!(".{name}.{}.{unique}.tmp", process::id()))
}

#[cfg(test)]
mod tests {
    use std::io::{self, Write};

    use super::*;
    use crate::Format;

    #[test]
    fn failed_render_leaves_neither_temp_nor_final_file() {
        let dir = std::env::temp_dir().join(format!("gauntlet-reports-atomic-{}", process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join(MARKDOWN_FILE);

        let error = write_atomic(&path, |out| {
            out.write_all(b"half a rep").unwrap();
            Err(ReportError::Write {
                format: Format::Markdown,
                source: io::Error::other("disk full"),
            })
        })
        .unwrap_err();

        assert!(matches!(error, ReportError::Write { .. }), "{error:?}");
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 0);
        fs::remove_dir_all(dir).unwrap();
    }
}
