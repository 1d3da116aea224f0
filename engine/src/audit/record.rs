//! The typed audit record and its binary payload.
//!
//! A payload is `index: u64 LE · time_us: i64 LE · link: [u8; 32] · JSON of the
//! [`AuditEvent`]`. The index and time lead in binary so the verifier checks order and clock
//! monotonicity without parsing JSON; `link` is the previous record's Merkle leaf hash (zeros
//! for record 0), so a record rewritten with a valid CRC breaks its successor's link and is
//! named by index and offset, not only by the checkpoint range it falls in. The whole payload
//! is the Merkle leaf.

use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac as _};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// Bytes before the JSON in a payload: index, time and link.
pub const PAYLOAD_HEADER: usize = 48;

/// What was done. Admin actions are made durable before they are acknowledged; predictions
/// and order intents are batched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Action {
    /// A model version was staged.
    ModelLoad,
    /// A model was unloaded.
    ModelUnload,
    /// A staged version went live.
    ModelPromote,
    /// The previous version went live again.
    ModelRollback,
    /// A second principal approved a staged version (four eyes).
    ModelApprove,
    /// A passing Gauntlet run was recorded for an artifact digest.
    GauntletRun,
    /// A remote model's traffic was sent to another backend (blue/green switch).
    ModelBackend,
    /// An inference request was answered.
    Prediction,
    /// A signal was turned into an order intent, or refused.
    OrderIntent,
    /// The kill switch was engaged.
    KillEngage,
    /// The kill switch was released.
    KillRelease,
    /// An operator re-enabled a throttled algorithm.
    ThrottleRelease,
    /// A checkpoint was asked for by an operator.
    CheckpointRequest,
    /// Segments older than the retention period were pruned (their hashes kept).
    AuditPrune,
}

impl Action {
    /// Whether the action is acknowledged only once its record is on disk (fsync).
    pub fn is_durable(self) -> bool {
        !matches!(self, Action::Prediction | Action::OrderIntent)
    }
}

/// How the action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Done.
    Ok,
    /// Refused by a control (authorisation, pre-trade limit, kill switch, four eyes).
    Refused,
    /// Failed (bad input, unknown model, internal error).
    Failed,
}

/// What a caller records; the log adds the index and the time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEvent {
    /// Who acted: the authenticated principal (`anonymous` on data routes without one).
    pub principal: String,
    /// What was done.
    pub action: Action,
    /// The model, when the action concerns one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The model version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The request id the client sent, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The client's pseudonym ([`Pseudonymiser`]), never the identifier itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// How it ended.
    pub outcome: Outcome,
    /// Why it was refused or failed, or what it did (the control's name, a digest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl AuditEvent {
    /// An event with only the required fields.
    pub fn new(principal: impl Into<String>, action: Action, outcome: Outcome) -> AuditEvent {
        AuditEvent {
            principal: principal.into(),
            action,
            model: None,
            version: None,
            request_id: None,
            client: None,
            outcome,
            detail: None,
        }
    }
}

/// A record as stored: its position, its UTC time in microseconds, and the event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Position in the log, from 0.
    pub index: u64,
    /// Microseconds since the Unix epoch, UTC.
    pub time_us: i64,
    /// The same instant as RFC 3339 with microseconds (`2026-12-05T18:51:38.123456Z`).
    pub time: String,
    /// The event.
    #[serde(flatten)]
    pub event: AuditEvent,
}

/// Why a payload could not be read as a record.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// Shorter than the binary header.
    #[error("failed to read record: payload of {0} bytes is shorter than its 48-byte header")]
    Short(usize),
    /// The JSON part is not an event.
    #[error("failed to read record: invalid event JSON")]
    Json(#[from] serde_json::Error),
}

/// Appends the payload of `event` at `index` and `time_us`, linked to the previous record's
/// leaf hash `link`, to `out`.
pub(crate) fn encode_payload(
    index: u64,
    time_us: i64,
    link: &[u8; 32],
    event: &AuditEvent,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(&index.to_le_bytes());
    out.extend_from_slice(&time_us.to_le_bytes());
    out.extend_from_slice(link);
    // Serialising a struct of strings and enums into a Vec cannot fail.
    serde_json::to_writer(&mut *out, event).expect("audit events serialise");
}

