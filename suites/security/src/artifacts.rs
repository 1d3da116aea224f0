//! SEC-ENC and SEC-KEYROT: envelope-encrypted artifacts. Each attack first makes a model live
//! from a good envelope (under the target's primary key: a key in rotation still loads), then
//! posts bad envelopes of version 2 and checks that each is refused and that version 1 is still
//! the live one afterwards.

use bytes::Bytes;
use http::Method;

use gauntlet_engine::security::envelope;
use gauntlet_engine::security::keyring::Keyring;
use gauntlet_harness::{Capability, TargetExt};

use crate::probe::{Ctx, Step, Verdict, answer};

const OCTETS: &str = "application/octet-stream";

pub(crate) fn seal(
    ring: &Keyring,
    c: &Ctx,
    name: &str,
    sealed_as: &str,
    version: &str,
) -> Step<Vec<u8>> {
    let artifact = c.artifact(name, version, if version == "1" { 0.0 } else { 1.0 })?;
    let mut artifact = artifact;
    artifact.name = sealed_as.to_owned();
    let plain = serde_json::to_vec(&artifact)
        .map_err(|e| Verdict::error(format!("failed to serialise an artifact: {e}")))?;
    seal_bytes(ring, sealed_as, version, &plain)
}

/// `plain` (an artifact's JSON, well-formed or not) sealed as `name` `version` with `ring`.
pub(crate) fn seal_bytes(ring: &Keyring, name: &str, version: &str, plain: &[u8]) -> Step<Vec<u8>> {
    envelope::encrypt(&mut ring.clone(), name, version, plain)
        .map_err(|e| Verdict::error(format!("failed to seal an artifact: {e}")))
}

/// Posts an envelope as a load; the target signs it (as any admin call of the run).
async fn post(c: &Ctx, model: &str, what: &str, bytes: Vec<u8>) -> Step<gauntlet_harness::Reply> {
    let path = format!("/v2/repository/models/{model}/load");
    c.signer("POST", &path)?;
    let reply = c
        .target
        .call(Method::POST, &path, Bytes::from(bytes), Some(OCTETS))
        .await
        .map_err(|e| Verdict::error(format!("{what}: {e}")))?;
    c.record(what, &reply);
    Ok(reply)
}

/// The target's keyring, and model `name` live at version 1 from a good envelope.
async fn live_v1(c: &Ctx, what: &str) -> Step<(Keyring, String, String)> {
    c.needs(&[Capability::Repository, Capability::ArtifactUpload])?;
    let ring = c.access()?.keyring.clone().ok_or_else(|| {
        Verdict::skip(
            "the target's artifact keyring is not known to gauntlet (give it with \
             --artifact-keyring FILE)",
        )
    })?;
    let model = c.model(what);
    let good = seal(&ring, c, &model, &model, "1")?;
    let reply = post(c, &model, "load of a good envelope", good).await?;
    if !reply.status.is_success() {
        return Err(Verdict::error(format!(
            "a good envelope of {model} version 1 under key {} was not loaded: {}",
            ring.primary().unwrap_or("?"),
            answer(&reply)
        )));
    }
    let promote = format!("/v2/repository/models/{model}/promote");
    c.signer("POST", &promote)?;
    let reply = c
        .target
        .call(Method::POST, &promote, Bytes::new(), None)
        .await
        .map_err(|e| Verdict::error(format!("promote: {e}")))?;
    if !reply.status.is_success() {
        return Err(Verdict::error(format!(
            "POST {promote} was not accepted: {}",
            answer(&reply)
        )));
    }
    let control = format!(
        "a good envelope of {model} v1 under key {} loaded and went live",
        ring.primary().unwrap_or("?")
    );
    Ok((ring, model, control))
}

/// Whether version 1 is still the live version of `model` and version 2 was not staged.
async fn still_v1(c: &Ctx, model: &str) -> Step<Option<String>> {
    let reply = c
        .target
        .get(&format!("/v2/models/{model}"))
        .await
        .map_err(|e| Verdict::error(format!("GET /v2/models/{model}: {e}")))?;
    let meta: serde_json::Value = reply.json().unwrap_or_default();
    let live = meta["parameters"]["live_version"]
        .as_str()
        .map(str::to_owned);
    let staged_v2 = meta["versions"]
        .as_array()
        .is_some_and(|v| v.iter().any(|x| x == "2"));
    Ok(if live.as_deref() != Some("1") {
        Some(format!("the live version is now {live:?}, not \"1\""))
    } else if staged_v2 {
        Some("version 2 was staged".to_owned())
    } else {
        None
    })
}

