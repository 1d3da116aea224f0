//! Tampering with a copy of a file-backed target's audit directory and checking the verifier
//! names the spot: a flipped byte (CRC), a record rewritten with a valid CRC (its successor's
//! link), a forged checkpoint (its signature). The target's own directory is only read.

use std::path::{Path, PathBuf};

use gauntlet_engine::audit::{
    CHECKPOINT_FILE, PAYLOAD_HEADER, SEGMENT_EXT, VerifyError, VerifyOptions, verify_dir,
};

/// Frames of an audit file after its 8 magic bytes: (offset, payload length).
pub(crate) fn frames(data: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut pos = 8;
    while pos + 8 <= data.len() {
        let len =
            u32::from_le_bytes([data[pos], data[pos + 1], data[pos + 2], data[pos + 3]]) as usize;
        if pos + 8 + len > data.len() {
            break;
        }
        out.push((pos, len));
        pos += 8 + len;
    }
    out
}

/// A record with a successor in the same segment, to tamper with.
pub(crate) struct Middle {
    /// Its segment's file name.
    pub(crate) name: std::ffi::OsString,
    /// The segment's bytes.
    pub(crate) data: Vec<u8>,
    /// The record's frame: offset and payload length.
    pub(crate) offset: usize,
    pub(crate) len: usize,
    /// The record's index in the log.
    pub(crate) index: u64,
}

impl Middle {
    /// The segment with one byte of the record's JSON flipped (its CRC no longer matches).
    pub(crate) fn flipped(&self) -> Vec<u8> {
        let mut bytes = self.data.clone();
        bytes[self.offset + 8 + PAYLOAD_HEADER + 1] ^= 0x20;
        bytes
    }

    /// The segment with one letter of the record's JSON changed and the frame resealed (a
    /// valid CRC: only the successor's link shows the edit).
    ///
    /// # Errors
    /// When the record's JSON holds no letter.
    pub(crate) fn rewritten(&self) -> Result<Vec<u8>, String> {
        let mut bytes = self.data.clone();
        let json = self.offset + 8 + PAYLOAD_HEADER;
        let at = (json..self.offset + 8 + self.len)
            .find(|&i| bytes[i].is_ascii_alphabetic())
            .ok_or_else(|| format!("record {} has no letter to change", self.index))?;
        bytes[at] ^= 0x20;
        reseal(&mut bytes, self.offset, self.len);
        Ok(bytes)
    }
}

/// The segments of `dir` in order (their file names are the first index, zero-padded).
pub(crate) fn segments(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("failed to list `{}`: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == SEGMENT_EXT))
        .collect();
    segments.sort();
    Ok(segments)
}

/// The middle record of the first segment holding three records or more.
///
/// # Errors
/// When no segment holds three records, or one cannot be read.
pub(crate) fn middle_record(dir: &Path) -> Result<Middle, String> {
    for path in segments(dir)? {
        let data = std::fs::read(&path)
            .map_err(|e| format!("failed to read `{}`: {e}", path.display()))?;
        let f = frames(&data);
        if let (true, Some(name)) = (f.len() >= 3, path.file_name()) {
            let first: u64 = path
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let k = f.len() / 2;
            let (offset, len) = f[k];
            return Ok(Middle {
                name: name.to_owned(),
                data,
                offset,
                len,
                index: first + k as u64,
            });
        }
    }
    Err(format!(
        "no segment of `{}` holds three records to tamper with",
        dir.display()
    ))
}

/// Rewrites a frame's CRC after its payload changed.
fn reseal(data: &mut [u8], offset: usize, len: usize) {
    let crc = crc32fast::hash(&data[offset + 8..offset + 8 + len]);
    data[offset + 4..offset + 8].copy_from_slice(&crc.to_le_bytes());
}

/// A private scratch directory of the run, removed on drop.
pub(crate) fn scratch(prefix: &str) -> Result<gauntlet_harness::scratch::TempDir, String> {
    gauntlet_harness::private_temp_dir(prefix)
        .map_err(|e| format!("failed to create a temporary directory: {e}"))
}

/// Copies the files of `from` (not its subdirectories) into `to`, creating it.
pub(crate) fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name()))?;
        }
    }
    Ok(())
}

