//! The audit log's key files and its restart, checked on disk (CMP-AUDIT, CMP-GDPR):
//!
//! - `audit_keys_private`: the signing and pseudonymisation key files may be read by their
//!   owner only, each holds 64 hex digits, and the two keys are distinct and not one byte
//!   repeated. The engine refuses copies that group may read or that are cut short, and makes
//!   new keys `0600`, at random, in a directory it creates.
//! - `audit_log_reopens`: a copy of the log and its keys, the keys written in upper-case hex,
//!   reopens where the log stopped: every record read back, the latest checkpoint's size and
//!   root unchanged, no torn tail, and the copy verifies. Then what a restart after a crash
//!   finds: a half-written last frame is cut and quarantined, a new segment without its
//!   magic dropped and one holding only its magic kept, every record kept; a record edited
//!   under the checkpoint (a flipped byte, a rewrite with a valid CRC) or written twice is
//!   refused, naming the record. And retention (CMP-RETAIN): a copy grown in 4 KiB segments
//!   and pruned as if the retention period had passed keeps every record's place; it reopens
//!   and verifies, the pruned records counted from the hashes the prune kept.
//!
//! Both work on copies in a scratch directory; the target's own files are only read. A key's
//! value never appears in a message.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use gauntlet_engine::audit::{
    Action, AuditConfig, AuditError, AuditEvent, AuditLog, DEFAULT_RETENTION, Outcome, PRUNED_FILE,
    SEGMENT_EXT, VerifyError, VerifyOptions, hex, now_micros, verify_dir,
};
use gauntlet_harness::AuditKeyFiles;

use crate::tamper::{copy_dir, frames, middle_record, scratch, segments};

/// Reads a key file as the checks need it: its permission bits and its 32 bytes. The error
/// names the file, never its content.
fn read_key(what: &str, path: &Path) -> Result<(u32, [u8; 32]), String> {
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("the {what} key file `{}`: {e}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("the {what} key file `{}`: {e}", path.display()))?;
    let key = hex::decode32(text.trim()).map_err(|_| {
        format!(
            "the {what} key file `{}` does not hold 64 hex digits",
            path.display()
        )
    })?;
    Ok((mode, key))
}

/// Checks one pair of key files: owner-only, distinct, not one repeated byte.
fn check_pair(files: &AuditKeyFiles) -> Result<([u8; 32], [u8; 32]), String> {
    let mut keys = Vec::new();
    for (what, path) in [("signing", &files.signing), ("pseudonym", &files.pseudonym)] {
        let (mode, key) = read_key(what, path)?;
        if mode & 0o077 != 0 {
            return Err(format!(
                "the {what} key file `{}` has mode {mode:o}: group or others may access it (0600 expected)",
                path.display()
            ));
        }
        if key.iter().all(|b| *b == key[0]) {
            return Err(format!(
                "the {what} key in `{}` is one byte repeated 32 times: not a random key",
                path.display()
            ));
        }
        keys.push(key);
    }
    if keys[0] == keys[1] {
        return Err("the signing and pseudonym key files hold the same key".to_owned());
    }
    Ok((keys[0], keys[1]))
}

fn config(dir: &Path, keys: &AuditKeyFiles) -> AuditConfig {
    let mut c = AuditConfig::new(dir, dir);
    c.signing_key_file.clone_from(&keys.signing);
    c.pseudonym_key_file.clone_from(&keys.pseudonym);
    c
}

/// Writes `bytes` to a new file of mode `mode`.
fn write_key(path: &Path, text: &str, mode: u32) -> Result<(), String> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| format!("failed to write `{}`: {e}", path.display()))
}

/// Opens a log on `dir` with `keys` expecting a refusal whose message holds `expect`.
async fn refused(dir: &Path, keys: &AuditKeyFiles, why: &str, expect: &str) -> Result<(), String> {
    match AuditLog::open(&config(dir, keys)) {
        Ok(log) => {
            log.close().await;
            Err(format!("the engine opened its audit log with {why}"))
        }
        Err(e) if e.to_string().contains(expect) => Ok(()),
        Err(e) => Err(format!(
            "with {why} the engine refused its audit log for another reason: {e}"
        )),
    }
}

