//! What every attack shares: the attacked target and what it may use, requests sent exactly as
//! built, the record of every answer (for the leak scan), verdicts and redaction.

use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http::{Method, Request};

use gauntlet_engine::artifact::ModelArtifact;
use gauntlet_engine::security::sign::{self, Credentials};
use gauntlet_harness::target::security::RawEndpoint;
use gauntlet_harness::{Capability, Reply, SecurityAccess, SuiteCtx, Target, Unsigned};
use gauntlet_reports::Outcome;

/// A case's verdict and its message (what was sent, what came back).
pub(crate) struct Verdict {
    pub(crate) outcome: Outcome,
    pub(crate) message: String,
}

impl Verdict {
    pub(crate) fn pass(message: impl Into<String>) -> Verdict {
        Verdict {
            outcome: Outcome::Pass,
            message: message.into(),
        }
    }
    pub(crate) fn fail(message: impl Into<String>) -> Verdict {
        Verdict {
            outcome: Outcome::Fail,
            message: message.into(),
        }
    }
    pub(crate) fn skip(reason: impl Into<String>) -> Verdict {
        let reason = reason.into();
        Verdict {
            outcome: Outcome::Skip {
                reason: reason.clone(),
            },
            message: reason,
        }
    }
    pub(crate) fn error(message: impl Into<String>) -> Verdict {
        Verdict {
            outcome: Outcome::Error,
            message: message.into(),
        }
    }
}

/// Early return from an attack with a verdict.
pub(crate) type Step<T> = Result<T, Verdict>;

/// The attacked target and what the suite knows of it.
pub(crate) struct Ctx {
    pub(crate) target: Arc<dyn Target>,
    pub(crate) access: Option<SecurityAccess>,
    /// Whether the target is this build's engine in process (the harness made its secured
    /// twin), so that the engine's own loaders can be tried on files of the suite's.
    pub(crate) own_build: bool,
    /// Suffix of every model name this run creates (from the run seed).
    pub(crate) tag: String,
    pub(crate) max_body_bytes: usize,
    /// The reference artifacts, as templates of what the attacks load.
    templates: Vec<ModelArtifact>,
    /// Every answer so far, with what it answered: the leak scan reads them.
    pub(crate) seen: Mutex<Vec<(String, Reply)>>,
}

impl Ctx {
    pub(crate) fn new(ctx: &SuiteCtx) -> Result<Ctx, String> {
        let twin = ctx.target.secured().map_err(|e| e.to_string())?;
        let own_build = twin.is_some();
        let target = twin.unwrap_or_else(|| Arc::clone(&ctx.target));
        let access = target.security().cloned();
        let templates = gauntlet_fixtures::load_embedded()
            .map_err(|e| format!("failed to load the reference artifacts: {e}"))?;
        Ok(Ctx {
            target,
            access,
            own_build,
            tag: format!("{:012x}", ctx.settings.seed & 0xffff_ffff_ffff),
            max_body_bytes: ctx.settings.max_body_bytes,
            templates,
            seen: Mutex::new(Vec::new()),
        })
    }

    /// The reference artifacts.
    pub(crate) fn templates(&self) -> &[ModelArtifact] {
        &self.templates
    }

    /// A model name for one attack: `sec-{what}-{tag}`.
    pub(crate) fn model(&self, what: &str) -> String {
        format!("sec-{what}-{}", self.tag)
    }

    /// `ref-linear`, renamed: what the attacks load.
    pub(crate) fn artifact(&self, name: &str, version: &str, bias: f64) -> Step<ModelArtifact> {
        let mut a = self
            .templates
            .iter()
            .find(|m| m.name == "ref-linear")
            .cloned()
            .ok_or_else(|| Verdict::error("no reference artifact ref-linear"))?;
        a.name = name.to_owned();
        a.version = version.to_owned();
        if let gauntlet_engine::artifact::ModelParams::Linear { intercept, .. } = &mut a.model {
            *intercept += bias;
        }
        Ok(a)
    }

    pub(crate) fn has(&self, capability: Capability) -> bool {
        self.target.capabilities().contains(&capability)
    }

    /// Skips unless the target has every capability.
    pub(crate) fn needs(&self, capabilities: &[Capability]) -> Step<()> {
        match capabilities.iter().find(|c| !self.has(**c)) {
            Some(c) => Err(Verdict::skip(format!("the target does not offer the {c}"))),
            None => Ok(()),
        }
    }

    /// What the target gave the suite; skips when nothing.
    pub(crate) fn access(&self) -> Step<&SecurityAccess> {
        self.access.as_ref().ok_or_else(|| {
            Verdict::skip("the target offers no security access (neither credentials nor keys)")
        })
    }

    /// The target's socket address, for attacks below HTTP; skips when it is not known.
    pub(crate) fn raw(&self) -> Step<&RawEndpoint> {
        self.access()?
            .raw
            .as_ref()
            .ok_or_else(|| Verdict::skip("the target's socket address is not known"))
    }

