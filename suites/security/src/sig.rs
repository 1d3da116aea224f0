//! SEC-SIG and SEC-AUTHZ: signed admin calls. Every attack is a model load of a name of its
//! own (`sec-…-{tag}`): an attack that works stages a model, which the message names.

use bytes::Bytes;
use http::Method;

use gauntlet_engine::security::sign;
use gauntlet_harness::{Capability, Reply, TargetExt};

use crate::probe::{Ctx, Step, Verdict, answer, load_body, now, refused, signed};

const JSON: &str = "application/json";
/// Further than any server's allowed skew (the reference engine allows at most 1 h).
const FAR: u64 = 2 * 3600;

fn load_path(model: &str) -> String {
    format!("/v2/repository/models/{model}/load")
}

/// What a load attack needs: the repository with artifact upload, and a signer for loads.
fn setup<'a>(c: &'a Ctx, what: &str) -> Step<(String, String, Bytes, &'a sign::Credentials)> {
    c.needs(&[Capability::Repository, Capability::ArtifactUpload])?;
    let model = c.model(what);
    let path = load_path(&model);
    let creds = c.signer("POST", &path)?;
    let body = load_body(&c.artifact(&model, "1", 0.0)?)?;
    Ok((model, path, body, creds))
}

async fn run(step: impl Future<Output = Step<Verdict>>) -> Verdict {
    step.await.unwrap_or_else(|v| v)
}

/// Control: a correctly signed call is accepted, so the refusals below are about the attack;
/// and a signed read of the staged version's review, which every role may make, is answered.
pub(crate) async fn signed_admin_call_is_accepted(c: &Ctx) -> Verdict {
    run(async {
        let (model, path, body, creds) = setup(c, "signed")?;
        let headers = signed_now(creds.key_id(), creds.secret(), &path, &body);
        let sent = format!("POST {path} signed by key {} now", creds.key_id());
        let reply = c.send(&sent, Method::POST, &path, &headers, body).await?;
        if !reply.status.is_success() {
            return Ok(Verdict::fail(format!(
                "sent {sent}; a correctly signed load was not accepted: {}",
                answer(&reply)
            )));
        }
        let loaded = format!("sent {sent}; got {} (model {model} staged)", answer(&reply));
        // A signed read every role may make: the staged version's review (four-eyes). A
        // target without the route answers 404 and is not held to it.
        let review = format!("/v2/repository/models/{model}/review");
        let (sent, reply) = signed_read(c, creds, &review).await?;
        Ok(match reply.status.as_u16() {
            404 => Verdict::pass(format!(
                "{loaded}; {sent}: {} (no such route)",
                answer(&reply)
            )),
            401 | 403 => Verdict::fail(format!(
                "{loaded}; sent {sent}: a signed read every role may make was refused: {}",
                answer(&reply)
            )),
            _ if reply.status.is_success()
                && reply
                    .json::<serde_json::Value>()
                    .ok()
                    .is_some_and(|r| r["name"] == model) =>
            {
                Verdict::pass(format!("{loaded}; {sent}: {}", answer(&reply)))
            }
            _ => Verdict::fail(format!(
                "{loaded}; sent {sent}: expected 200 with the staged version of {model}, got {}",
                answer(&reply)
            )),
        })
    })
    .await
}

/// A signature made with a secret the server does not hold, under a real key id.
pub(crate) async fn forged_signature_is_refused(c: &Ctx) -> Verdict {
    run(async {
        let (_, path, body, creds) = setup(c, "forged")?;
        let forged = sign::random_secret();
        let headers = signed_now(creds.key_id(), &forged, &path, &body);
        let sent = format!(
            "POST {path} under key id {} signed with a random secret",
            creds.key_id()
        );
        let reply = c.send(&sent, Method::POST, &path, &headers, body).await?;
        Ok(refused(&sent, &reply, 401))
    })
    .await
}

async fn dated(c: &Ctx, what: &str, timestamp: u64, label: &str) -> Verdict {
    run(async {
        let (_, path, body, creds) = setup(c, what)?;
        let headers = signed(
            creds.key_id(),
            creds.secret(),
            "POST",
            &path,
            Some(JSON),
            &body,
            timestamp,
            &sign::random_nonce(),
        );
        let sent = format!(
            "POST {path} correctly signed by key {} but dated {label}",
            creds.key_id()
        );
        let reply = c.send(&sent, Method::POST, &path, &headers, body).await?;
        Ok(refused(&sent, &reply, 401))
    })
    .await
}

/// A valid signature two hours old.
pub(crate) async fn expired_signature_is_refused(c: &Ctx) -> Verdict {
    dated(c, "expired", now() - FAR, "2 h ago").await
}