/// The index and time of a payload, without parsing its JSON.
pub fn payload_header(payload: &[u8]) -> Option<(u64, i64)> {
    let index = u64::from_le_bytes(payload.get(0..8)?.try_into().ok()?);
    let time = i64::from_le_bytes(payload.get(8..16)?.try_into().ok()?);
    Some((index, time))
}

/// The previous record's leaf hash a payload links to (its bytes 16..48).
pub fn payload_link(payload: &[u8]) -> Option<[u8; 32]> {
    payload.get(16..PAYLOAD_HEADER)?.try_into().ok()
}

/// Reads a payload back into a record.
///
/// # Errors
/// [`RecordError`] when it is short or its JSON is not an event.
pub fn decode_payload(payload: &[u8]) -> Result<AuditRecord, RecordError> {
    let (index, time_us) = payload_header(payload).ok_or(RecordError::Short(payload.len()))?;
    if payload.len() < PAYLOAD_HEADER {
        return Err(RecordError::Short(payload.len()));
    }
    let event: AuditEvent = serde_json::from_slice(&payload[PAYLOAD_HEADER..])?;
    Ok(AuditRecord {
        index,
        time_us,
        time: rfc3339_micros(time_us),
        event,
    })
}

/// Microseconds since the epoch, now (UTC; 0 if the clock is before 1970).
pub fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// `2026-12-05T18:51:38.123456Z`; the raw number when out of chrono's range.
pub fn rfc3339_micros(time_us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(time_us).map_or_else(
        || time_us.to_string(),
        |t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
    )
}

/// Keyed pseudonyms for client identifiers (GDPR Art. 25 and 32): HMAC-SHA256 under a key
/// kept outside the log, so the log alone cannot be reversed by hashing candidate ids.
#[derive(Clone)]
pub struct Pseudonymiser {
    key: [u8; 32],
}

impl std::fmt::Debug for Pseudonymiser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pseudonymiser { key: <redacted> }")
    }
}

impl Pseudonymiser {
    /// A pseudonymiser under `key`.
    pub fn new(key: [u8; 32]) -> Pseudonymiser {
        Pseudonymiser { key }
    }

    /// `HMAC-SHA256(key, id)`, the first 16 bytes in hex (128 bits: no collisions in any
    /// realistic population, half the log space of the full tag).
    pub fn pseudonym(&self, id: &str) -> String {
        // HMAC takes a key of any length: `new_from_slice` cannot fail.
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("hmac accepts any key");
        mac.update(id.as_bytes());
        let tag = mac.finalize().into_bytes();
        super::hex::encode(&tag[..16])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trips_with_binary_header() {
        let mut event = AuditEvent::new("alice", Action::ModelPromote, Outcome::Ok);
        event.model = Some("m".into());
        event.version = Some("2".into());
        let mut buf = Vec::new();
        encode_payload(7, 1_764_960_698_123_456, &[9; 32], &event, &mut buf);
        assert_eq!(payload_header(&buf), Some((7, 1_764_960_698_123_456)));
        assert_eq!(payload_link(&buf), Some([9; 32]));
        let record = decode_payload(&buf).unwrap();
        assert_eq!(record.event, event);
        assert_eq!(record.time, "2025-12-05T18:51:38.123456Z");
        assert!(matches!(
            decode_payload(&buf[..3]),
            Err(RecordError::Short(3))
        ));
    }

    #[test]
    fn pseudonyms_are_keyed_and_stable() {
        let a = Pseudonymiser::new([1; 32]);
        let b = Pseudonymiser::new([2; 32]);
        assert_eq!(a.pseudonym("trader-7"), a.pseudonym("trader-7"));
        assert_ne!(a.pseudonym("trader-7"), b.pseudonym("trader-7"));
        assert_ne!(a.pseudonym("trader-7"), a.pseudonym("trader-8"));
        assert_eq!(a.pseudonym("trader-7").len(), 32);
        assert!(!a.pseudonym("trader-7").contains("trader"));
        assert!(!format!("{a:?}").contains("1, 1"));
    }
}
