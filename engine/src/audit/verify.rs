//! Offline verification of an audit directory: every frame's CRC, the record indices and
//! times, every checkpoint's signature, and every checkpoint's root recomputed from the
//! records. The first problem is named by file, byte offset and record index.
//!
//! Successive checkpoints are consistent by construction when both roots are recomputed from
//! one stream of records (the smaller is a prefix of the larger); a log rewritten between two
//! checkpoints fails the root check of the later one.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use super::checkpoint::{Checkpoint, SignatureError, verifying_key};
use super::merkle::{CompactRange, Hash, leaf_hash};
use super::record::{payload_header, payload_link};
use super::segment::{
    BadFrame, CHECKPOINT_MAGIC, FrameFault, SEGMENT_MAGIC, list_segments, scan_frames,
};
use super::{CHECKPOINT_FILE, PUBLIC_KEY_FILE, hex};

/// What to trust while verifying.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// The log's Ed25519 public key, obtained out of band. Without it the key in the
    /// directory (`audit-key.pub`) is used, which proves integrity against accidents but not
    /// against whoever could rewrite the directory: the report says which was used.
    pub public_key: Option<[u8; 32]>,
}

/// Where the checkpoint key came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeySource {
    /// Given by the caller.
    Pinned,
    /// Read from the directory being verified.
    Directory,
}

/// What a successful verification saw.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VerifyReport {
    /// Records read.
    pub records: u64,
    /// Segment files read.
    pub segments: usize,
    /// Checkpoints whose signature and root were checked.
    pub checkpoints: usize,
    /// The last checkpoint.
    pub latest_checkpoint: Option<Checkpoint>,
    /// Records after the last checkpoint (checked for framing and order, not yet signed).
    pub unsigned_records: u64,
    /// Root over every record read.
    #[serde(with = "hex::serde_bytes32")]
    pub root: Hash,
    /// Where the key came from.
    pub key_source: KeySource,
    /// Torn tails the engine cut off on restart and kept beside the segments.
    pub quarantined: Vec<PathBuf>,
    /// Records pruned after the retention period: their hashes (in `pruned.leaves`) were
    /// checked against the checkpoints, their content is gone.
    pub pruned: u64,
}