/// A valid signature dated two hours ahead.
pub(crate) async fn future_dated_signature_is_refused(c: &Ctx) -> Verdict {
    dated(c, "future", now() + FAR, "2 h ahead").await
}

/// The same signed call twice: the second is a replay.
pub(crate) async fn replayed_call_is_refused(c: &Ctx) -> Verdict {
    run(async {
        let (_, path, body, creds) = setup(c, "replay")?;
        let headers = signed_now(creds.key_id(), creds.secret(), &path, &body);
        let first = format!("POST {path} signed by key {}", creds.key_id());
        let reply = c
            .send(&first, Method::POST, &path, &headers, body.clone())
            .await?;
        if !reply.status.is_success() {
            return Ok(Verdict::error(format!(
                "sent {first}; the original call was not accepted, so a replay proves nothing: {}",
                answer(&reply)
            )));
        }
        let sent = format!("{first}, then the same bytes again (same nonce)");
        let again = c.send(&sent, Method::POST, &path, &headers, body).await?;
        Ok(refused(&sent, &again, 401))
    })
    .await
}

/// A body swapped after signing: version 1 signed, version 2 (other weights) sent.
pub(crate) async fn swapped_body_is_refused(c: &Ctx) -> Verdict {
    run(async {
        let (model, path, body, creds) = setup(c, "swap")?;
        let headers = signed_now(creds.key_id(), creds.secret(), &path, &body);
        let other = load_body(&c.artifact(&model, "2", 1.0)?)?;
        let sent = format!(
            "POST {path} signed by key {} over version 1, carrying version 2",
            creds.key_id()
        );
        let reply = c.send(&sent, Method::POST, &path, &headers, other).await?;
        Ok(refused(&sent, &reply, 401))
    })
    .await
}

/// A correctly signed load sent with a query string added: the signature covers the query
/// (a server that signs only the path would take any query an attacker appends).
pub(crate) async fn swapped_query_is_refused(c: &Ctx) -> Verdict {
    run(async {
        let (_, path, body, creds) = setup(c, "query")?;
        let headers = signed_now(creds.key_id(), creds.secret(), &path, &body);
        let tampered = format!("{path}?version=2");
        let sent = format!(
            "POST {tampered} signed by key {} over {path} (no query)",
            creds.key_id()
        );
        let reply = c
            .send(&sent, Method::POST, &tampered, &headers, body)
            .await?;
        Ok(refused(&sent, &reply, 401))
    })
    .await
}

/// A key id the server does not know, signed with a real secret.
pub(crate) async fn unknown_key_is_refused(c: &Ctx) -> Verdict {
    run(async {
        let (_, path, body, creds) = setup(c, "unknown-key")?;
        let key_id = format!("gx-nobody-{}", c.tag);
        let headers = signed_now(&key_id, creds.secret(), &path, &body);
        let sent = format!("POST {path} under unknown key id {key_id}");
        let reply = c.send(&sent, Method::POST, &path, &headers, body).await?;
        Ok(refused(&sent, &reply, 401))
    })
    .await
}

/// A correctly signed load by a role that may not load.
pub(crate) async fn wrong_role_is_refused(c: &Ctx) -> Verdict {
    run(async {
        c.needs(&[Capability::Repository, Capability::ArtifactUpload])?;
        let model = c.model("role");
        let path = load_path(&model);
        let Some(creds) = c.access()?.admin.iter().find(|k| {
            k.role()
                .and_then(|r| r.may_call("POST", &path))
                .is_some_and(|may| !may)
        }) else {
            return Ok(Verdict::skip(
                "no credentials of a role that may not load models were given (an admin \
                 credentials file with role = \"viewer\")",
            ));
        };
        let body = load_body(&c.artifact(&model, "1", 0.0)?)?;
        let headers = signed_now(creds.key_id(), creds.secret(), &path, &body);
        let role = creds.role().map_or("?", |r| r.as_str());
        let sent = format!(
            "POST {path} correctly signed by key {} (role {role})",
            creds.key_id()
        );
        let reply = c.send(&sent, Method::POST, &path, &headers, body).await?;
        Ok(refused(&sent, &reply, 403))
    })
    .await
}