/// Runs the three tamperings on copies of `dir` (whose log must verify as it is) with the
/// pinned `public_key`; `Ok` says what was named, `Err` what was not.
///
/// # Errors
/// A message naming the tampering the verifier missed or misplaced, or why none could be
/// tried.
pub fn tamper_check(dir: &Path, public_key: Option<[u8; 32]>) -> Result<String, String> {
    let options = VerifyOptions { public_key };
    let baseline =
        verify_dir(dir, &options).map_err(|e| format!("the untouched log does not verify: {e}"))?;
    let scratch = scratch("gauntlet-tamper-")?;
    let copy = |name: &str| -> Result<PathBuf, String> {
        let to = scratch.path().join(name);
        copy_dir(dir, &to).map_err(|e| format!("failed to copy `{}`: {e}", dir.display()))?;
        Ok(to)
    };
    let middle = middle_record(dir)?;
    let (offset, index) = (middle.offset, middle.index);
    let mut said = Vec::new();

    // 1. A flipped byte in the record's JSON.
    let flipped = copy("flipped")?;
    std::fs::write(flipped.join(&middle.name), middle.flipped()).map_err(|e| e.to_string())?;
    match verify_dir(&flipped, &options) {
        Err(VerifyError::BadFrame {
            index: i,
            offset: o,
            ..
        }) if i == index && o == offset as u64 => {
            said.push(format!("a flipped byte: record {i} at offset {o} named"));
        }
        other => {
            return Err(format!(
                "a byte flipped in record {index} at offset {offset}: the verifier said {}",
                describe(&other)
            ));
        }
    }

    // 2. The same record rewritten with a valid CRC.
    let rewritten = copy("rewritten")?;
    std::fs::write(rewritten.join(&middle.name), middle.rewritten()?).map_err(|e| e.to_string())?;
    match verify_dir(&rewritten, &options) {
        Err(VerifyError::RecordAltered {
            index: i,
            offset: o,
            ..
        }) if i == index && o == offset as u64 => {
            said.push(format!(
                "a rewrite with a valid CRC: record {i} at offset {o} named"
            ));
        }
        other => {
            return Err(format!(
                "record {index} at offset {offset} rewritten with a valid CRC: the verifier said {}",
                describe(&other)
            ));
        }
    }

    // 3. The last checkpoint forged: its size changed, its frame resealed.
    if baseline.checkpoints > 0 {
        let forged = copy("forged")?;
        let path = forged.join(CHECKPOINT_FILE);
        let mut cps = std::fs::read(&path).map_err(|e| e.to_string())?;
        let cf = frames(&cps);
        let (offset, len) = *cf.last().ok_or("no checkpoint frame")?;
        let mut cp: serde_json::Value = serde_json::from_slice(&cps[offset + 8..offset + 8 + len])
            .map_err(|e| e.to_string())?;
        let size = cp["size"].as_u64().unwrap_or(0);
        // One digit more or less keeps the frame's length when the size has as many digits.
        let new_size = if size % 10 == 9 { size - 1 } else { size + 1 };
        cp["size"] = serde_json::json!(new_size);
        let payload = serde_json::to_vec(&cp).map_err(|e| e.to_string())?;
        let mut out = cps[..offset].to_vec();
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        out.extend_from_slice(&payload);
        out.extend_from_slice(&cps[offset + 8 + len..]);
        cps = out;
        std::fs::write(&path, &cps).map_err(|e| e.to_string())?;
        let number = cf.len() - 1;
        match verify_dir(&forged, &options) {
            Err(VerifyError::CheckpointSignature { number: n, .. }) if n == number => {
                said.push(format!("a forged checkpoint: checkpoint {n} named"));
            }
            other => {
                return Err(format!(
                    "checkpoint {number} forged (size {size} → {new_size}): the verifier said {}",
                    describe(&other)
                ));
            }
        }
    }
    Ok(format!(
        "{} records verified; {}",
        baseline.records,
        said.join("; ")
    ))
}

fn describe(result: &Result<gauntlet_engine::audit::VerifyReport, VerifyError>) -> String {
    match result {
        Ok(r) => format!("nothing: it verified {} records", r.records),
        Err(e) => format!("{e:?}"),
    }
}