/// `audit_keys_private`. `Ok` says what was checked, `Err` what failed.
///
/// # Errors
/// A message naming the file and the check.
pub async fn keys_check(files: &AuditKeyFiles) -> Result<String, String> {
    let (signing, pseudonym) = check_pair(files)?;
    let scratch = scratch("gauntlet-audit-keys-")?;
    let copy = |name: &str, text: &str, mode: u32| -> Result<PathBuf, String> {
        let path = scratch.path().join(name);
        write_key(&path, text, mode)?;
        Ok(path)
    };
    let line = |key: &[u8; 32]| format!("{}\n", hex::encode(key));
    let pseudonym_copy = copy("pseudonym.key", &line(&pseudonym), 0o600)?;
    // A copy of the signing key group may read: refused, naming the mode.
    let wide = AuditKeyFiles {
        signing: copy("signing-0640.key", &line(&signing), 0o640)?,
        pseudonym: pseudonym_copy.clone(),
    };
    refused(
        &scratch.path().join("log-wide"),
        &wide,
        "a signing key file of mode 0640",
        "mode 640",
    )
    .await?;
    // A key cut short by one digit: refused, naming the format.
    let mut short = line(&signing);
    short.truncate(63);
    let cut = AuditKeyFiles {
        signing: copy("signing-short.key", &short, 0o600)?,
        pseudonym: pseudonym_copy,
    };
    refused(
        &scratch.path().join("log-short"),
        &cut,
        "a signing key of 63 hex digits",
        "64 hex digits",
    )
    .await?;
    // A log started with no key files: the engine makes both, in a directory it creates.
    let fresh = AuditKeyFiles {
        signing: scratch.path().join("new/keys/signing.key"),
        pseudonym: scratch.path().join("new/keys/pseudonym.key"),
    };
    let log = AuditLog::open(&config(&scratch.path().join("new/log"), &fresh))
        .map_err(|e| format!("the engine failed to start a log with new keys: {e}"))?;
    log.close().await;
    let (new_signing, new_pseudonym) =
        check_pair(&fresh).map_err(|e| format!("keys the engine made: {e}"))?;
    if new_signing == signing || new_pseudonym == pseudonym {
        return Err(
            "a new log got the same key as the run's log: keys are not drawn at random".to_owned(),
        );
    }
    Ok(format!(
        "`{}` and `{}`: mode 0600, distinct random keys; a 0640 copy and a 63-digit copy refused; new keys made 0600 at random",
        files.signing.display(),
        files.pseudonym.display()
    ))
}

/// `audit_log_reopens`: a copy of the log in `dir` with copies of `files` (in upper-case hex)
/// reopens where the log stopped. `Ok` says what was checked, `Err` what failed.
///
/// # Errors
/// A message naming what did not match.
pub async fn reopen_check(dir: &Path, files: &AuditKeyFiles) -> Result<String, String> {
    let (signing, pseudonym) = check_pair(files)?;
    let options = VerifyOptions { public_key: None };
    let before = verify_dir(dir, &options).map_err(|e| {
        format!(
            "the log in `{}` does not verify as it is: {e}",
            dir.display()
        )
    })?;
    let scratch = scratch("gauntlet-audit-reopen-")?;
    let log_copy = scratch.path().join("log");
    copy_dir(dir, &log_copy).map_err(|e| format!("failed to copy `{}`: {e}", dir.display()))?;
    let upper = |key: &[u8; 32]| format!("{}\n", hex::encode(key).to_uppercase());
    let keys = AuditKeyFiles {
        signing: scratch.path().join("signing.key"),
        pseudonym: scratch.path().join("pseudonym.key"),
    };
    write_key(&keys.signing, &upper(&signing), 0o600)?;
    write_key(&keys.pseudonym, &upper(&pseudonym), 0o600)?;
    let log = AuditLog::open(&config(&log_copy, &keys)).map_err(|e| {
        format!("a copy of the log with its keys in upper-case hex failed to reopen: {e}")
    })?;
    let records = log.len();
    let checkpoint = log.latest_checkpoint();
    let torn = log.recovery().torn.len();
    log.close().await;
    let expected = before.latest_checkpoint.as_ref().map(|c| (c.size, c.root));
    let got = checkpoint.as_ref().map(|c| (c.size, c.root));
    if records != before.records {
        return Err(format!(
            "the reopened copy holds {records} records; the log holds {}",
            before.records
        ));
    }
    if torn != 0 {
        return Err(format!(
            "the reopened copy cut {torn} torn tail(s) off a log that verified whole"
        ));
    }
    if got != expected {
        return Err(format!(
            "the reopened copy's latest checkpoint is {}; the log's is {}",
            describe(got),
            describe(expected)
        ));
    }
    verify_dir(&log_copy, &options)
        .map_err(|e| format!("the reopened copy does not verify: {e}"))?;
    let crashes = crash_check(dir, scratch.path(), &keys, records).await?;
    let pruned = prune_check(dir, scratch.path(), &keys).await?;
    Ok(format!(
        "a copy of `{}` reopened with its keys in upper-case hex: {records} records, latest checkpoint {} unchanged, no torn tail, verifies; {crashes}; {pruned}",
        dir.display(),
        describe(got)
    ))
}

