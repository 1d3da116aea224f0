//! The tamper-evident audit log (CMP-AUDIT, CMP-CLOCK, CMP-RETAIN, CMP-GDPR).
//!
//! Typed [`AuditEvent`]s become records with a monotonic UTC microsecond time and an index,
//! framed (length + CRC32) into append-only segment files. An RFC 6962 Merkle tree over the
//! records is signed into Ed25519 [`Checkpoint`]s; [`verify_dir`] checks a directory offline
//! and names the first bad record by file, offset and index.
//!
//! ```
//! use gauntlet_engine::audit::{self, Action, AuditConfig, AuditEvent, AuditLog, Outcome};
//!
//! # tokio::runtime::Runtime::new()?.block_on(async {
//! let tmp = tempfile::tempdir()?;
//! let config = AuditConfig::new(tmp.path().join("log"), tmp.path().join("keys"));
//! let log = AuditLog::open(&config)?;
//! let receipt = log
//!     .record_durable(AuditEvent::new("alice", Action::ModelPromote, Outcome::Ok))
//!     .await?;
//! assert_eq!(receipt.index, 0);
//! let checkpoint = log.checkpoint_now().await?;
//! assert_eq!(checkpoint.size, 1);
//! log.close().await;
//!
//! let report = audit::verify_dir(&config.dir, &audit::VerifyOptions::default())?;
//! assert_eq!((report.records, report.checkpoints), (1, 1));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod checkpoint;
mod config;
pub mod hex;
mod keys;
mod log;
pub mod merkle;
mod record;
mod retention;
mod segment;
mod verify;

pub use self::checkpoint::{CHECKPOINT_ORIGIN, Checkpoint, SignatureError};
pub use self::config::{
    AuditConfig, DEFAULT_CHECKPOINT_INTERVAL, DEFAULT_FLUSH_INTERVAL, DEFAULT_RETENTION,
    DEFAULT_SEGMENT_BYTES, MIN_RETENTION,
};
pub use self::keys::KeyError;
pub use self::log::{
    AuditError, AuditLog, ConsistencyProof, InclusionProof, Receipt, Recovery, TornTail,
};
pub use self::record::{
    Action, AuditEvent, AuditRecord, Outcome, PAYLOAD_HEADER, Pseudonymiser, RecordError,
    decode_payload, now_micros, payload_header, payload_link, rfc3339_micros,
};
pub use self::retention::{PRUNED_FILE, PruneReport};
pub use self::segment::{FrameFault, MAX_PAYLOAD, SEGMENT_EXT};
pub use self::verify::{
    KeySource, VerifyError, VerifyOptions, VerifyReport, read_records, verify_dir,
};

/// File of the signed checkpoints, in the log directory.
pub const CHECKPOINT_FILE: &str = "checkpoints.log";
/// File of the checkpoint public key (hex), in the log directory.
pub const PUBLIC_KEY_FILE: &str = "audit-key.pub";

/// `outer: inner: innermost`.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        out.push_str(": ");
        out.push_str(&e.to_string());
        source = e.source();
    }
    out
}