    /// Credentials that may make `method path`; skips when there are none.
    pub(crate) fn signer(&self, method: &str, path: &str) -> Step<&Credentials> {
        self.access()?.signer(method, path).ok_or_else(|| {
            Verdict::skip(format!(
                "no admin credentials that may call {method} {path} were given for this target \
                 (--admin-credentials FILE, or GAUNTLET_ADMIN_KEY_ID and GAUNTLET_ADMIN_SECRET)"
            ))
        })
    }

    /// Sends a request exactly as built (no signature added; the target's extra headers
    /// still are), and records the answer.
    pub(crate) async fn send(
        &self,
        what: &str,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: Bytes,
    ) -> Step<Reply> {
        let mut builder = Request::builder().method(method).uri(path);
        for (name, value) in headers {
            builder = builder.header(*name, value.as_str());
        }
        let mut request = builder
            .body(body)
            .map_err(|e| Verdict::error(format!("failed to build {what}: {e}")))?;
        request.extensions_mut().insert(Unsigned);
        let reply: Reply = self
            .target
            .send(request)
            .await
            .map_err(|e| Verdict::error(format!("{what}: {e}")))?
            .into();
        self.record(what, &reply);
        Ok(reply)
    }

    pub(crate) fn record(&self, what: &str, reply: &Reply) {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((what.to_owned(), reply.clone()));
    }

    /// `text` with every secret the run used replaced by `***`.
    pub(crate) fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for secret in self.access.iter().flat_map(|a| a.secrets.iter()) {
            for form in encodings(secret) {
                if form.len() >= 8 {
                    out = out.replace(&form, "***");
                }
            }
        }
        out
    }
}

/// The five signature headers for a request, plus its content type when it has one.
#[expect(
    clippy::too_many_arguments,
    reason = "each is one signed part of the request"
)]
pub(crate) fn signed(
    key_id: &str,
    secret: &[u8],
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
    timestamp: u64,
    nonce: &str,
) -> Vec<(&'static str, String)> {
    let mut headers = sign::signature_headers(
        secret,
        key_id,
        method,
        path,
        content_type,
        body,
        timestamp,
        nonce,
    );
    if let Some(ct) = content_type {
        headers.push(("content-type", ct.to_owned()));
    }
    headers
}

/// Unix time now, in seconds.
pub(crate) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The body of a JSON load call carrying `artifact`.
pub(crate) fn load_body(artifact: &ModelArtifact) -> Step<Bytes> {
    serde_json::to_vec(&serde_json::json!({ "parameters": { "artifact": artifact } }))
        .map(Bytes::from)
        .map_err(|e| Verdict::error(format!("failed to serialise an artifact: {e}")))
}

/// `status body-excerpt` of a reply, for messages.
pub(crate) fn answer(reply: &Reply) -> String {
    let text = reply.text();
    let text = text.trim();
    let cut: String = text.chars().take(160).collect();
    if cut.is_empty() {
        format!("{} (empty body)", reply.status.as_u16())
    } else if cut.len() < text.len() {
        format!("{} {cut}…", reply.status.as_u16())
    } else {
        format!("{} {cut}", reply.status.as_u16())
    }
}

/// A refusal is a 401 or 403 (the reference engine answers 401 for a bad signature, 403 for a
/// role); a 2xx is the attack succeeding; anything else is a wrong answer.
pub(crate) fn refused(sent: &str, reply: &Reply, expected: u16) -> Verdict {
    let status = reply.status.as_u16();
    if status == expected {
        Verdict::pass(format!("sent {sent}; got {}", answer(reply)))
    } else if reply.status.is_success() {
        Verdict::fail(format!(
            "sent {sent}; the target ACCEPTED it: {} (expected {expected})",
            answer(reply)
        ))
    } else {
        Verdict::fail(format!(
            "sent {sent}; expected status {expected}, got {}",
            answer(reply)
        ))
    }
}

/// The forms a secret may leak in: raw, hex (either case), base64 (standard, unpadded,
/// URL-safe).
pub(crate) fn encodings(secret: &[u8]) -> Vec<String> {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    let hex = sign::hex(secret);
    let mut forms = vec![
        hex.to_ascii_uppercase(),
        hex,
        STANDARD.encode(secret),
        STANDARD_NO_PAD.encode(secret),
        URL_SAFE_NO_PAD.encode(secret),
    ];
    if let Ok(raw) = std::str::from_utf8(secret) {
        forms.push(raw.to_owned());
    }
    forms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_cover_raw_hex_and_base64() {
        let forms = encodings(b"s3cret-value!");
        for expected in [
            "s3cret-value!",
            "7333637265742d76616c756521",
            "7333637265742D76616C756521",
            "czNjcmV0LXZhbHVlIQ==",
            "czNjcmV0LXZhbHVlIQ",
        ] {
            assert!(
                forms.iter().any(|f| f == expected),
                "{expected} in {forms:?}"
            );
        }
        assert!(
            !encodings(&[0xff, 0xfe, 0x00, 0x01])
                .iter()
                .any(|f| f.contains('\u{fffd}'))
        );
    }
}