/// The first problem found.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// A file could not be read.
    #[error("failed to read `{}`", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// No key was given and the directory holds none.
    #[error("failed to verify: no public key given and `{}` is missing", path.display())]
    NoPublicKey {
        /// Where the key was looked for.
        path: PathBuf,
    },
    /// The key is not a valid Ed25519 key.
    #[error("failed to verify: the public key is not a valid Ed25519 key")]
    BadPublicKey,
    /// A file does not start with its magic bytes.
    #[error("`{}` is not an audit file (bad magic at offset 0)", path.display())]
    BadMagic {
        /// The file.
        path: PathBuf,
    },
    /// A frame is damaged.
    #[error("record {index} at offset {offset} of `{}` is damaged: {fault}", segment.display())]
    BadFrame {
        /// The segment.
        segment: PathBuf,
        /// Byte offset of the frame.
        offset: u64,
        /// The index the record should have had.
        index: u64,
        /// What is wrong.
        fault: FrameFault,
    },
    /// A record is out of place: one before it was removed, or records were reordered.
    #[error("record at offset {offset} of `{}` has index {found}, expected {expected} (a record was removed or reordered)", segment.display())]
    IndexMismatch {
        /// The segment.
        segment: PathBuf,
        /// Byte offset of the frame.
        offset: u64,
        /// The index expected.
        expected: u64,
        /// The index found.
        found: u64,
    },
    /// A record does not link to its predecessor's hash (seen on open, without lookahead):
    /// one of the two was rewritten.
    #[error("record {index} at offset {offset} of `{}` does not link to record {}'s hash: one of the two was altered", segment.display(), index.saturating_sub(1))]
    LinkMismatch {
        /// The segment.
        segment: PathBuf,
        /// Byte offset of the frame.
        offset: u64,
        /// The record whose link does not match.
        index: u64,
    },
    /// A record was rewritten (its CRC may be valid): its successor `next` links to another
    /// hash than the record's own.
    #[error("record {index} at offset {offset} of `{}` was altered: record {next} links to another hash", segment.display())]
    RecordAltered {
        /// The segment.
        segment: PathBuf,
        /// Byte offset of the altered record's frame.
        offset: u64,
        /// The altered record.
        index: u64,
        /// The record whose link exposed it.
        next: u64,
    },
    /// The file of pruned records' hashes is damaged.
    #[error("`{}` (hashes of pruned records) is damaged: {reason}", path.display())]
    PrunedFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A segment does not start where the previous ended.
    #[error("segment `{}` starts at record {found}, expected {expected} (a segment is missing or misnamed)", segment.display())]
    SegmentGap {
        /// The segment.
        segment: PathBuf,
        /// The index expected.
        expected: u64,
        /// The index in its name.
        found: u64,
    },
    /// A record's time is before its predecessor's.
    #[error("record {index} at offset {offset} of `{}` is timed {time_us} µs, before its predecessor's {previous_us} µs", segment.display())]
    TimeWentBack {
        /// The segment.
        segment: PathBuf,
        /// Byte offset of the frame.
        offset: u64,
        /// The record.
        index: u64,
        /// Its time.
        time_us: i64,
        /// The previous record's time.
        previous_us: i64,
    },
    /// The checkpoint file has a damaged frame.
    #[error("checkpoint file is damaged at offset {offset}: {fault}")]
    CheckpointFrame {
        /// Byte offset of the frame.
        offset: u64,
        /// What is wrong.
        fault: FrameFault,
    },
    /// A checkpoint frame is not a checkpoint.
    #[error("checkpoint {number} at offset {offset} is not valid JSON")]
    CheckpointJson {
        /// Its position in the file, from 0.
        number: usize,
        /// Byte offset of the frame.
        offset: u64,
    },
    /// A checkpoint's signature failed: it was forged or altered.
    #[error("checkpoint {number} (size {size}) has an invalid signature")]
    CheckpointSignature {
        /// Its position in the file.
        number: usize,
        /// The size it claims.
        size: u64,
        /// Why.
        #[source]
        source: SignatureError,
    },
    /// A checkpoint covers fewer records than the one before it.
    #[error("checkpoint {number} has size {size}, below the previous checkpoint's {previous}")]
    CheckpointOrder {
        /// Its position.
        number: usize,
        /// Its size.
        size: u64,
        /// The previous size.
        previous: u64,
    },
    /// A checkpoint covers more records than the log holds: records were removed.
    #[error(
        "checkpoint {number} covers {size} records but the log holds {records} (records were removed from the end)"
    )]
    CheckpointBeyondLog {
        /// Its position.
        number: usize,
        /// Its size.
        size: u64,
        /// Records found.
        records: u64,
    },
    /// A signed root does not match the records: one in the range was changed (with its CRC
    /// recomputed), or the checkpoint was forged with the log's key.
    #[error(
        "checkpoint {number} (size {size}) does not match the records: a record in {first}..={last} was altered"
    )]
    RootMismatch {
        /// Its position.
        number: usize,
        /// Its size.
        size: u64,
        /// First record not covered by the previous matching checkpoint.
        first: u64,
        /// Last record it covers.
        last: u64,
    },
}

/// Where a record is.
#[derive(Debug, Clone)]
struct Loc {
    segment: PathBuf,
    offset: u64,
    index: u64,
}

/// A record whose link does not match its predecessor's hash, waiting for the next record
/// to tell whether it or its predecessor was altered.
struct Suspect {
    /// The predecessor (`None` for record 0, whose link must be zeros: then it is the one).
    before: Option<Loc>,
    /// The record with the broken link.
    at: Loc,
    /// Its leaf hash, which the next record's link must match if it is intact.
    leaf: Hash,
}

fn altered_error(altered: Loc) -> VerifyError {
    VerifyError::RecordAltered {
        segment: altered.segment,
        offset: altered.offset,
        index: altered.index,
        next: altered.index + 1,
    }
}

/// Reads every checkpoint of `dir` (none if the file does not exist).
pub(crate) fn read_checkpoints(dir: &Path) -> Result<Vec<(u64, Checkpoint)>, VerifyError> {
    let path = dir.join(CHECKPOINT_FILE);
    let data = match std::fs::read(&path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(VerifyError::Io { path, source }),
    };
    if !data.starts_with(CHECKPOINT_MAGIC) {
        return Err(VerifyError::BadMagic { path });
    }
    let mut out = Vec::new();
    let mut json_err = None;
    let bad =
        scan_frames(
            &data,
            CHECKPOINT_MAGIC.len(),
            |offset, payload| match serde_json::from_slice::<Checkpoint>(payload) {
                Ok(cp) => {
                    out.push((offset, cp));
                    ControlFlow::Continue(())
                }
                Err(_) => {
                    json_err = Some(VerifyError::CheckpointJson {
                        number: out.len(),
                        offset,
                    });
                    ControlFlow::Break(())
                }
            },
        );
    if let Some(e) = json_err {
        return Err(e);
    }
    if let Some(BadFrame { offset, fault }) = bad {
        return Err(VerifyError::CheckpointFrame { offset, fault });
    }
    Ok(out)
}