/// Posts each bad envelope; every one must get a 4xx and leave version 1 live.
async fn refuse_all(c: &Ctx, model: &str, control: String, bad: Vec<(String, Vec<u8>)>) -> Verdict {
    let mut lines = vec![control];
    for (what, bytes) in bad {
        let sent = format!("POST /v2/repository/models/{model}/load with {what}");
        let reply = match post(c, model, &sent, bytes).await {
            Ok(r) => r,
            Err(v) => return v,
        };
        if !reply.status.is_client_error() {
            return Verdict::fail(format!(
                "{}; sent {what}: expected a 4xx refusal, got {}",
                lines.join("; "),
                answer(&reply)
            ));
        }
        match still_v1(c, model).await {
            Ok(None) => {}
            Ok(Some(change)) => {
                return Verdict::fail(format!(
                    "{}; sent {what}: answered {} but {change}",
                    lines.join("; "),
                    reply.status.as_u16()
                ));
            }
            Err(v) => return v,
        }
        lines.push(format!("{what}: {}", answer(&reply)));
    }
    lines.push("version 1 still live".to_owned());
    Verdict::pass(lines.join("; "))
}

pub(crate) fn flip(bytes: &[u8], at: usize) -> Vec<u8> {
    let mut out = bytes.to_vec();
    if let Some(b) = out.get_mut(at) {
        *b ^= 0x40;
    }
    out
}

/// Flipped ciphertext and header bytes, and another model's envelope under this name.
pub(crate) async fn tampered_artifact_is_refused(c: &Ctx) -> Verdict {
    let (ring, model, control) = match live_v1(c, "tamper").await {
        Ok(x) => x,
        Err(v) => return v,
    };
    let bad = (|| -> Step<Vec<(String, Vec<u8>)>> {
        let v2 = seal(&ring, c, &model, &model, "2")?;
        let other = seal(&ring, c, &model, &c.model("tamper-other"), "2")?;
        Ok(vec![
            (
                "a flipped ciphertext byte (20 from the end)".to_owned(),
                flip(&v2, v2.len().saturating_sub(20)),
            ),
            (
                "a flipped header byte (offset 30)".to_owned(),
                flip(&v2, 30),
            ),
            (
                "another model's envelope (the AAD binds the model name)".to_owned(),
                other,
            ),
        ])
    })();
    match bad {
        Ok(bad) => refuse_all(c, &model, control, bad).await,
        Err(v) => v,
    }
}

/// An envelope under a key of the same id but other material.
pub(crate) async fn wrong_key_artifact_is_refused(c: &Ctx) -> Verdict {
    let (ring, model, control) = match live_v1(c, "wrongkey").await {
        Ok(x) => x,
        Err(v) => return v,
    };
    let bad = (|| -> Step<Vec<(String, Vec<u8>)>> {
        let id = ring.primary().unwrap_or("k-live").to_owned();
        let mut other = Keyring::new();
        other
            .add_random(&id)
            .map_err(|e| Verdict::error(format!("failed to make a key: {e}")))?;
        let mut stranger = Keyring::new();
        stranger
            .add_random(&format!("gx-unknown-{}", c.tag))
            .map_err(|e| Verdict::error(format!("failed to make a key: {e}")))?;
        Ok(vec![
            (
                format!("an envelope under another key with the id {id}"),
                seal(&other, c, &model, &model, "2")?,
            ),
            (
                "an envelope under a key id the target does not know".to_owned(),
                seal(&stranger, c, &model, &model, "2")?,
            ),
        ])
    })();
    match bad {
        Ok(bad) => refuse_all(c, &model, control, bad).await,
        Err(v) => v,
    }
}

/// An envelope under a key the target has retired.
pub(crate) async fn retired_key_artifact_is_refused(c: &Ctx) -> Verdict {
    let retired = match c.access() {
        Ok(a) => a.retired.clone(),
        Err(v) => return v,
    };
    let Some(retired) = retired else {
        return Verdict::skip(
            "no key the target has retired is known to gauntlet (give a copy of the target's \
             keyring from before the retirement with --retired-keyring FILE)",
        );
    };
    let (_, model, control) = match live_v1(c, "retired").await {
        Ok(x) => x,
        Err(v) => return v,
    };
    let id = retired.primary().unwrap_or("?").to_owned();
    match seal(&retired, c, &model, &model, "2") {
        Ok(bytes) => {
            refuse_all(
                c,
                &model,
                control,
                vec![(format!("an envelope under the retired key {id}"), bytes)],
            )
            .await
        }
        Err(v) => v,
    }
}
