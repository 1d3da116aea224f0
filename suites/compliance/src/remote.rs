//! Verifying a served audit log through its routes (`gauntlet_audit`): the latest checkpoint's
//! signature, every record's inclusion proof against it, the bytes behind each leaf, the
//! records' order, clock and links, and optionally that the log only grew since a checkpoint
//! seen before (an RFC 6962 consistency proof).
//!
//! What the server serves is checked against what it signed: a record changed on its disk
//! after it was written no longer hashes to the leaf in the signed tree and is named by index.

use http::{Method, StatusCode};
use serde::Deserialize;

use gauntlet_engine::audit::merkle::{self, Hash};
use gauntlet_engine::audit::{Checkpoint, hex, payload_header, payload_link};
use gauntlet_harness::{Target, TargetError};

use crate::support::call;

/// A checkpoint seen before, which the log must extend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Since {
    /// Its tree size.
    pub size: u64,
    /// Its root.
    pub root: Hash,
}

/// What to trust and how far to go.
#[derive(Debug, Clone, Default)]
pub struct RemoteOptions {
    /// The log's public key, obtained out of band; without it the key the server names in its
    /// checkpoint is used (the report says so).
    pub public_key: Option<[u8; 32]>,
    /// A checkpoint seen before: the served log must be consistent with it.
    pub since: Option<Since>,
}

/// A served log that verified.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RemoteReport {
    /// Records under the latest checkpoint, pruned ones included.
    pub size: u64,
    /// The latest checkpoint's root, hex.
    pub root: String,
    /// Its time, µs since the epoch.
    pub time_us: i64,
    /// The key it was checked with, hex.
    pub public_key: String,
    /// Whether that key was given (`true`) or taken from the server.
    pub key_pinned: bool,
    /// Records pruned after the retention period (answered 410): their inclusion is part of
    /// the signed root, their content is gone.
    pub pruned: u64,
    /// Records whose inclusion was proved.
    pub proved: u64,
}

/// Why a served log did not verify, or could not be checked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteError {
    /// The target did not answer.
    #[error(transparent)]
    Unreachable(#[from] TargetError),
    /// The target serves no audit log (no checkpoint route, or none signed yet).
    #[error("failed to verify: {0}")]
    NoLog(String),
    /// An answer is not what the protocol says.
    #[error("failed to verify: {request} answered {status}: {detail}")]
    Protocol {
        /// The request.
        request: String,
        /// Its status.
        status: u16,
        /// What was wrong.
        detail: String,
    },
    /// The checkpoint's signature does not verify: forged, or signed by another key.
    #[error("checkpoint of size {size} is forged or signed by another key: {reason}")]
    Checkpoint {
        /// The size it claims.
        size: u64,
        /// Why.
        reason: String,
    },
    /// The log is not consistent with the checkpoint seen before: it was rewritten.
    #[error(
        "the log of size {size} is not an extension of the checkpoint of size {since}: {reason}"
    )]
    Inconsistent {
        /// The earlier size.
        since: u64,
        /// The current size.
        size: u64,
        /// Why.
        reason: String,
    },
    /// A record is missing, altered or out of order.
    #[error("record {index}: {reason}")]
    Record {
        /// The first bad record.
        index: u64,
        /// What is wrong.
        reason: String,
    },
}

#[derive(Deserialize)]
struct Inclusion {
    index: u64,
    size: u64,
    leaf: String,
    leaf_hash: String,
    proof: Vec<String>,
    root: String,
}

#[derive(Deserialize)]
struct Consistency {
    first_root: String,
    second_root: String,
    proof: Vec<String>,
}

fn hash(text: &str, what: &str, request: &str) -> Result<Hash, RemoteError> {
    hex::decode32(text).map_err(|e| RemoteError::Protocol {
        request: request.to_owned(),
        status: 200,
        detail: format!("{what} is not 32 bytes of hex: {e}"),
    })
}