/// Verifies the audit log in `dir`.
///
/// # Errors
/// The first [`VerifyError`] found, naming the file, offset and record index.
pub fn verify_dir(dir: &Path, options: &VerifyOptions) -> Result<VerifyReport, VerifyError> {
    let (key_bytes, key_source) = match options.public_key {
        Some(k) => (k, KeySource::Pinned),
        None => {
            let path = dir.join(PUBLIC_KEY_FILE);
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(VerifyError::NoPublicKey { path });
                }
                Err(source) => return Err(VerifyError::Io { path, source }),
            };
            let key = hex::decode32(text.trim()).map_err(|_| VerifyError::BadPublicKey)?;
            (key, KeySource::Directory)
        }
    };
    let key = verifying_key(&key_bytes).map_err(|_| VerifyError::BadPublicKey)?;
    let checkpoints = read_checkpoints(dir)?;
    let mut previous = 0;
    for (number, (_, cp)) in checkpoints.iter().enumerate() {
        cp.verify(&key)
            .map_err(|source| VerifyError::CheckpointSignature {
                number,
                size: cp.size,
                source,
            })?;
        if cp.size < previous {
            return Err(VerifyError::CheckpointOrder {
                number,
                size: cp.size,
                previous,
            });
        }
        previous = cp.size;
    }

    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| VerifyError::Io { path, source }
    };
    let segments = list_segments(dir).map_err(io(dir))?;
    let mut range = CompactRange::new();
    let mut next_cp = 0;
    let mut matched_size = 0;
    let mut previous_time = i64::MIN;
    let mut check_checkpoints = |range: &CompactRange, next_cp: &mut usize| {
        while let Some((_, cp)) = checkpoints.get(*next_cp)
            && cp.size == range.len()
        {
            if !super::merkle::ct_eq(&range.root(), &cp.root) {
                return Err(VerifyError::RootMismatch {
                    number: *next_cp,
                    size: cp.size,
                    first: matched_size,
                    last: cp.size.saturating_sub(1),
                });
            }
            matched_size = cp.size;
            *next_cp += 1;
        }
        Ok(())
    };
    check_checkpoints(&range, &mut next_cp)?;
    // The link of each record must be its predecessor's leaf hash. A broken link at record j
    // means j - 1 or j was rewritten; record j + 1's link tells which (a rewritten j breaks
    // j + 1's link too).
    let mut prev_leaf: Hash = [0; 32];
    let mut prev_loc: Option<Loc> = None;
    let mut suspect: Option<Suspect> = None;
    // Pruned records: their hashes stand in for them (a changed hash fails a checkpoint).
    let pruned = super::retention::read_pruned(dir)?;
    for leaf in &pruned {
        range.push(*leaf);
        prev_leaf = *leaf;
        check_checkpoints(&range, &mut next_cp)?;
    }
    let pruned_below = range.len();
    for (first, path) in &segments {
        if *first < pruned_below {
            // Left over from a prune interrupted after its hashes were written; the engine
            // deletes it on its next start. Its records are the hashes above.
            continue;
        }
        if *first != range.len() {
            return Err(VerifyError::SegmentGap {
                segment: path.clone(),
                expected: range.len(),
                found: *first,
            });
        }
        let data = std::fs::read(path).map_err(io(path))?;
        if !data.starts_with(SEGMENT_MAGIC) {
            return Err(VerifyError::BadMagic { path: path.clone() });
        }
        let mut err = None;
        let bad = scan_frames(&data, SEGMENT_MAGIC.len(), |offset, payload| {
            let expected = range.len();
            let problem = match payload_header(payload) {
                None => Some(VerifyError::BadFrame {
                    segment: path.clone(),
                    offset,
                    index: expected,
                    fault: FrameFault::BadLength(payload.len() as u32),
                }),
                Some((index, _)) if index != expected => Some(VerifyError::IndexMismatch {
                    segment: path.clone(),
                    offset,
                    expected,
                    found: index,
                }),
                Some((index, time_us)) if time_us < previous_time => {
                    Some(VerifyError::TimeWentBack {
                        segment: path.clone(),
                        offset,
                        index,
                        time_us,
                        previous_us: previous_time,
                    })
                }
                Some((index, time_us)) => {
                    previous_time = time_us;
                    let leaf = leaf_hash(payload);
                    let link = payload_link(payload);
                    let here = Loc {
                        segment: path.clone(),
                        offset,
                        index,
                    };
                    if let Some(s) = suspect.take() {
                        let altered = if link == Some(s.leaf) {
                            s.before.unwrap_or(s.at)
                        } else {
                            s.at
                        };
                        Some(altered_error(altered))
                    } else {
                        if link != Some(prev_leaf) {
                            suspect = Some(Suspect {
                                before: prev_loc.clone(),
                                at: here.clone(),
                                leaf,
                            });
                        }
                        prev_leaf = leaf;
                        prev_loc = Some(here);
                        range.push(leaf);
                        check_checkpoints(&range, &mut next_cp).err().map(|e| {
                            match suspect.take() {
                                // A broken link explains the root: name the record.
                                Some(s) => altered_error(s.before.unwrap_or(s.at)),
                                None => e,
                            }
                        })
                    }
                }
            };
            match problem {
                Some(e) => {
                    err = Some(e);
                    ControlFlow::Break(())
                }
                None => ControlFlow::Continue(()),
            }
        });
        if let Some(e) = err {
            return Err(e);
        }
        if let Some(BadFrame { offset, fault }) = bad {
            return Err(VerifyError::BadFrame {
                segment: path.clone(),
                offset,
                index: range.len(),
                fault,
            });
        }
    }
    if let Some(s) = suspect {
        // The last record's link is broken and nothing follows: its predecessor changed.
        return Err(altered_error(s.before.unwrap_or(s.at)));
    }
    if let Some((_, cp)) = checkpoints.get(next_cp) {
        return Err(VerifyError::CheckpointBeyondLog {
            number: next_cp,
            size: cp.size,
            records: range.len(),
        });
    }
    let mut quarantined = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
        if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.contains(".torn-"))
        {
            quarantined.push(path);
        }
    }
    quarantined.sort();
    let latest = checkpoints.last().map(|(_, cp)| cp.clone());
    Ok(VerifyReport {
        records: range.len(),
        segments: segments.iter().filter(|(f, _)| *f >= pruned_below).count(),
        checkpoints: checkpoints.len(),
        unsigned_records: range.len() - latest.as_ref().map_or(0, |c| c.size),
        latest_checkpoint: latest,
        root: range.root(),
        key_source,
        quarantined,
        pruned: pruned_below,
    })
}