/// A copy of the log in `dir`, grown by 64 order intents in 4 KiB segments (which must then
/// verify across every segment), pruned as if the retention period (plus a year) had passed:
/// `prune_as_of` enforces the retention against the clock it is given, as a replay of a
/// retention decision does. Every segment but the
/// active one loses its records' content, never their place: the copy must reopen with every
/// record and verify, the pruned ones counted from the hashes the prune kept in
/// `pruned.leaves`.
async fn prune_check(dir: &Path, scratch: &Path, keys: &AuditKeyFiles) -> Result<String, String> {
    let copy = scratch.join("pruned");
    copy_dir(dir, &copy).map_err(|e| format!("failed to copy `{}`: {e}", dir.display()))?;
    let mut small = config(&copy, keys);
    small.segment_bytes = 4096;
    let log = AuditLog::open(&small)
        .map_err(|e| format!("a copy of the log failed to reopen with 4 KiB segments: {e}"))?;
    for i in 0..64 {
        let mut event = AuditEvent::new("gauntlet-compliance", Action::OrderIntent, Outcome::Ok);
        event.request_id = Some(format!("prune-{i}"));
        log.record(event)
            .map_err(|e| format!("the copy refused order intent {i}: {e}"))?;
    }
    // Written, rotated and signed before the prune looks at the segments.
    if let Err(e) = log.checkpoint_now().await {
        log.close().await;
        return Err(format!("the copy failed to checkpoint 64 new records: {e}"));
    }
    // Before the prune, every segment is read: the records and their signed root span them.
    let grown = log.len();
    match verify_dir(&copy, &VerifyOptions { public_key: None }) {
        Ok(v) if v.records == grown && v.segments > 1 && v.unsigned_records == 0 => {}
        other => {
            log.close().await;
            return Err(format!(
                "the copy of {grown} records in 4 KiB segments, all signed, before its prune: \
                 the verifier said {}",
                match other {
                    Ok(v) => format!(
                        "{} records in {} segments, {} unsigned",
                        v.records, v.segments, v.unsigned_records
                    ),
                    Err(e) => e.to_string(),
                }
            ));
        }
    }
    let later = i64::try_from(DEFAULT_RETENTION.as_micros())
        .unwrap_or(i64::MAX)
        .saturating_add(now_micros())
        .saturating_add(31_557_600_000_000);
    let report = log.prune_as_of("gauntlet-compliance", later, None).await;
    let records = log.len();
    log.close().await;
    let report = report.map_err(|e| {
        format!("a prune past the retention period failed on a copy of the log: {e}")
    })?;
    if report.pruned_below == 0 || report.pruned_segments.is_empty() {
        return Err(format!(
            "a prune past the retention period removed nothing from a copy of {records} records in 4 KiB segments"
        ));
    }
    if !copy.join(PRUNED_FILE).is_file() {
        return Err(format!(
            "a prune of records 0..{} left no `{PRUNED_FILE}` with their hashes",
            report.pruned_below
        ));
    }
    let reopened = AuditLog::open(&config(&copy, keys))
        .map_err(|e| format!("a pruned copy of the log failed to reopen: {e}"))?;
    let (found, torn) = (reopened.len(), reopened.recovery().torn.len());
    reopened.close().await;
    if found != records || torn != 0 {
        return Err(format!(
            "a pruned copy reopened with {found} records (not {records}) and cut {torn} torn tail(s)"
        ));
    }
    let verified = verify_dir(&copy, &VerifyOptions { public_key: None })
        .map_err(|e| format!("a pruned copy of the log does not verify: {e}"))?;
    if verified.records != records || verified.pruned != report.pruned_below {
        return Err(format!(
            "a pruned copy verifies {} records, {} of them pruned; the prune left {records}, {} pruned",
            verified.records, verified.pruned, report.pruned_below
        ));
    }
    Ok(format!(
        "a copy pruned past the retention period (records 0..{} to their hashes, {} segments deleted) reopens with its {records} records and verifies",
        report.pruned_below,
        report.pruned_segments.len()
    ))
}

