//! The running audit log: recovery on open, a writer thread with group commit, and the
//! in-memory tree that answers proofs.
//!
//! Every append goes through one channel to one writer, which assigns the index and the time
//! (so both are monotonic), frames the record and writes it. An admin record's sender waits
//! until the batch holding it is written and `fdatasync`ed; predictions and order intents are
//! not waited for and are written within `flush-interval`. Whatever is queued when a sync
//! starts rides along with it (group commit).
//!
//! The writer's state is run by two threads, one at a time under a lock: an idle-priority
//! thread (`SCHED_IDLE`) that writes the predictions at their flush deadline and signs the
//! periodic checkpoints, so that its batches never take a core from the predict path, and a
//! normal-priority thread woken by every message somebody waits on, so that an admin
//! acknowledgement does not wait for the idle thread's share of a saturated CPU.

use std::fs::File;
use std::io::Write as _;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, TryRecvError};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use serde::Serialize;
use tokio::sync::oneshot;

use super::checkpoint::Checkpoint;
use super::config::AuditConfig;
use super::keys::{self, KeyError};
use super::merkle::{Hash, MerkleTree, ProofError, leaf_hash};
use super::record::{
    AuditEvent, Pseudonymiser, encode_payload, now_micros, payload_header, payload_link,
};
use super::retention::PruneReport;
use super::segment::{
    BadFrame, CHECKPOINT_MAGIC, FRAME_HEADER, FrameFault, SEGMENT_MAGIC, create_with_magic,
    encode_frame, list_segments, quarantine_tail, scan_frames, segment_path, sync_dir,
};
use super::verify::VerifyError;
use super::{CHECKPOINT_FILE, PUBLIC_KEY_FILE, hex};

/// Bytes buffered before the writer writes even if nothing asks it to.
const WRITE_CHUNK: usize = 1 << 20;
/// Messages the writer takes from the channel per batch.
const MAX_BATCH: usize = 16_384;

/// Why the audit log failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// A setting is out of range.
    #[error("invalid config: {key} {message}")]
    Config {
        /// The key.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A key file could not be used.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A file could not be read or written.
    #[error("failed to access audit file `{}`", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The log on disk is damaged or altered where a crash cannot explain it.
    #[error("failed to open the audit log: {0}")]
    Corrupt(#[source] VerifyError),
    /// The directory's public key is not the signing key's.
    #[error("failed to open the audit log: `{}` holds another key than audit.signing-key-file", path.display())]
    PublicKeyMismatch {
        /// The public key file.
        path: PathBuf,
    },
    /// The writer stopped (an earlier write or sync failed, or the log was closed); nothing
    /// more is recorded.
    #[error("failed to record: the audit writer has stopped")]
    Stopped,
    /// A proof could not be produced.
    #[error(transparent)]
    Proof(#[from] ProofError),
    /// The record was pruned after the retention period: only its hash is kept.
    #[error(
        "record {index} was pruned after the retention period (records below {below} keep only their hashes)"
    )]
    Pruned {
        /// The record asked for.
        index: u64,
        /// Records below this index are pruned.
        below: u64,
    },
    /// A prune was asked for records younger than the retention period (CMP-RETAIN).
    #[error(
        "retention: refusing to prune records younger than audit.retention {retention}: cut-off {before} is after {earliest}"
    )]
    RetentionRefused {
        /// The retention, e.g. `5years`.
        retention: String,
        /// The cut-off asked for, RFC 3339.
        before: String,
        /// The latest cut-off allowed now, RFC 3339.
        earliest: String,
    },
}

/// Where a record went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Receipt {
    /// Its index.
    pub index: u64,
    /// Its time, µs since the epoch, UTC.
    pub time_us: i64,
}

/// A torn tail cut off on open.
#[derive(Debug, Clone, Serialize)]
pub struct TornTail {
    /// The file.
    pub file: PathBuf,
    /// Byte offset of the first bad frame.
    pub offset: u64,
    /// The record index it would have had (for a segment).
    pub index: Option<u64>,
    /// Bytes moved out.
    pub bytes: u64,
    /// Where they were kept.
    pub quarantine: PathBuf,
    /// What was wrong with the frame.
    pub fault: String,
}

/// What opening found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Recovery {
    /// Records in the log.
    pub records: u64,
    /// Segment files.
    pub segments: usize,
    /// Checkpoints read.
    pub checkpoints: usize,
    /// Torn tails cut off (at most one per file, on the last segment and the checkpoint
    /// file), after the last checkpoint: what a crash leaves behind.
    pub torn: Vec<TornTail>,
}

/// An inclusion proof and the record it proves.
#[derive(Debug, Clone, Serialize)]
pub struct InclusionProof {
    /// The record's index.
    pub index: u64,
    /// The tree size proved against.
    pub size: u64,
    /// The record's payload in hex (its Merkle leaf).
    pub leaf: String,
    /// `SHA-256(0x00 || leaf)` in hex.
    pub leaf_hash: String,
    /// The audit path, leaf first, hex.
    pub proof: Vec<String>,
    /// The root of the tree of `size`, hex.
    pub root: String,
}

/// A consistency proof between two tree sizes.
#[derive(Debug, Clone, Serialize)]
pub struct ConsistencyProof {
    /// The smaller size.
    pub first: u64,
    /// The larger size.
    pub second: u64,
    /// Root at `first`, hex.
    pub first_root: String,
    /// Root at `second`, hex.
    pub second_root: String,
    /// The proof, hex.
    pub proof: Vec<String>,
}

enum Msg {
    Append {
        event: AuditEvent,
        ack: Option<oneshot::Sender<Result<Receipt, AuditError>>>,
    },
    Checkpoint(oneshot::Sender<Result<Checkpoint, AuditError>>),
    Close(oneshot::Sender<()>),
}