/// Reads the records of `dir` from index `from`, at most `limit` of them, checking framing
/// only (use [`verify_dir`] for the rest).
///
/// # Errors
/// [`VerifyError::Io`] for an unreadable file; [`VerifyError::BadFrame`] for a damaged frame
/// or a record whose JSON does not parse.
pub fn read_records(
    dir: &Path,
    from: u64,
    limit: usize,
) -> Result<Vec<super::AuditRecord>, VerifyError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| VerifyError::Io { path, source }
    };
    let segments = list_segments(dir).map_err(io(dir))?;
    let mut out = Vec::new();
    for (n, (first, path)) in segments.iter().enumerate() {
        let next_first = segments.get(n + 1).map_or(u64::MAX, |s| s.0);
        if next_first <= from || out.len() >= limit {
            continue;
        }
        let data = std::fs::read(path).map_err(io(path))?;
        let mut index = *first;
        let mut bad_json = None;
        let bad = scan_frames(&data, SEGMENT_MAGIC.len(), |offset, payload| {
            if index >= from && out.len() < limit {
                match super::decode_payload(payload) {
                    Ok(r) => out.push(r),
                    Err(_) => {
                        bad_json = Some(offset);
                        return ControlFlow::Break(());
                    }
                }
            }
            index += 1;
            ControlFlow::Continue(())
        });
        if let Some(offset) = bad_json {
            return Err(VerifyError::BadFrame {
                segment: path.clone(),
                offset,
                index,
                fault: FrameFault::Crc,
            });
        }
        if let Some(BadFrame { offset, fault }) = bad {
            return Err(VerifyError::BadFrame {
                segment: path.clone(),
                offset,
                index,
                fault,
            });
        }
    }
    Ok(out)
}