/// What a restart after a crash finds, on more copies of the log in `dir` (`records` records,
/// all under its latest checkpoint): a half-written frame at the end of the last segment is cut
/// off and quarantined, a new segment whose magic never reached the disk is dropped, and the
/// log reopens with every record; a record edited under the checkpoint (a flipped byte, or a
/// rewrite with a valid CRC) or one written twice is no crash, and the log refuses to open,
/// naming the record.
async fn crash_check(
    dir: &Path,
    scratch: &Path,
    keys: &AuditKeyFiles,
    records: u64,
) -> Result<String, String> {
    let copy = |name: &str| -> Result<PathBuf, String> {
        let to = scratch.join(name);
        copy_dir(dir, &to).map_err(|e| format!("failed to copy `{}`: {e}", dir.display()))?;
        Ok(to)
    };
    let last_segment = |log: &Path| -> Result<PathBuf, String> {
        segments(log)?
            .pop()
            .ok_or_else(|| format!("`{}` holds no segment", log.display()))
    };
    let mut said = Vec::new();

    // 1. A torn tail: the header of a 16-byte frame and 2 of its bytes.
    let torn = copy("crash-torn")?;
    let segment = last_segment(&torn)?;
    let length = file_len(&segment)?;
    append(&segment, &[16, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef, 1, 2])?;
    reopens(&torn, keys, records, "a half-written frame", |t| {
        t.offset == length && t.index == Some(records) && t.bytes == 10 && t.file == segment
    })
    .await?;
    if file_len(&segment)? != length {
        return Err(format!(
            "after a half-written frame was cut, `{}` is {} bytes, not the {length} it had",
            segment.display(),
            file_len(&segment)?
        ));
    }
    said.push(format!(
        "a half-written frame at offset {length} cut and quarantined"
    ));

    // 2. A new segment whose 8-byte magic never reached the disk.
    let empty = copy("crash-empty")?;
    let new_segment = empty.join(format!("{records:020}.{SEGMENT_EXT}"));
    append(&new_segment, b"GAU")?;
    reopens(&empty, keys, records, "a new segment of 3 bytes", |t| {
        t.offset == 0 && t.index.is_none() && t.bytes == 3 && t.file == new_segment
    })
    .await?;
    if new_segment.exists() {
        return Err(format!(
            "`{}`, a new segment of 3 bytes, was left in the log",
            new_segment.display()
        ));
    }
    said.push("a new segment without its magic dropped".to_owned());

    // 3. A new segment that holds its magic and nothing more (a crash right after a rotation)
    // is a segment, not a torn tail: kept, and nothing cut.
    let rotated = copy("crash-rotated")?;
    let magic = std::fs::read(last_segment(&rotated)?)
        .map_err(|e| format!("failed to read a segment of `{}`: {e}", rotated.display()))?;
    let new_segment = rotated.join(format!("{records:020}.{SEGMENT_EXT}"));
    append(&new_segment, magic.get(..8).unwrap_or_default())?;
    let log = AuditLog::open(&config(&rotated, keys))
        .map_err(|e| format!("after a rotation the log failed to reopen: {e}"))?;
    let (found, torn) = (log.len(), log.recovery().torn.len());
    log.close().await;
    if found != records || torn != 0 || !new_segment.is_file() {
        return Err(format!(
            "with a new segment holding only its magic the log reopened with {found} records (not {records}), cut {torn} torn tail(s), and {} the segment",
            if new_segment.is_file() {
                "kept"
            } else {
                "dropped"
            }
        ));
    }
    said.push("a new segment holding only its magic kept".to_owned());

    // 4–6. Edits no crash explains: each refused, naming the record. They need a record with
    // a successor in its segment; a log that short says so.
    let Ok(middle) = middle_record(dir) else {
        said.push(format!(
            "no segment holds three records ({records} in all): edits not tried"
        ));
        return Ok(said.join("; "));
    };
    let (offset, index) = (middle.offset, middle.index);
    let flipped = copy("crash-flipped")?;
    write(&flipped.join(&middle.name), &middle.flipped())?;
    refuses(&flipped, keys, &format!("record {index} with a flipped byte"), |e| {
        matches!(e, VerifyError::BadFrame { index: i, offset: o, .. } if *i == index && *o == offset as u64)
    })
    .await?;
    let rewritten = copy("crash-rewritten")?;
    write(&rewritten.join(&middle.name), &middle.rewritten()?)?;
    refuses(
        &rewritten,
        keys,
        &format!("record {index} rewritten with a valid CRC"),
        |e| matches!(e, VerifyError::LinkMismatch { index: i, .. } if *i == index + 1),
    )
    .await?;
    let twice = copy("crash-twice")?;
    let segment = last_segment(&twice)?;
    let tail = std::fs::read(&segment)
        .map_err(|e| format!("failed to read `{}`: {e}", segment.display()))?;
    let &(last, last_len) = frames(&tail)
        .last()
        .ok_or_else(|| format!("`{}` holds no record", segment.display()))?;
    append(&segment, &tail[last..last + 8 + last_len])?;
    refuses(
        &twice,
        keys,
        &format!("record {} written twice", records - 1),
        |e| {
            matches!(e, VerifyError::IndexMismatch { expected, found, .. } if *expected == records && *found + 1 == records)
        },
    )
    .await?;
    said.push(format!(
        "record {index} with a flipped byte, record {index} rewritten with a valid CRC and record {} written twice refused",
        records - 1
    ));
    Ok(said.join("; "))
}