#[derive(Default)]
struct View {
    tree: MerkleTree,
    /// Byte offset of each record's frame in its segment.
    offsets: Vec<u64>,
    /// (first index, path) of each segment.
    segments: Vec<(u64, PathBuf)>,
    /// Records below this index were pruned: their hashes are in the tree, their content gone.
    pruned_below: u64,
}

struct Shared {
    view: RwLock<View>,
    checkpoint: RwLock<Option<Checkpoint>>,
    stopped: AtomicBool,
}

/// The audit log handle; cheap to clone. The writer thread stops when the last handle is
/// dropped (after writing what is queued) or on [`AuditLog::close`].
#[derive(Clone)]
pub struct AuditLog {
    inner: Arc<Inner>,
}

struct Inner {
    /// `None` only while dropping (so the writer sees the channel disconnected).
    tx: Option<mpsc::Sender<Msg>>,
    /// The writer's two threads (see `run_idle` and `run_urgent`).
    wake: Arc<Wake>,
    shared: Arc<Shared>,
    pseudonymiser: Pseudonymiser,
    public_key: [u8; 32],
    recovery: Recovery,
    dir: PathBuf,
    retention: Duration,
    /// Serialises prunes.
    pruning: tokio::sync::Mutex<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The channel disconnects; the urgent thread writes what is queued, signs a last
        // checkpoint and stops, then stops the idle thread.
        self.tx = None;
        self.wake.urgent();
    }
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("dir", &self.inner.dir)
            .field("public_key", &hex::encode(&self.inner.public_key))
            .finish_non_exhaustive()
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> AuditError + '_ {
    move |source| AuditError::Io {
        path: path.to_owned(),
        source,
    }
}

