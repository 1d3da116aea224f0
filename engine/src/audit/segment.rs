//! Segment files: a magic header, then frames of `len: u32 LE · crc32(payload): u32 LE ·
//! payload`. A segment is named after the index of its first record
//! (`00000000000000000000.seg`), so a missing segment shows as a gap in the indices.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// First bytes of every segment file.
pub const SEGMENT_MAGIC: &[u8; 8] = b"GNTAUDS1";
/// First bytes of the checkpoint file.
pub const CHECKPOINT_MAGIC: &[u8; 8] = b"GNTAUDC1";
/// Bytes of a frame header.
pub const FRAME_HEADER: usize = 8;
/// Largest payload a frame may carry (1 MiB): a longer length is corruption, not a record.
pub const MAX_PAYLOAD: usize = 1 << 20;
/// Extension of segment files.
pub const SEGMENT_EXT: &str = "seg";

/// Appends one frame around `payload` to `out`.
pub(crate) fn encode_frame(payload: &[u8], out: &mut Vec<u8>) {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// What is wrong with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameFault {
    /// The file ends inside the frame.
    Truncated,
    /// The length is 0 or above [`MAX_PAYLOAD`].
    BadLength(u32),
    /// The CRC does not match the payload.
    Crc,
}

impl std::fmt::Display for FrameFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameFault::Truncated => f.write_str("the file ends inside the frame"),
            FrameFault::BadLength(n) => write!(f, "frame length {n} is outside 1..={MAX_PAYLOAD}"),
            FrameFault::Crc => f.write_str("CRC mismatch"),
        }
    }
}

/// A frame that failed, at `offset` (bytes from the start of the file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadFrame {
    /// Byte offset of the frame header in the file.
    pub offset: u64,
    /// What is wrong.
    pub fault: FrameFault,
}

/// Calls `each(offset, payload)` for every good frame of `data` after `header` bytes, and
/// returns the first bad frame, if any (scanning stops there).
pub(crate) fn scan_frames(
    data: &[u8],
    header: usize,
    mut each: impl FnMut(u64, &[u8]) -> std::ops::ControlFlow<()>,
) -> Option<BadFrame> {
    let mut pos = header;
    while pos < data.len() {
        let offset = pos as u64;
        let bad = |fault| Some(BadFrame { offset, fault });
        let Some(head) = data.get(pos..pos + FRAME_HEADER) else {
            return bad(FrameFault::Truncated);
        };
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if len == 0 || len as usize > MAX_PAYLOAD {
            return bad(FrameFault::BadLength(len));
        }
        let start = pos + FRAME_HEADER;
        let Some(payload) = data.get(start..start + len as usize) else {
            return bad(FrameFault::Truncated);
        };
        if crc32fast::hash(payload) != crc {
            return bad(FrameFault::Crc);
        }
        if each(offset, payload).is_break() {
            return None;
        }
        pos = start + len as usize;
    }
    None
}

/// The segment files of `dir` as (first index, path), in index order. Files that do not
/// parse as `<20 digits>.seg` are ignored (quarantined tails, the key, checkpoints).
pub(crate) fn list_segments(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == SEGMENT_EXT)
            && let Some(first) = path
                .file_stem()
                .and_then(|s| s.to_str())
                .filter(|s| s.len() == 20)
                .and_then(|s| s.parse::<u64>().ok())
        {
            out.push((first, path));
        }
    }
    out.sort();
    Ok(out)
}

/// The path of the segment whose first record is `first`.
pub(crate) fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}.{SEGMENT_EXT}"))
}

/// Fsyncs a directory, so a file created or renamed in it survives a crash.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates a new file holding `magic`, durably (file and directory synced).
pub(crate) fn create_with_magic(path: &Path, magic: &[u8; 8]) -> std::io::Result<File> {
    let mut file = OpenOptions::new()
        .create_new(true)
        .read(true)
        .append(true)
        .open(path)?;
    file.write_all(magic)?;
    file.sync_all()?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(file)
}

/// Moves the bytes of `path` from `offset` on into `<path>.torn-<offset>` (kept as evidence)
/// and truncates `path` there, durably. Returns the quarantine file and the bytes moved.
pub(crate) fn quarantine_tail(path: &Path, offset: u64) -> std::io::Result<(PathBuf, u64)> {
    let data = std::fs::read(path)?;
    let start = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(data.len());
    let tail = &data[start..];
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".torn-{offset}"));
    let quarantine = PathBuf::from(name);
    let mut q = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&quarantine)?;
    q.write_all(tail)?;
    q.sync_all()?;
    let file = OpenOptions::new().write(true).open(path)?;
    file.set_len(offset)?;
    file.sync_all()?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok((quarantine, tail.len() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ops::ControlFlow;

    fn frames(payloads: &[&[u8]]) -> Vec<u8> {
        let mut out = SEGMENT_MAGIC.to_vec();
        for p in payloads {
            encode_frame(p, &mut out);
        }
        out
    }

    fn scan(data: &[u8]) -> (Vec<(u64, Vec<u8>)>, Option<BadFrame>) {
        let mut seen = Vec::new();
        let bad = scan_frames(data, 8, |o, p| {
            seen.push((o, p.to_vec()));
            ControlFlow::Continue(())
        });
        (seen, bad)
    }

    #[test]
    fn frames_round_trip() {
        let data = frames(&[b"one", b"three"]);
        let (seen, bad) = scan(&data);
        assert_eq!(bad, None);
        assert_eq!(seen, vec![(8, b"one".to_vec()), (19, b"three".to_vec())]);
    }

    #[test]
    fn every_fault_is_located() {
        let data = frames(&[b"one", b"three"]);
        // Cut inside the second frame's payload.
        let (seen, bad) = scan(&data[..data.len() - 1]);
        assert_eq!(seen.len(), 1);
        assert_eq!(
            bad,
            Some(BadFrame {
                offset: 19,
                fault: FrameFault::Truncated
            })
        );
        // A flipped payload byte.
        let mut flipped = data.clone();
        flipped[20 + FRAME_HEADER - 1] ^= 1;
        assert_eq!(scan(&flipped).1.unwrap().fault, FrameFault::Crc);
        // Zeroed tail (a crash that extended the file but wrote no data).
        let mut zeros = data.clone();
        zeros.extend_from_slice(&[0; 16]);
        assert_eq!(
            scan(&zeros).1,
            Some(BadFrame {
                offset: data.len() as u64,
                fault: FrameFault::BadLength(0)
            })
        );
    }
}