/// Verifies the audit log served by `target`. See the module docs.
///
/// # Errors
/// [`RemoteError`]: the first bad record by index, a forged checkpoint, a rewritten history,
/// or why the log could not be checked.
pub async fn verify_target(
    target: &dyn Target,
    options: &RemoteOptions,
) -> Result<RemoteReport, RemoteError> {
    let request = "GET /v2/audit/checkpoint";
    let reply = call(target, Method::GET, "/v2/audit/checkpoint", None, None).await?;
    if reply.status == StatusCode::NOT_FOUND {
        return Err(RemoteError::NoLog(format!(
            "{request} answered 404: {}",
            crate::support::excerpt(&reply.text())
        )));
    }
    let cp: Checkpoint = reply.json().map_err(|e| RemoteError::Protocol {
        request: request.to_owned(),
        status: reply.status.as_u16(),
        detail: format!("not a checkpoint: {e}"),
    })?;
    let key = options.public_key.unwrap_or(cp.public_key);
    cp.verify_with(&key).map_err(|e| RemoteError::Checkpoint {
        size: cp.size,
        reason: e.to_string(),
    })?;
    if let Some(since) = options.since {
        check_consistency(target, since, &cp).await?;
    }
    let mut previous: Option<(Hash, i64)> = None;
    let (mut pruned, mut proved) = (0, 0);
    for index in 0..cp.size {
        let path = format!("/v2/audit/proof/inclusion?index={index}&size={}", cp.size);
        let request = format!("GET {path}");
        let reply = call(target, Method::GET, &path, None, None).await?;
        if reply.status == StatusCode::GONE && previous.is_none() {
            pruned += 1;
            continue;
        }
        if reply.status != StatusCode::OK {
            return Err(RemoteError::Record {
                index,
                reason: format!(
                    "{request} answered {}: {} (the record is missing)",
                    reply.status.as_u16(),
                    crate::support::excerpt(&reply.text())
                ),
            });
        }
        let p: Inclusion = reply.json().map_err(|e| RemoteError::Protocol {
            request: request.clone(),
            status: 200,
            detail: format!("not an inclusion proof: {e}"),
        })?;
        let leaf = hex::decode(&p.leaf).map_err(|e| RemoteError::Protocol {
            request: request.clone(),
            status: 200,
            detail: format!("leaf is not hex: {e}"),
        })?;
        let computed = merkle::leaf_hash(&leaf);
        let recorded = hash(&p.leaf_hash, "leaf_hash", &request)?;
        if computed != recorded {
            return Err(RemoteError::Record {
                index,
                reason:
                    "its stored bytes no longer hash to the leaf the log recorded (altered on disk)"
                        .to_owned(),
            });
        }
        if p.index != index || p.size != cp.size || hash(&p.root, "root", &request)? != cp.root {
            return Err(RemoteError::Record {
                index,
                reason: format!(
                    "the proof is for index {} of size {} under another root than the signed one",
                    p.index, p.size
                ),
            });
        }
        let proof = p
            .proof
            .iter()
            .map(|h| hash(h, "proof", &request))
            .collect::<Result<Vec<_>, _>>()?;
        merkle::verify_inclusion(index, cp.size, &computed, &proof, &cp.root).map_err(|e| {
            RemoteError::Record {
                index,
                reason: format!("not in the signed tree: {e}"),
            }
        })?;
        let Some((found, time_us)) = payload_header(&leaf) else {
            return Err(RemoteError::Record {
                index,
                reason: "payload shorter than its header".to_owned(),
            });
        };
        if found != index {
            return Err(RemoteError::Record {
                index,
                reason: format!("holds index {found} (a record was removed or reordered)"),
            });
        }
        if let Some((prev_leaf, prev_time)) = previous {
            if time_us < prev_time {
                return Err(RemoteError::Record {
                    index,
                    reason: format!("timed {time_us} µs, before its predecessor's {prev_time} µs"),
                });
            }
            if payload_link(&leaf) != Some(prev_leaf) {
                return Err(RemoteError::Record {
                    index,
                    reason: format!("does not link to record {}'s hash", index - 1),
                });
            }
        }
        previous = Some((computed, time_us));
        proved += 1;
    }
    Ok(RemoteReport {
        size: cp.size,
        root: hex::encode(&cp.root),
        time_us: cp.time_us,
        public_key: hex::encode(&key),
        key_pinned: options.public_key.is_some(),
        pruned,
        proved,
    })
}

async fn check_consistency(
    target: &dyn Target,
    since: Since,
    cp: &Checkpoint,
) -> Result<(), RemoteError> {
    let inconsistent = |reason: String| RemoteError::Inconsistent {
        since: since.size,
        size: cp.size,
        reason,
    };
    if since.size > cp.size {
        return Err(inconsistent(
            "the log shrank: records were removed".to_owned(),
        ));
    }
    let path = format!(
        "/v2/audit/proof/consistency?first={}&second={}",
        since.size, cp.size
    );
    let request = format!("GET {path}");
    let reply = call(target, Method::GET, &path, None, None).await?;
    if reply.status != StatusCode::OK {
        return Err(RemoteError::Protocol {
            request,
            status: reply.status.as_u16(),
            detail: crate::support::excerpt(&reply.text()),
        });
    }
    let c: Consistency = reply.json().map_err(|e| RemoteError::Protocol {
        request: request.clone(),
        status: 200,
        detail: format!("not a consistency proof: {e}"),
    })?;
    if hash(&c.first_root, "first_root", &request)? != since.root
        || hash(&c.second_root, "second_root", &request)? != cp.root
    {
        return Err(inconsistent(
            "the served roots are not the ones seen and signed".to_owned(),
        ));
    }
    let proof = c
        .proof
        .iter()
        .map(|h| hash(h, "proof", &request))
        .collect::<Result<Vec<_>, _>>()?;
    merkle::verify_consistency(since.size, cp.size, &since.root, &cp.root, &proof)
        .map_err(|e| inconsistent(e.to_string()))
}