/// Opens the log in `dir` expecting it to recover from one torn tail that `expected` accepts,
/// with `records` records.
async fn reopens(
    dir: &Path,
    keys: &AuditKeyFiles,
    records: u64,
    what: &str,
    expected: impl Fn(&gauntlet_engine::audit::TornTail) -> bool,
) -> Result<(), String> {
    let log = AuditLog::open(&config(dir, keys))
        .map_err(|e| format!("after {what} the log failed to reopen: {e}"))?;
    let found = log.len();
    let torn = log.recovery().torn.clone();
    log.close().await;
    if found != records {
        return Err(format!(
            "after {what} the log reopened with {found} records, not {records}"
        ));
    }
    match torn.as_slice() {
        [t] if expected(t) && t.quarantine.is_file() => Ok(()),
        other => Err(format!(
            "after {what} the log reopened cutting {}",
            if other.is_empty() {
                "no torn tail".to_owned()
            } else {
                other
                    .iter()
                    .map(|t| {
                        format!(
                            "{} bytes at offset {} of `{}` (record {:?}, quarantined in `{}`)",
                            t.bytes,
                            t.offset,
                            t.file.display(),
                            t.index,
                            t.quarantine.display()
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        )),
    }
}

/// Opens the log in `dir` expecting a refusal that `expected` accepts.
async fn refuses(
    dir: &Path,
    keys: &AuditKeyFiles,
    what: &str,
    expected: impl Fn(&VerifyError) -> bool,
) -> Result<(), String> {
    match AuditLog::open(&config(dir, keys)) {
        Ok(log) => {
            log.close().await;
            Err(format!("the log opened with {what}"))
        }
        Err(AuditError::Corrupt(e)) if expected(&e) => Ok(()),
        Err(e) => Err(format!(
            "with {what} the log was refused for another reason: {e}"
        )),
    }
}

fn file_len(path: &Path) -> Result<u64, String> {
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|e| format!("failed to read `{}`: {e}", path.display()))
}

fn append(path: &Path, bytes: &[u8]) -> Result<(), String> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(bytes))
        .map_err(|e| format!("failed to write `{}`: {e}", path.display()))
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), String> {
    std::fs::write(path, bytes).map_err(|e| format!("failed to write `{}`: {e}", path.display()))
}

fn describe(checkpoint: Option<(u64, [u8; 32])>) -> String {
    match checkpoint {
        Some((size, root)) => format!("size {size}, root {}", hex::encode(&root)),
        None => "none".to_owned(),
    }
}
