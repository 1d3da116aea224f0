//! Retention (CMP-RETAIN; RTS 6 Art. 28, MiFID II Art. 16(6)): records are kept at least
//! `retention` (five years); an explicit prune removes only whole, non-active segments whose
//! newest record is older than that, and refuses any cut-off younger than it.
//!
//! Pruning removes a record's content, never its place in the tree: before a segment is
//! deleted, the leaf hashes of every record below the new boundary are written (durably) to
//! [`PRUNED_FILE`], after a checkpoint that covers them. Every checkpoint, old or new, still
//! recomputes from those hashes and the remaining segments, so the chain verifies across the
//! prune and later records keep their inclusion and consistency proofs.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::merkle::Hash;
use super::segment::sync_dir;
use super::verify::VerifyError;

/// File of the leaf hashes of pruned records, in the log directory.
pub const PRUNED_FILE: &str = "pruned.leaves";
/// First bytes of [`PRUNED_FILE`]; then the count (u64 LE), the CRC32 of the hashes (u32
/// LE) and the hashes.
const PRUNED_MAGIC: &[u8; 8] = b"GNTAUDP1";
const PRUNED_HEADER: usize = 20;

/// What a prune did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PruneReport {
    /// The cut-off: segments whose newest record is older than this were pruned (µs, UTC).
    pub before_us: i64,
    /// The same instant, RFC 3339.
    pub before: String,
    /// The segment files deleted, oldest first.
    pub pruned_segments: Vec<PathBuf>,
    /// Records `0..pruned_below` have their content removed; their hashes are kept.
    pub pruned_below: u64,
    /// Segment files kept (the active one included).
    pub kept_segments: usize,
}

/// The leaf hashes of pruned records (empty when nothing was pruned).
///
/// # Errors
/// [`VerifyError::Io`], or [`VerifyError::PrunedFile`] when the file is damaged.
pub(crate) fn read_pruned(dir: &Path) -> Result<Vec<Hash>, VerifyError> {
    let path = dir.join(PRUNED_FILE);
    let data = match std::fs::read(&path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(VerifyError::Io { path, source }),
    };
    let bad = |reason: &str| VerifyError::PrunedFile {
        path: path.clone(),
        reason: reason.to_owned(),
    };
    if data.len() < PRUNED_HEADER || !data.starts_with(PRUNED_MAGIC) {
        return Err(bad("bad magic or short header"));
    }
    let count = u64::from_le_bytes(data[8..16].try_into().map_err(|_| bad("header"))?);
    let crc = u32::from_le_bytes(data[16..20].try_into().map_err(|_| bad("header"))?);
    let body = &data[PRUNED_HEADER..];
    if body.len() as u64 != count.saturating_mul(32) {
        return Err(bad(&format!(
            "holds {} bytes of hashes, expected {count} hashes",
            body.len()
        )));
    }
    if crc32fast::hash(body) != crc {
        return Err(bad("CRC mismatch"));
    }
    Ok(body
        .chunks_exact(32)
        .map(|c| c.try_into().unwrap_or([0; 32]))
        .collect())
}