impl AuditLog {
    /// Opens (or creates) the log of `config`: loads or creates the keys, cuts off and keeps a
    /// torn tail, rebuilds the tree, checks it against the last signed checkpoint, and starts
    /// the writer thread.
    ///
    /// # Errors
    /// [`AuditError`]; [`AuditError::Corrupt`] names the file, offset and index when the log
    /// is damaged where a crash cannot explain it.
    pub fn open(config: &AuditConfig) -> Result<AuditLog, AuditError> {
        config
            .validate()
            .map_err(|(key, message)| AuditError::Config { key, message })?;
        let dir = config.dir.clone();
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let signing = SigningKey::from_bytes(&keys::load_or_create(&config.signing_key_file)?);
        let pseudonymiser = Pseudonymiser::new(keys::load_or_create(&config.pseudonym_key_file)?);
        let public_key = signing.verifying_key().to_bytes();
        let pub_path = dir.join(PUBLIC_KEY_FILE);
        match std::fs::read_to_string(&pub_path) {
            Ok(text) => {
                if hex::decode32(text.trim()).ok() != Some(public_key) {
                    return Err(AuditError::PublicKeyMismatch { path: pub_path });
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut f = File::create(&pub_path).map_err(io_err(&pub_path))?;
                f.write_all(format!("{}\n", hex::encode(&public_key)).as_bytes())
                    .and_then(|()| f.sync_all())
                    .map_err(io_err(&pub_path))?;
            }
            Err(e) => return Err(io_err(&pub_path)(e)),
        }
        let mut recovery = Recovery::default();
        let (checkpoints, cp_file) = open_checkpoints(&dir, &signing, &mut recovery)?;
        let signed_size = checkpoints.last().map_or(0, |c| c.size);
        let (view, last_time) = open_segments(&dir, signed_size, &mut recovery)?;
        if let Some(cp) = checkpoints.last() {
            let root = view.tree.root(cp.size).map_err(|_| {
                AuditError::Corrupt(VerifyError::CheckpointBeyondLog {
                    number: checkpoints.len() - 1,
                    size: cp.size,
                    records: view.tree.len(),
                })
            })?;
            if root != cp.root {
                return Err(AuditError::Corrupt(VerifyError::RootMismatch {
                    number: checkpoints.len() - 1,
                    size: cp.size,
                    first: 0,
                    last: cp.size.saturating_sub(1),
                }));
            }
        }
        recovery.records = view.tree.len();
        recovery.segments = view.segments.len();
        recovery.checkpoints = checkpoints.len();
        // Append to the last segment, or start the first.
        let (seg_first, seg_path) = match view.segments.last() {
            Some(s) => s.clone(),
            None => (0, segment_path(&dir, 0)),
        };
        let file = if view.segments.is_empty() {
            create_with_magic(&seg_path, SEGMENT_MAGIC).map_err(io_err(&seg_path))?
        } else {
            std::fs::OpenOptions::new()
                .append(true)
                .open(&seg_path)
                .map_err(io_err(&seg_path))?
        };
        let seg_len = file.metadata().map_err(io_err(&seg_path))?.len();
        let mut view = view;
        if view.segments.is_empty() {
            view.segments.push((0, seg_path.clone()));
        }
        let next_index = view.tree.len();
        let last_leaf = next_index
            .checked_sub(1)
            .and_then(|i| view.tree.leaf(i))
            .unwrap_or([0; 32]);
        let shared = Arc::new(Shared {
            view: RwLock::new(view),
            checkpoint: RwLock::new(checkpoints.last().cloned()),
            stopped: AtomicBool::new(false),
        });
        let (tx, rx) = mpsc::channel();
        let writer = Writer {
            dir: dir.clone(),
            segment_bytes: config.segment_bytes,
            flush_interval: config.flush_interval,
            checkpoint_interval: config.checkpoint_interval,
            key: signing,
            shared: Arc::clone(&shared),
            file,
            seg_path,
            seg_len,
            seg_first,
            cp_file,
            next_index,
            last_time,
            last_leaf,
            buf: Vec::with_capacity(WRITE_CHUNK + MAX_PAYLOAD_HINT),
            pending: Vec::new(),
            waiters: Vec::new(),
            first_pending: None,
            last_cp_size: signed_size,
            next_cp: Instant::now() + config.checkpoint_interval,
        };
        let core = Arc::new(Mutex::new(Core {
            writer,
            rx,
            stash: None,
            payload: Vec::with_capacity(512),
            cp_waiters: Vec::new(),
            close: None,
            finished: false,
        }));
        let wake = Arc::new(Wake::default());
        let spawn = |name: &str, run: fn(&Mutex<Core>, &Wake)| {
            let (core, wake) = (Arc::clone(&core), Arc::clone(&wake));
            std::thread::Builder::new()
                .name(name.to_owned())
                .spawn(move || run(&core, &wake))
                .map(|h| h.thread().clone())
                .map_err(io_err(&dir))
        };
        let idle = spawn("audit-writer", run_idle)?;
        let urgent = spawn("audit-urgent", run_urgent)?;
        let _ = wake.idle.set(idle);
        let _ = wake.urgent.set(urgent);
        Ok(AuditLog {
            inner: Arc::new(Inner {
                tx: Some(tx),
                wake,
                shared,
                pseudonymiser,
                public_key,
                recovery,
                dir,
                retention: config.retention,
                pruning: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// What opening found (torn tails cut off).
    pub fn recovery(&self) -> &Recovery {
        &self.inner.recovery
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The checkpoint signing key's public half.
    pub fn public_key(&self) -> [u8; 32] {
        self.inner.public_key
    }

    /// The pseudonym of a client identifier.
    pub fn pseudonym(&self, id: &str) -> String {
        self.inner.pseudonymiser.pseudonym(id)
    }

    /// Records written (synced or not).
    pub fn len(&self) -> u64 {
        self.read_view().tree.len()
    }

    /// Whether no record was written.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the writer has stopped after an I/O error or a close.
    pub fn is_stopped(&self) -> bool {
        self.inner.shared.stopped.load(Ordering::Acquire)
    }

    /// Records `event` and waits until it is on disk (written and `fdatasync`ed).
    ///
    /// # Errors
    /// [`AuditError::Stopped`] when the writer has stopped: the action must not be
    /// acknowledged.
    pub async fn record_durable(&self, event: AuditEvent) -> Result<Receipt, AuditError> {
        let (ack, rx) = oneshot::channel();
        self.send(Msg::Append {
            event,
            ack: Some(ack),
        })?;
        rx.await.map_err(|_| AuditError::Stopped)?
    }

    /// Queues `event`; it is written within `flush-interval` (or with the next admin record).
    ///
    /// # Errors
    /// [`AuditError::Stopped`] when the writer has stopped.
    pub fn record(&self, event: AuditEvent) -> Result<(), AuditError> {
        self.send(Msg::Append { event, ack: None })
    }

    /// Writes what is queued and signs a checkpoint now.
    ///
    /// # Errors
    /// [`AuditError::Stopped`].
    pub async fn checkpoint_now(&self) -> Result<Checkpoint, AuditError> {
        let (ack, rx) = oneshot::channel();
        self.send(Msg::Checkpoint(ack))?;
        rx.await.map_err(|_| AuditError::Stopped)?
    }

    /// Writes what is queued, signs a final checkpoint and stops the writer.
    pub async fn close(&self) {
        let (ack, rx) = oneshot::channel();
        if self.send(Msg::Close(ack)).is_ok() {
            let _ = rx.await;
        }
    }

    /// The latest signed checkpoint.
    pub fn latest_checkpoint(&self) -> Option<Checkpoint> {
        self.inner
            .shared
            .checkpoint
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn send(&self, msg: Msg) -> Result<(), AuditError> {
        if self.is_stopped() {
            return Err(AuditError::Stopped);
        }
        // A queued prediction wakes nobody (the idle thread collects them at its flush
        // deadline) unless the idle thread sleeps with nothing pending; an admin record, a
        // checkpoint or a close is waited on, so it unparks the urgent thread.
        let waited_on = !matches!(msg, Msg::Append { ack: None, .. });
        let wake = &self.inner.wake;
        self.inner
            .tx
            .as_ref()
            .ok_or(AuditError::Stopped)?
            .send(msg)
            .map_err(|_| AuditError::Stopped)?;
        if waited_on {
            wake.urgent();
        } else {
            // Pairs with the idle thread's arm-then-look (`run_idle`).
            std::sync::atomic::fence(Ordering::SeqCst);
            if wake.armed.load(Ordering::SeqCst) && wake.armed.swap(false, Ordering::SeqCst) {
                wake.idle();
            }
        }
        Ok(())
    }

    /// For the engine's tests: holds the idle-priority thread (`held`), as a saturated CPU
    /// would starve it, or lets it go. Inert unless Rust code in the same process calls it.
    #[doc(hidden)]
    pub fn hold_idle_writer(&self, held: bool) {
        self.inner.wake.held.store(held, Ordering::Release);
        self.inner.wake.idle();
    }

    fn read_view(&self) -> std::sync::RwLockReadGuard<'_, View> {
        self.inner
            .shared
            .view
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Prunes the segments whose every record is older than `before_us` (default: now less
    /// `audit.retention`), keeping their hashes; refuses a cut-off younger than the retention.
    /// Recorded durably as `audit_prune` by `principal`.
    ///
    /// # Errors
    /// [`AuditError::RetentionRefused`]; I/O errors; [`AuditError::Stopped`].
    pub async fn prune(
        &self,
        principal: &str,
        before_us: Option<i64>,
    ) -> Result<PruneReport, AuditError> {
        self.prune_as_of(principal, now_micros(), before_us).await
    }

    /// [`AuditLog::prune`] as if the clock read `now_us`: the retention is enforced against
    /// that instant. Routes pass the system clock; tests and replays of a retention decision
    /// pass their own.
    ///
    /// # Errors
    /// As [`AuditLog::prune`].
    pub async fn prune_as_of(
        &self,
        principal: &str,
        now_us: i64,
        before_us: Option<i64>,
    ) -> Result<PruneReport, AuditError> {
        let retention_us = i64::try_from(self.inner.retention.as_micros()).unwrap_or(i64::MAX);
        let earliest = now_us.saturating_sub(retention_us);
        let before = before_us.unwrap_or(earliest);
        let mut event = AuditEvent::new(principal, super::Action::AuditPrune, super::Outcome::Ok);
        if before > earliest {
            let err = AuditError::RetentionRefused {
                retention: humantime::format_duration(self.inner.retention).to_string(),
                before: super::rfc3339_micros(before),
                earliest: super::rfc3339_micros(earliest),
            };
            event.outcome = super::Outcome::Refused;
            event.detail = Some(err.to_string());
            self.record_durable(event).await?;
            return Err(err);
        }
        let _one_at_a_time = self.inner.pruning.lock().await;
        // Every segment but the active one, with the index after its last record.
        let candidates: Vec<(u64, u64, PathBuf)> = {
            let view = self.read_view();
            view.segments
                .windows(2)
                .map(|w| (w[0].0, w[1].0, w[0].1.clone()))
                .collect()
        };
        let mut cut = Vec::new();
        for (first, end, path) in candidates {
            if end == first {
                continue;
            }
            let newest = self.read_payload(end - 1)?;
            match payload_header(&newest) {
                Some((_, time)) if time < before => cut.push((end, path)),
                _ => break,
            }
        }
        let boundary = cut.last().map_or(0, |(end, _)| *end);
        let already = self.read_view().pruned_below;
        if boundary > already {
            // The hashes must be under a signed checkpoint before the content goes.
            if self.latest_checkpoint().is_none_or(|c| c.size < boundary) {
                self.checkpoint_now().await?;
            }
            let leaves: Vec<Hash> = {
                let view = self.read_view();
                (0..boundary).filter_map(|i| view.tree.leaf(i)).collect()
            };
            let dir = self.inner.dir.clone();
            super::retention::write_pruned(&dir, &leaves).map_err(io_err(&dir))?;
            {
                let mut view = self
                    .inner
                    .shared
                    .view
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                view.pruned_below = boundary;
                view.segments.retain(|(first, _)| *first >= boundary);
            }
            for (_, path) in &cut {
                std::fs::remove_file(path).map_err(io_err(path))?;
            }
            sync_dir(&dir).map_err(io_err(&dir))?;
        }
        let report = PruneReport {
            before_us: before,
            before: super::rfc3339_micros(before),
            pruned_segments: cut.into_iter().map(|(_, p)| p).collect(),
            pruned_below: boundary.max(already),
            kept_segments: self.read_view().segments.len(),
        };
        event.detail = Some(format!(
            "before={} pruned_segments={} pruned_below={}",
            report.before,
            report.pruned_segments.len(),
            report.pruned_below
        ));
        self.record_durable(event).await?;
        Ok(report)
    }

    /// The payload (Merkle leaf) of record `index`, read from its segment.
    ///
    /// # Errors
    /// [`ProofError::IndexOutOfRange`] or an I/O error.
    pub fn read_payload(&self, index: u64) -> Result<Vec<u8>, AuditError> {
        let (path, offset) = {
            let view = self.read_view();
            if index < view.pruned_below {
                return Err(AuditError::Pruned {
                    index,
                    below: view.pruned_below,
                });
            }
            let len = view.tree.len();
            let offset = usize::try_from(index)
                .ok()
                .and_then(|i| view.offsets.get(i))
                .copied()
                .ok_or(ProofError::IndexOutOfRange { index, size: len })?;
            let seg = view.segments.partition_point(|(first, _)| *first <= index);
            let path = view.segments[seg.saturating_sub(1)].1.clone();
            (path, offset)
        };
        let file = File::open(&path).map_err(io_err(&path))?;
        let mut head = [0u8; FRAME_HEADER];
        file.read_exact_at(&mut head, offset)
            .map_err(io_err(&path))?;
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let mut payload = vec![0u8; len.min(super::segment::MAX_PAYLOAD)];
        file.read_exact_at(&mut payload, offset + FRAME_HEADER as u64)
            .map_err(io_err(&path))?;
        Ok(payload)
    }

    /// The inclusion proof of record `index` in the tree of `size` records (the latest
    /// checkpoint's size when `None`, else the whole log).
    ///
    /// # Errors
    /// [`AuditError::Proof`] when the index or size is out of range.
    pub fn inclusion_proof(
        &self,
        index: u64,
        size: Option<u64>,
    ) -> Result<InclusionProof, AuditError> {
        let (proof, root, size, leaf_hash) = {
            let view = self.read_view();
            let size = size
                .or_else(|| self.latest_checkpoint().map(|c| c.size))
                .unwrap_or(view.tree.len());
            let proof = view.tree.inclusion_proof(index, size)?;
            let root = view.tree.root(size)?;
            let leaf = view
                .tree
                .leaf(index)
                .ok_or(ProofError::IndexOutOfRange { index, size })?;
            (proof, root, size, leaf)
        };
        let payload = self.read_payload(index)?;
        debug_assert_eq!(super::merkle::leaf_hash(&payload), leaf_hash);
        Ok(InclusionProof {
            index,
            size,
            leaf: hex::encode(&payload),
            leaf_hash: hex::encode(&leaf_hash),
            proof: proof.iter().map(|h| hex::encode(h)).collect(),
            root: hex::encode(&root),
        })
    }

    /// The consistency proof between sizes `first` and `second`.
    ///
    /// # Errors
    /// [`AuditError::Proof`] when the sizes are out of order or range.
    pub fn consistency_proof(
        &self,
        first: u64,
        second: u64,
    ) -> Result<ConsistencyProof, AuditError> {
        let view = self.read_view();
        let proof = view.tree.consistency_proof(first, second)?;
        Ok(ConsistencyProof {
            first,
            second,
            first_root: hex::encode(&view.tree.root(first)?),
            second_root: hex::encode(&view.tree.root(second)?),
            proof: proof.iter().map(|h| hex::encode(h)).collect(),
        })
    }
}

/// A payload is at most this big in practice; the buffer is sized for a chunk plus one.
const MAX_PAYLOAD_HINT: usize = 64 * 1024;

/// Reads the checkpoint file, cutting off a torn tail, and checks every signature.
fn open_checkpoints(
    dir: &Path,
    key: &SigningKey,
    recovery: &mut Recovery,
) -> Result<(Vec<Checkpoint>, File), AuditError> {
    let path = dir.join(CHECKPOINT_FILE);
    if !path.exists() {
        let file = create_with_magic(&path, CHECKPOINT_MAGIC).map_err(io_err(&path))?;
        return Ok((Vec::new(), file));
    }
    let data = std::fs::read(&path).map_err(io_err(&path))?;
    if data.len() < CHECKPOINT_MAGIC.len() && CHECKPOINT_MAGIC.starts_with(&data) {
        // Created but its magic never reached the disk: nothing was ever signed in it.
        std::fs::remove_file(&path).map_err(io_err(&path))?;
        let file = create_with_magic(&path, CHECKPOINT_MAGIC).map_err(io_err(&path))?;
        return Ok((Vec::new(), file));
    }
    if !data.starts_with(CHECKPOINT_MAGIC) {
        return Err(AuditError::Corrupt(VerifyError::BadMagic { path }));
    }
    let mut checkpoints = Vec::new();
    let mut bad_json = None;
    let bad =
        scan_frames(
            &data,
            CHECKPOINT_MAGIC.len(),
            |offset, payload| match serde_json::from_slice::<Checkpoint>(payload) {
                Ok(cp) => {
                    checkpoints.push(cp);
                    std::ops::ControlFlow::Continue(())
                }
                Err(_) => {
                    bad_json = Some(offset);
                    std::ops::ControlFlow::Break(())
                }
            },
        );
    if let Some(offset) = bad_json {
        return Err(AuditError::Corrupt(VerifyError::CheckpointJson {
            number: checkpoints.len(),
            offset,
        }));
    }
    if let Some(BadFrame { offset, fault }) = bad {
        // Checkpoints are appended last: a bad frame can only be the one being written.
        let (quarantine, bytes) = quarantine_tail(&path, offset).map_err(io_err(&path))?;
        recovery.torn.push(TornTail {
            file: path.clone(),
            offset,
            index: None,
            bytes,
            quarantine,
            fault: fault.to_string(),
        });
    }
    let verifying = key.verifying_key();
    let mut previous = 0;
    for (number, cp) in checkpoints.iter().enumerate() {
        cp.verify(&verifying).map_err(|source| {
            AuditError::Corrupt(VerifyError::CheckpointSignature {
                number,
                size: cp.size,
                source,
            })
        })?;
        if cp.size < previous {
            return Err(AuditError::Corrupt(VerifyError::CheckpointOrder {
                number,
                size: cp.size,
                previous,
            }));
        }
        previous = cp.size;
    }
    let file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .map_err(io_err(&path))?;
    Ok((checkpoints, file))
}

/// Reads every segment into a tree. A bad frame in the last segment past the last checkpoint
/// is a torn tail: moved aside and reported. Anything else is corruption.
fn open_segments(
    dir: &Path,
    signed_size: u64,
    recovery: &mut Recovery,
) -> Result<(View, i64), AuditError> {
    let mut segments = list_segments(dir).map_err(io_err(dir))?;
    let mut view = View::default();
    let mut last_time = i64::MIN;
    for leaf in super::retention::read_pruned(dir).map_err(AuditError::Corrupt)? {
        view.tree.push(leaf);
        view.offsets.push(0);
    }
    view.pruned_below = view.tree.len();
    // Segments below the boundary are left over from a prune interrupted after its hashes
    // were written: finish it.
    let mut finished = false;
    segments.retain(|(first, path)| {
        let leftover = *first < view.pruned_below;
        if leftover && std::fs::remove_file(path).is_ok() {
            finished = true;
        }
        !leftover
    });
    if finished {
        sync_dir(dir).map_err(io_err(dir))?;
    }
    let count = segments.len();
    // A last segment whose magic never reached the disk holds nothing: start it again.
    if let Some((_, path)) = segments.last() {
        let len = std::fs::metadata(path).map_err(io_err(path))?.len();
        if len < SEGMENT_MAGIC.len() as u64 {
            let (quarantine, bytes) = quarantine_tail(path, 0).map_err(io_err(path))?;
            std::fs::remove_file(path).map_err(io_err(path))?;
            sync_dir(dir).map_err(io_err(dir))?;
            recovery.torn.push(TornTail {
                file: path.clone(),
                offset: 0,
                index: None,
                bytes,
                quarantine,
                fault: FrameFault::Truncated.to_string(),
            });
            segments.pop();
        }
    }
    for (n, (first, path)) in segments.iter().enumerate() {
        let is_last = n + 1 == count;
        if *first != view.tree.len() {
            return Err(AuditError::Corrupt(VerifyError::SegmentGap {
                segment: path.clone(),
                expected: view.tree.len(),
                found: *first,
            }));
        }
        let data = std::fs::read(path).map_err(io_err(path))?;
        if !data.starts_with(SEGMENT_MAGIC) {
            return Err(AuditError::Corrupt(VerifyError::BadMagic {
                path: path.clone(),
            }));
        }
        let mut misplaced = None;
        let bad = scan_frames(&data, SEGMENT_MAGIC.len(), |offset, payload| {
            let expected = view.tree.len();
            let link = expected
                .checked_sub(1)
                .and_then(|i| view.tree.leaf(i))
                .unwrap_or([0; 32]);
            match payload_header(payload) {
                Some((index, _)) if index == expected && payload_link(payload) != Some(link) => {
                    // Record `index - 1` was rewritten (or this one's link): the log was
                    // edited, which no crash explains.
                    misplaced = Some(VerifyError::LinkMismatch {
                        segment: path.clone(),
                        offset,
                        index,
                    });
                    std::ops::ControlFlow::Break(())
                }
                Some((index, time)) if index == expected => {
                    view.tree.push(leaf_hash(payload));
                    view.offsets.push(offset);
                    last_time = last_time.max(time);
                    std::ops::ControlFlow::Continue(())
                }
                found => {
                    misplaced = Some(VerifyError::IndexMismatch {
                        segment: path.clone(),
                        offset,
                        expected,
                        found: found.map_or(u64::MAX, |(i, _)| i),
                    });
                    std::ops::ControlFlow::Break(())
                }
            }
        });
        if let Some(e) = misplaced {
            return Err(AuditError::Corrupt(e));
        }
        if let Some(BadFrame { offset, fault }) = bad {
            let index = view.tree.len();
            if !is_last || index < signed_size {
                return Err(AuditError::Corrupt(VerifyError::BadFrame {
                    segment: path.clone(),
                    offset,
                    index,
                    fault,
                }));
            }
            let (quarantine, bytes) = quarantine_tail(path, offset).map_err(io_err(path))?;
            recovery.torn.push(TornTail {
                file: path.clone(),
                offset,
                index: Some(index),
                bytes,
                quarantine,
                fault: fault.to_string(),
            });
        }
        view.segments.push((*first, path.clone()));
    }
    Ok((view, last_time))
}

struct Writer {
    dir: PathBuf,
    segment_bytes: u64,
    flush_interval: Duration,
    checkpoint_interval: Duration,
    key: SigningKey,
    shared: Arc<Shared>,
    file: File,
    seg_path: PathBuf,
    /// Bytes in the current segment file, written.
    seg_len: u64,
    seg_first: u64,
    cp_file: File,
    next_index: u64,
    last_time: i64,
    /// Leaf hash of the last record appended: the next record's link.
    last_leaf: Hash,
    /// Frames not yet written.
    buf: Vec<u8>,
    /// Leaf hash and frame offset of each record in `buf`.
    pending: Vec<(Hash, u64)>,
    waiters: Vec<(oneshot::Sender<Result<Receipt, AuditError>>, Receipt)>,
    first_pending: Option<Instant>,
    last_cp_size: u64,
    next_cp: Instant,
}

/// What the writer's two threads share under one lock: the writer's state and the channel.
struct Core {
    writer: Writer,
    rx: mpsc::Receiver<Msg>,
    /// A message taken while looking whether the channel is empty (see `has_message`).
    stash: Option<Msg>,
    payload: Vec<u8>,
    cp_waiters: Vec<oneshot::Sender<Result<Checkpoint, AuditError>>>,
    /// `Some` once a close was asked for (`Some(None)`: the last handle was dropped).
    close: Option<Option<oneshot::Sender<()>>>,
    finished: bool,
}

/// What a [`Core::pump`] left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pumped {
    /// It took its limit: the channel may hold more.
    More,
    /// The channel is empty.
    Empty,
    /// The writer has stopped (closed, dropped, or a write failed).
    Finished,
}

impl Core {
    /// Takes up to `limit` messages, appends their records, and writes, syncs and signs what
    /// is due: a batch somebody waits on at once, predictions at their flush deadline.
    fn pump(&mut self, limit: usize) -> Pumped {
        if self.finished {
            return Pumped::Finished;
        }
        let mut taken = 0;
        while taken < limit && self.close.is_none() {
            let msg = match self.stash.take() {
                Some(m) => m,
                None => match self.rx.try_recv() {
                    Ok(m) => m,
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        self.close = Some(None);
                        break;
                    }
                },
            };
            match msg {
                Msg::Append { event, ack } => self.writer.append(&event, ack, &mut self.payload),
                Msg::Checkpoint(ack) => self.cp_waiters.push(ack),
                Msg::Close(ack) => self.close = Some(Some(ack)),
            }
            taken += 1;
        }
        let w = &mut self.writer;
        let now = Instant::now();
        let flush_due = w.first_pending.is_some_and(|t| now >= t + w.flush_interval);
        let mut result = Ok(());
        if !w.waiters.is_empty()
            || flush_due
            || !self.cp_waiters.is_empty()
            || self.close.is_some()
            || (now >= w.next_cp && w.next_index > w.last_cp_size)
        {
            result = w.flush();
        }
        let cp_due = now >= w.next_cp;
        if result.is_ok()
            && (!self.cp_waiters.is_empty()
                || (self.close.is_some() && w.next_index > w.last_cp_size)
                || (cp_due && w.next_index > w.last_cp_size))
        {
            let signed = w.checkpoint();
            for ack in self.cp_waiters.drain(..) {
                let _ = ack.send(signed.as_ref().cloned().map_err(|_| AuditError::Stopped));
            }
            if let Err(e) = signed {
                result = Err(e);
            }
        }
        if cp_due {
            w.next_cp = now + w.checkpoint_interval;
        }
        if let Err(err) = result {
            tracing::error!(error = %super::error_chain(&err), "audit log write failed; refusing further records");
            let cp_waiters = std::mem::take(&mut self.cp_waiters);
            self.writer.stop(&self.rx, cp_waiters);
            self.finished = true;
            return Pumped::Finished;
        }
        if let Some(ack) = self.close.take() {
            self.writer.shared.stopped.store(true, Ordering::Release);
            if let Some(ack) = ack {
                let _ = ack.send(());
            }
            self.finished = true;
            return Pumped::Finished;
        }
        if taken == limit {
            Pumped::More
        } else {
            Pumped::Empty
        }
    }

    /// When the writer must next run by itself: the flush deadline of the oldest pending
    /// record, or the next checkpoint; and whether records are pending.
    fn deadline(&self) -> (Instant, bool) {
        let w = &self.writer;
        match w.first_pending {
            Some(t) => (w.next_cp.min(t + w.flush_interval), true),
            None => (w.next_cp, false),
        }
    }

    /// Whether a message is queued (taking it into `stash`).
    fn has_message(&mut self) -> bool {
        if self.stash.is_none() {
            match self.rx.try_recv() {
                Ok(m) => self.stash = Some(m),
                Err(TryRecvError::Empty) => return false,
                Err(TryRecvError::Disconnected) => return true,
            }
        }
        true
    }
}

/// Locks the core; a thread that panicked holding it left nothing half-done that matters more
/// than refusing further records, which `finished` already does.
fn lock(core: &Mutex<Core>) -> std::sync::MutexGuard<'_, Core> {
    core.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Messages the idle-priority thread handles per hold of the lock: a chunk of ~0.2 ms of
/// CPU, so the urgent thread never waits long behind a starved holder.
const IDLE_CHUNK: usize = 64;

/// The writer's background thread: predictions and order intents, written and synced at
/// their flush deadline, and the periodic checkpoints. It runs at the idle scheduling
/// priority (`SCHED_IDLE`), so its batches never delay the predict path's threads; when the
/// CPU is saturated it falls behind, and whatever somebody waits on is carried by the urgent
/// thread instead (see [`run_urgent`]).
fn run_idle(core: &Mutex<Core>, wake: &Wake) {
    if let Err(e) = thread_priority::set_thread_priority_and_policy(
        thread_priority::thread_native_id(),
        thread_priority::ThreadPriority::Min,
        thread_priority::ThreadSchedulePolicy::Normal(
            thread_priority::NormalThreadSchedulePolicy::Idle,
        ),
    ) {
        tracing::warn!(error = %e, "the audit writer could not lower its priority; its batches share the CPU with predictions");
    }
    loop {
        if wake.held.load(Ordering::Acquire) {
            std::thread::park_timeout(Duration::from_millis(5));
            if lock(core).finished {
                return;
            }
            continue;
        }
        loop {
            match lock(core).pump(IDLE_CHUNK) {
                Pumped::More => {}
                Pumped::Empty => break,
                Pumped::Finished => {
                    wake.urgent();
                    return;
                }
            }
        }
        let (deadline, pending) = lock(core).deadline();
        if !pending {
            // Nothing to flush: sleep to the checkpoint, but let the next record wake this
            // thread, so that its flush clock starts when it is queued. Arm, then look again:
            // a record queued before the arming is seen here, one after it unparks (both
            // sides fence, see `AuditLog::send`).
            wake.armed.store(true, Ordering::SeqCst);
            std::sync::atomic::fence(Ordering::SeqCst);
            if lock(core).has_message() {
                wake.armed.store(false, Ordering::SeqCst);
                continue;
            }
        }
        // Records pending and nobody waiting: park, not `recv`, so that each prediction's
        // send does not wake this thread (a futex wake and a context switch per prediction:
        // 10,000 a second at the load target).
        std::thread::park_timeout(deadline.saturating_duration_since(Instant::now()));
        wake.armed.store(false, Ordering::SeqCst);
    }
}

/// The writer's urgent thread, at normal priority: unparked by every message somebody waits
/// on (an admin record, a checkpoint, a close), it writes and syncs everything queued up to
/// it and answers. Admin acknowledgements therefore never wait for the idle thread's share
/// of a saturated CPU.
fn run_urgent(core: &Mutex<Core>, wake: &Wake) {
    loop {
        std::thread::park();
        loop {
            match lock(core).pump(MAX_BATCH) {
                Pumped::More => {}
                Pumped::Empty => break,
                Pumped::Finished => {
                    wake.idle();
                    return;
                }
            }
        }
        // This flush may have emptied what the idle thread sleeps for: it re-arms, so the
        // next record's flush clock starts when that record is queued.
        wake.idle();
    }
}

/// How senders wake the writer's threads (set once both are spawned).
#[derive(Default)]
struct Wake {
    /// The idle-priority thread, woken by the first record after a quiet spell.
    idle: OnceLock<std::thread::Thread>,
    /// The urgent thread, woken by messages somebody waits on.
    urgent: OnceLock<std::thread::Thread>,
    /// Set while the idle thread sleeps with nothing pending.
    armed: AtomicBool,
    /// Set by [`AuditLog::hold_idle_writer`]: the idle thread does nothing.
    held: AtomicBool,
}

impl Wake {
    fn idle(&self) {
        if let Some(t) = self.idle.get() {
            t.unpark();
        }
    }

    fn urgent(&self) {
        if let Some(t) = self.urgent.get() {
            t.unpark();
        }
    }
}

impl Writer {
    /// After a failed write: answer everything with an error from now on.
    fn stop(
        &mut self,
        rx: &mpsc::Receiver<Msg>,
        cp_waiters: Vec<oneshot::Sender<Result<Checkpoint, AuditError>>>,
    ) {
        self.shared.stopped.store(true, Ordering::Release);
        for (ack, _) in self.waiters.drain(..) {
            let _ = ack.send(Err(AuditError::Stopped));
        }
        for ack in cp_waiters {
            let _ = ack.send(Err(AuditError::Stopped));
        }
        // Senders check `stopped` first; whatever raced in is answered, then the channel drops.
        while let Ok(msg) = rx.try_recv() {
            match msg {
                Msg::Append { ack: Some(ack), .. } => {
                    let _ = ack.send(Err(AuditError::Stopped));
                }
                Msg::Checkpoint(ack) => {
                    let _ = ack.send(Err(AuditError::Stopped));
                }
                Msg::Close(ack) => {
                    let _ = ack.send(());
                }
                Msg::Append { ack: None, .. } => {}
            }
        }
    }

    fn append(
        &mut self,
        event: &AuditEvent,
        ack: Option<oneshot::Sender<Result<Receipt, AuditError>>>,
        payload: &mut Vec<u8>,
    ) {
        let time_us = now_micros().max(self.last_time);
        self.last_time = time_us;
        payload.clear();
        encode_payload(self.next_index, time_us, &self.last_leaf, event, payload);
        let frame_len = (FRAME_HEADER + payload.len()) as u64;
        let used = self.seg_len + self.buf.len() as u64;
        if used + frame_len > self.segment_bytes
            && used > SEGMENT_MAGIC.len() as u64
            && let Err(e) = self.flush().and_then(|()| self.rotate())
        {
            tracing::error!(error = %e, "audit segment rotation failed");
            self.shared.stopped.store(true, Ordering::Release);
            if let Some(ack) = ack {
                let _ = ack.send(Err(AuditError::Stopped));
            }
            return;
        }
        let offset = self.seg_len + self.buf.len() as u64;
        encode_frame(payload, &mut self.buf);
        let leaf = leaf_hash(payload);
        self.pending.push((leaf, offset));
        self.last_leaf = leaf;
        let receipt = Receipt {
            index: self.next_index,
            time_us,
        };
        self.next_index += 1;
        self.first_pending.get_or_insert_with(Instant::now);
        if let Some(ack) = ack {
            self.waiters.push((ack, receipt));
        }
        if self.buf.len() >= WRITE_CHUNK && self.waiters.is_empty() {
            // Large batches of predictions: write without syncing, the flush syncs.
            if let Err(e) = self.write_buf() {
                tracing::error!(error = %e, "audit write failed");
                self.shared.stopped.store(true, Ordering::Release);
            }
        }
    }

    /// Writes the buffer to the segment (no sync).
    fn write_buf(&mut self) -> Result<(), AuditError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.file
            .write_all(&self.buf)
            .map_err(io_err(&self.seg_path))?;
        self.seg_len += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Writes and syncs everything pending, publishes it to the tree, and acknowledges it.
    fn flush(&mut self) -> Result<(), AuditError> {
        if self.shared.stopped.load(Ordering::Acquire) && !self.pending.is_empty() {
            return Err(AuditError::Stopped);
        }
        if self.pending.is_empty() {
            return Ok(());
        }
        self.write_buf()?;
        self.file.sync_data().map_err(io_err(&self.seg_path))?;
        {
            let mut view = self
                .shared
                .view
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for (hash, offset) in self.pending.drain(..) {
                view.tree.push(hash);
                view.offsets.push(offset);
            }
        }
        self.first_pending = None;
        for (ack, receipt) in self.waiters.drain(..) {
            let _ = ack.send(Ok(receipt));
        }
        Ok(())
    }

    /// Starts a new segment at the next index (after a flush).
    fn rotate(&mut self) -> Result<(), AuditError> {
        let path = segment_path(&self.dir, self.next_index);
        self.file = create_with_magic(&path, SEGMENT_MAGIC).map_err(io_err(&path))?;
        self.seg_path = path.clone();
        self.seg_len = SEGMENT_MAGIC.len() as u64;
        self.seg_first = self.next_index;
        self.shared
            .view
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .segments
            .push((self.seg_first, path));
        Ok(())
    }

    /// Signs the current tree and appends the checkpoint, synced.
    fn checkpoint(&mut self) -> Result<Checkpoint, AuditError> {
        let (size, root) = {
            let view = self
                .shared
                .view
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let size = view.tree.len();
            (size, view.tree.root(size)?)
        };
        let time_us = now_micros().max(self.last_time);
        let cp = Checkpoint::sign(&self.key, size, root, time_us);
        let mut frame = Vec::new();
        // A checkpoint of strings and integers always serialises.
        encode_frame(
            &serde_json::to_vec(&cp).expect("checkpoint serialises"),
            &mut frame,
        );
        let path = self.dir.join(CHECKPOINT_FILE);
        self.cp_file
            .write_all(&frame)
            .and_then(|()| self.cp_file.sync_data())
            .map_err(io_err(&path))?;
        self.last_cp_size = size;
        *self
            .shared
            .checkpoint
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(cp.clone());
        Ok(cp)
    }
}