/// An unsigned model load: a target that accepts it lets anyone who reaches it swap the model
/// that trades, so it fails (whether or not credentials were given).
pub(crate) async fn unsigned_admin_load_is_refused(c: &Ctx) -> Verdict {
    run(async {
        c.needs(&[Capability::Repository, Capability::ArtifactUpload])?;
        let model = c.model("unsigned");
        let path = load_path(&model);
        let body = load_body(&c.artifact(&model, "1", 0.0)?)?;
        let sent = format!("POST {path} without a signature");
        let headers = [("content-type", JSON.to_owned())];
        let reply = c.send(&sent, Method::POST, &path, &headers, body).await?;
        if reply.status.is_success() {
            return Ok(Verdict::fail(format!(
                "sent {sent}; the target ACCEPTED an unsigned model load: {} — anyone who can \
                 reach it can swap the model that trades (configure admin keys: \
                 security.admin-keys for gauntlet-engine)",
                answer(&reply)
            )));
        }
        let mut verdict = refused(&sent, &reply, 401);
        if verdict.outcome.label() == "pass" {
            let meta = c.target.get(&format!("/v2/models/{model}")).await;
            if let Ok(meta) = meta
                && meta.status.is_success()
            {
                verdict = Verdict::fail(format!(
                    "sent {sent}; answered {} yet the model is served: GET /v2/models/{model} \
                     is {}",
                    reply.status.as_u16(),
                    answer(&meta)
                ));
            }
        }
        Ok(verdict)
    })
    .await
}

/// Name of the audit log's extension in `GET /v2` (the reference engine's `gauntlet_audit`).
const AUDIT_EXTENSION: &str = "gauntlet_audit";

/// The audit log holds who did what: reading it needs a signed call by a role that may read it
/// (the reference engine: viewer or auditor). Unsigned: 401; a role that may not: 403; a role
/// that may: neither.
pub(crate) async fn audit_read_needs_a_role(c: &Ctx) -> Verdict {
    run(async {
        let path = "/v2/audit/checkpoint";
        let sent = format!("GET {path} without a signature");
        let reply = c.send(&sent, Method::GET, path, &[], Bytes::new()).await?;
        if reply.status.as_u16() == 404 {
            let meta = c
                .target
                .get("/v2")
                .await
                .map_err(|e| Verdict::error(format!("GET /v2: {e}")))?;
            let listed = meta.json::<serde_json::Value>().ok().is_some_and(|m| {
                m["extensions"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|e| e == AUDIT_EXTENSION))
            });
            if !listed {
                return Ok(Verdict::skip(format!(
                    "the target serves no audit log (GET {path} is 404 and GET /v2 does not \
                     list {AUDIT_EXTENSION})"
                )));
            }
        }
        if reply.status.is_success() {
            return Ok(Verdict::fail(format!(
                "sent {sent}; the target ANSWERED it: {} — anyone who can reach it can read \
                 the audit log (configure admin keys: security.admin-keys for gauntlet-engine)",
                answer(&reply)
            )));
        }
        let first = refused(&sent, &reply, 401);
        if first.outcome.label() != "pass" {
            return Ok(first);
        }
        let mut lines = vec![first.message];
        let admin = &c.access()?.admin;
        let may = |k: &&sign::Credentials, yes: bool| {
            k.role().and_then(|r| r.may_call("GET", path)) == Some(yes)
        };
        if let Some(creds) = admin.iter().find(|k| may(k, false)) {
            let (sent, reply) = signed_read(c, creds, path).await?;
            let verdict = refused(&sent, &reply, 403);
            if verdict.outcome.label() != "pass" {
                return Ok(Verdict::fail(format!(
                    "{}; {}",
                    lines.join("; "),
                    verdict.message
                )));
            }
            lines.push(format!("{sent}: {}", answer(&reply)));
        }
        if let Some(creds) = admin.iter().find(|k| may(k, true)) {
            let (sent, reply) = signed_read(c, creds, path).await?;
            if matches!(reply.status.as_u16(), 401 | 403) {
                return Ok(Verdict::fail(format!(
                    "{}; sent {sent}: a role that may read the audit log was refused: {}",
                    lines.join("; "),
                    answer(&reply)
                )));
            }
            lines.push(format!("{sent}: {}", answer(&reply)));
        }
        Ok(Verdict::pass(lines.join("; ")))
    })
    .await
}

/// `GET path` signed now by `creds`: what was sent, and the answer.
async fn signed_read(c: &Ctx, creds: &sign::Credentials, path: &str) -> Step<(String, Reply)> {
    let role = creds.role().map_or("?", |r| r.as_str());
    let sent = format!("GET {path} signed by key {} (role {role})", creds.key_id());
    let headers = signed(
        creds.key_id(),
        creds.secret(),
        "GET",
        path,
        None,
        b"",
        now(),
        &sign::random_nonce(),
    );
    let reply = c
        .send(&sent, Method::GET, path, &headers, Bytes::new())
        .await?;
    Ok((sent, reply))
}

/// The headers of a JSON `POST` to `path` signed now, with a fresh nonce: what a well-behaved
/// client sends; the cases vary one part of it.
fn signed_now(key_id: &str, secret: &[u8], path: &str, body: &[u8]) -> Vec<(&'static str, String)> {
    signed(
        key_id,
        secret,
        "POST",
        path,
        Some(JSON),
        body,
        now(),
        &sign::random_nonce(),
    )
}
