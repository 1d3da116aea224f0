//! The `[audit]` table of the engine configuration.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Default time predictions wait in memory before they are written and synced.
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_millis(10);
/// Default time between signed checkpoints (when the log grew).
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(10);
/// Default segment size before a new segment file is started (64 MiB).
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;
/// Default retention: five years of 365.25 days (RTS 6 Art. 28, MiFID II Art. 16(6)).
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(5 * 31_557_600);
/// Shortest retention accepted: the regulatory five years.
pub const MIN_RETENTION: Duration = DEFAULT_RETENTION;

/// `[audit]`: where the log lives, its keys and its timings. The key files must lie outside
/// `dir`, so that the log can be handed to an auditor without the keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AuditConfig {
    /// Directory of the segments, the checkpoint file and the public key.
    pub dir: PathBuf,
    /// Ed25519 signing key (32 bytes hex, `0600`), created on first start.
    pub signing_key_file: PathBuf,
    /// HMAC key for client pseudonyms (32 bytes hex, `0600`), created on first start.
    pub pseudonym_key_file: PathBuf,
    /// How long predictions and order intents may wait before they are written (`10ms`).
    /// Admin records never wait: they are synced before the action is acknowledged.
    #[serde(with = "humantime_serde", default = "default_flush")]
    pub flush_interval: Duration,
    /// Time between signed checkpoints, when the log grew (`10s`).
    #[serde(with = "humantime_serde", default = "default_checkpoint")]
    pub checkpoint_interval: Duration,
    /// Bytes after which a new segment is started (64 MiB).
    #[serde(default = "default_segment_bytes")]
    pub segment_bytes: u64,
    /// How long records must be kept (`5years`, at least that): pruning refuses younger
    /// segments.
    #[serde(with = "humantime_serde", default = "default_retention")]
    pub retention: Duration,
    /// Four-eyes promotion (CMP-4EYES, CMP-TEST; `false` by default): `promote` then needs an
    /// approval by a principal other than the loader and a passing Gauntlet run recorded
    /// for the staged artifact's digest. Advertised as the `gauntlet_four_eyes` extension.
    #[serde(default)]
    pub four_eyes: bool,
}

fn default_flush() -> Duration {
    DEFAULT_FLUSH_INTERVAL
}
fn default_checkpoint() -> Duration {
    DEFAULT_CHECKPOINT_INTERVAL
}
fn default_segment_bytes() -> u64 {
    DEFAULT_SEGMENT_BYTES
}
fn default_retention() -> Duration {
    DEFAULT_RETENTION
}

impl AuditConfig {
    /// A configuration with every default, the keys in `keys` and the log in `dir`.
    pub fn new(dir: impl Into<PathBuf>, keys: impl Into<PathBuf>) -> AuditConfig {
        let keys = keys.into();
        AuditConfig {
            dir: dir.into(),
            signing_key_file: keys.join("audit-signing.key"),
            pseudonym_key_file: keys.join("audit-pseudonym.key"),
            flush_interval: DEFAULT_FLUSH_INTERVAL,
            checkpoint_interval: DEFAULT_CHECKPOINT_INTERVAL,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            retention: DEFAULT_RETENTION,
            four_eyes: false,
        }
    }

    /// Checks ranges and that the keys are outside the log directory.
    ///
    /// # Errors
    /// `(key, message)` naming the kebab-case key and the limit.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.flush_interval.is_zero() || self.flush_interval > Duration::from_secs(1) {
            return Err((
                "audit.flush-interval",
                format!(
                    "must be between 1µs and 1s, got {}",
                    humantime::format_duration(self.flush_interval)
                ),
            ));
        }
        if self.checkpoint_interval.is_zero() {
            return Err((
                "audit.checkpoint-interval",
                "must be greater than 0".to_owned(),
            ));
        }
        if self.segment_bytes < 4096 {
            return Err((
                "audit.segment-bytes",
                format!("must be at least 4096, got {}", self.segment_bytes),
            ));
        }
        if self.retention < MIN_RETENTION {
            return Err((
                "audit.retention",
                format!(
                    "must be at least {} (five years), got {}",
                    humantime::format_duration(MIN_RETENTION),
                    humantime::format_duration(self.retention)
                ),
            ));
        }
        for (key, file) in [
            ("audit.signing-key-file", &self.signing_key_file),
            ("audit.pseudonym-key-file", &self.pseudonym_key_file),
        ] {
            if file.starts_with(&self.dir) {
                return Err((
                    key,
                    format!(
                        "must lie outside audit.dir `{}`, so the log can be shared without its keys",
                        self.dir.display()
                    ),
                ));
            }
        }
        Ok(())
    }
}