/// Replaces [`PRUNED_FILE`] with `leaves`, durably (a temporary file, synced, renamed, the
/// directory synced): a crash leaves the old file or the new one, never half of one.
pub(crate) fn write_pruned(dir: &Path, leaves: &[Hash]) -> std::io::Result<()> {
    let mut body = Vec::with_capacity(leaves.len() * 32);
    for leaf in leaves {
        body.extend_from_slice(leaf);
    }
    let tmp = dir.join(format!("{PRUNED_FILE}.tmp"));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(PRUNED_MAGIC)?;
    file.write_all(&(leaves.len() as u64).to_le_bytes())?;
    file.write_all(&crc32fast::hash(&body).to_le_bytes())?;
    file.write_all(&body)?;
    file.sync_all()?;
    std::fs::rename(&tmp, dir.join(PRUNED_FILE))?;
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{
        Action, AuditConfig, AuditError, AuditEvent, AuditLog, DEFAULT_RETENTION, Outcome,
        VerifyOptions, merkle, now_micros, read_records, verify_dir,
    };

    const YEAR_US: i64 = 31_557_600_000_000;

    /// A log of 200 order intents over several 4 KiB segments, checkpointed.
    async fn log_of_segments(tmp: &Path) -> (AuditConfig, AuditLog) {
        let mut config = AuditConfig::new(tmp.join("log"), tmp.join("keys"));
        config.segment_bytes = 4096;
        let log = AuditLog::open(&config).unwrap();
        for i in 0..200 {
            let mut e = AuditEvent::new("alice", Action::OrderIntent, Outcome::Ok);
            e.request_id = Some(format!("r{i}"));
            log.record(e).unwrap();
        }
        log.checkpoint_now().await.unwrap();
        (config, log)
    }

    fn segment_count(dir: &Path) -> usize {
        crate::audit::segment::list_segments(dir).unwrap().len()
    }

    #[tokio::test]
    async fn a_cut_off_younger_than_the_retention_is_refused_and_recorded() {
        let tmp = tempfile::tempdir().unwrap();
        let (config, log) = log_of_segments(tmp.path()).await;
        let before = segment_count(&config.dir);
        // Today's records are younger than five years: nothing goes.
        let report = log.prune("ops", None).await.unwrap();
        assert_eq!((report.pruned_below, report.pruned_segments.len()), (0, 0));
        // A cut-off one year ago is inside the retention period: refused.
        let err = log
            .prune("ops", Some(now_micros() - YEAR_US))
            .await
            .unwrap_err();
        assert!(matches!(err, AuditError::RetentionRefused { .. }), "{err}");
        assert!(err.to_string().contains("audit.retention"), "{err}");
        assert_eq!(segment_count(&config.dir), before);
        let n = log.len();
        log.close().await;
        let records = read_records(&config.dir, n - 2, 2).unwrap();
        assert_eq!(records[0].event.action, Action::AuditPrune);
        assert_eq!(records[0].event.outcome, Outcome::Ok);
        assert_eq!(records[1].event.outcome, Outcome::Refused);
        assert_eq!(config.retention, DEFAULT_RETENTION);
    }

    #[tokio::test]
    async fn pruning_old_segments_keeps_the_chain_verifiable_and_the_log_usable() {
        let tmp = tempfile::tempdir().unwrap();
        let (config, log) = log_of_segments(tmp.path()).await;
        let first_cp = log.latest_checkpoint().unwrap();
        let segments = segment_count(&config.dir);
        assert!(segments > 3, "{segments}");
        // Six years on, every segment but the active one is past the retention period.
        let report = log
            .prune_as_of("ops", now_micros() + 6 * YEAR_US, None)
            .await
            .unwrap();
        assert_eq!(report.pruned_segments.len(), segments - 1);
        assert_eq!(report.kept_segments, 1);
        assert!(report.pruned_below > 0 && report.pruned_below < 200);
        assert!(report.pruned_segments.iter().all(|p| !p.exists()));
        let below = report.pruned_below;
        assert!(matches!(
            log.read_payload(0),
            Err(AuditError::Pruned { index: 0, .. })
        ));
        // A kept record still proves its inclusion under the checkpoint signed before.
        let p = log.inclusion_proof(199, Some(200)).unwrap();
        let leaf = crate::audit::hex::decode(&p.leaf).unwrap();
        let proof: Vec<Hash> = p
            .proof
            .iter()
            .map(|h| crate::audit::hex::decode32(h).unwrap())
            .collect();
        merkle::verify_inclusion(199, 200, &merkle::leaf_hash(&leaf), &proof, &first_cp.root)
            .unwrap();
        let key = log.public_key();
        log.close().await;
        let options = VerifyOptions {
            public_key: Some(key),
        };
        let verified = verify_dir(&config.dir, &options).unwrap();
        assert_eq!(verified.pruned, below);
        assert!(verified.records > 200, "the prune record was appended");
        // After a restart the log goes on from where it was.
        let log = AuditLog::open(&config).unwrap();
        let r = log
            .record_durable(AuditEvent::new("bob", Action::KillEngage, Outcome::Ok))
            .await
            .unwrap();
        assert_eq!(r.index, verified.records);
        let cp = log.checkpoint_now().await.unwrap();
        assert_eq!(
            log.consistency_proof(first_cp.size, cp.size)
                .unwrap()
                .first_root,
            crate::audit::hex::encode(&first_cp.root)
        );
        log.close().await;
        assert!(verify_dir(&config.dir, &options).is_ok());
        // A pruned hash changed is caught by the checkpoints that cover it.
        let path = config.dir.join(PRUNED_FILE);
        let mut leaves = read_pruned(&config.dir).unwrap();
        leaves[3][0] ^= 1;
        write_pruned(&config.dir, &leaves).unwrap();
        let err = verify_dir(&config.dir, &options).unwrap_err().to_string();
        assert!(err.contains("does not match the records"), "{err}");
        assert!(path.exists());
    }

    #[test]
    fn pruned_leaves_round_trip_and_damage_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(read_pruned(tmp.path()).unwrap().is_empty());
        let leaves: Vec<Hash> = (0..5u8).map(|i| [i; 32]).collect();
        write_pruned(tmp.path(), &leaves).unwrap();
        assert_eq!(read_pruned(tmp.path()).unwrap(), leaves);
        let path = tmp.path().join(PRUNED_FILE);
        let mut data = std::fs::read(&path).unwrap();
        data[PRUNED_HEADER + 40] ^= 1;
        std::fs::write(&path, &data).unwrap();
        let err = read_pruned(tmp.path()).unwrap_err().to_string();
        assert!(
            err.contains("CRC mismatch") && err.contains(PRUNED_FILE),
            "{err}"
        );
        std::fs::write(&path, &data[..data.len() - 32]).unwrap();
        let err = read_pruned(tmp.path()).unwrap_err().to_string();
        assert!(err.contains("expected 5 hashes"), "{err}");
    }
}
