//! Requests with a principal, extension discovery and the small helpers every case shares.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, header};
use serde_json::Value;

use gauntlet_engine::http::PRINCIPAL_HEADER;
use gauntlet_harness::{AuditKeyFiles, CaseError, Reply, Target, TargetError};

/// The audit extension's name in `GET /v2` (`extensions`).
pub const AUDIT_EXTENSION: &str = "gauntlet_audit";
/// The trading extension's name (signal route, pre-trade controls, kill switch).
pub const TRADING_EXTENSION: &str = "gauntlet_trading";
/// The four-eyes promotion extension's name.
pub const FOUR_EYES_EXTENSION: &str = "gauntlet_four_eyes";
/// The principal the cases engage the kill switch and lift throttles as: the reference
/// engine's default `trading.risk-principals`.
pub const RISK_PRINCIPAL: &str = "risk-officer";

/// What the cases and gates check: the target's audited twin when the harness can make one
/// (the in-process engine, [`Target::audited`]), with its log's directory and key files; else
/// the target itself, as its operator configured it, and neither.
///
/// # Errors
/// [`TargetError::Twin`] when the harness should have made the twin and could not: the
/// cases then have no verdict (an error naming why), rather than checking the plain engine.
pub fn subject(target: &Arc<dyn Target>) -> Result<Subject, TargetError> {
    Ok(match target.audited()? {
        Some(a) => Subject {
            target: a.target,
            dir: Some(a.dir),
            keys: a.keys,
        },
        None => Subject {
            target: Arc::clone(target),
            dir: None,
            keys: None,
        },
    })
}

/// What [`subject`] gives: the target the compliance cases and gates check.
pub struct Subject {
    /// The audited twin, or the target itself.
    pub target: Arc<dyn Target>,
    /// The twin's audit log directory; `None` by URL.
    pub dir: Option<PathBuf>,
    /// The twin's key files; `None` by URL.
    pub keys: Option<AuditKeyFiles>,
}

/// Sends `method path` as `principal` (header `x-gauntlet-principal`), with a JSON body.
///
/// # Errors
/// [`TargetError`] when no response came back.
pub async fn call(
    target: &dyn Target,
    method: Method,
    path: &str,
    principal: Option<&str>,
    body: Option<&Value>,
) -> Result<Reply, TargetError> {
    let mut builder = Request::builder().method(method).uri(path);
    if let Some(p) = principal {
        builder = builder.header(PRINCIPAL_HEADER, p);
    }
    let bytes = match body {
        Some(b) => {
            builder = builder.header(header::CONTENT_TYPE, "application/json");
            Bytes::from(b.to_string())
        }
        None => Bytes::new(),
    };
    let request = builder.body(bytes).map_err(|e| TargetError::BadRequest {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    Ok(target.send(request).await?.into())
}

/// The extensions the target lists in `GET /v2`.
///
/// # Errors
/// [`TargetError`] when `GET /v2` gets no answer.
pub async fn extensions(target: &dyn Target) -> Result<Vec<String>, TargetError> {
    let reply = call(target, Method::GET, "/v2", None, None).await?;
    let meta: Value = reply.json().unwrap_or_default();
    Ok(meta["extensions"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default())
}

/// Skips the case unless the target advertises every extension of `needed`.
pub(crate) async fn require_extensions(
    target: &dyn Target,
    needed: &[&str],
) -> Result<(), CaseError> {
    let have = extensions(target).await?;
    let missing: Vec<&str> = needed
        .iter()
        .copied()
        .filter(|n| !have.iter().any(|h| h == n))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(CaseError::Skip(format!(
            "the target does not advertise the {} extension{} in GET /v2",
            missing.join(", "),
            if missing.len() > 1 { "s" } else { "" }
        )))
    }
}

/// The JSON body of a reply with status `expected`, or a failure naming the request.
pub(crate) fn expect_status(
    reply: &Reply,
    expected: u16,
    request: &str,
) -> Result<Value, CaseError> {
    let body: Value = reply.json().unwrap_or(Value::Null);
    if reply.status.as_u16() == expected {
        Ok(body)
    } else {
        Err(CaseError::Fail(format!(
            "{request}: expected status {expected}, got {} {}",
            reply.status.as_u16(),
            excerpt(&reply.text())
        )))
    }
}

/// At most 300 characters of a body, for messages.
pub(crate) fn excerpt(text: &str) -> String {
    let mut out: String = text.chars().take(300).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}

/// A name unique to this case run (seeded), valid as a model, algorithm or principal id.
pub(crate) fn scratch(prefix: &str, seed: u64) -> String {
    format!("{prefix}-{:012x}", seed & 0xffff_ffff_ffff)
}
