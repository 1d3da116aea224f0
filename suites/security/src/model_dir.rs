//! SEC-ENC at rest: the model directory the load route reads when no artifact is posted
//! (`POST …/models/{m}/load` with an empty body reads `{m}.json`, then `{m}.enc`). With
//! `require-encrypted-artifacts` set, only a sealed file of that model's name loads; a plain,
//! tampered, renamed or oversized file is refused and stages nothing; only regular files are
//! read, and an entry that cannot be examined stops the load rather than being passed over.
//!
//! Like the key files, only this build's engine can be given a directory: the case runs in
//! process, on an engine of its own (the secured twin has no model directory), with a keyring
//! and files written into a private directory of the run.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use http::Method;

use gauntlet_engine::security::keyring::Keyring;
use gauntlet_engine::security::{Security, SecurityConfig};
use gauntlet_engine::{AppState, EngineConfig};
use gauntlet_harness::{InProcess, TargetExt};

use crate::artifacts::{flip, seal, seal_bytes};
use crate::files::write;
use crate::probe::{Ctx, Step, Verdict, answer};

/// `max-artifact-bytes` of the case's engine: small, so that an oversized file is cheap.
const MAX_ARTIFACT_BYTES: usize = 64 * 1024;

/// What stands at `{model}.json`, the name the engine looks at first, before the file.
#[derive(Clone, Copy)]
enum Beside {
    /// Nothing, or the variant's own plain file.
    Nothing,
    /// A directory: not a model file, passed over.
    Directory,
    /// A symbolic link to itself: an entry that cannot be examined, which stops the load.
    SelfLink,
}

/// One model file (or its absence) and the answer its load must get.
struct Variant {
    what: &'static str,
    model: String,
    /// The file's extension (`enc`, `json`) and bytes; `None`: no file.
    file: Option<(&'static str, Vec<u8>)>,
    beside: Beside,
    /// Expected status, and what the error must name (empty for a 200).
    status: u16,
    names: String,
}

fn variants(c: &Ctx, ring: &Keyring) -> Step<Vec<Variant>> {
    let sealed = c.model("dir-sealed");
    let plain = c.model("dir-plain");
    let tampered = c.model("dir-tampered");
    let renamed = c.model("dir-renamed");
    let oversized = c.model("dir-oversized");
    let looped = c.model("dir-loop");
    let absent = c.model("dir-absent");
    let mistyped = c.model("dir-mistyped");
    let plain_json = serde_json::to_vec(&c.artifact(&plain, "1", 0.0)?)
        .map_err(|e| Verdict::error(format!("failed to serialise an artifact: {e}")))?;
    // Sealed, so that it is decrypted and then parsed: a string where a number belongs.
    let mut bad = serde_json::to_value(c.artifact(&mistyped, "1", 0.0)?)
        .map_err(|e| Verdict::error(format!("failed to serialise an artifact: {e}")))?;
    bad["model"]["intercept"] = serde_json::Value::from("high");
    let bad = seal_bytes(ring, &mistyped, "1", bad.to_string().as_bytes())?;
    let good = seal(ring, c, &tampered, &tampered, "1")?;
    Ok(vec![
        Variant {
            what: "a sealed file of exactly max-artifact-bytes, beside a directory of the \
                   plain file's name",
            file: Some(("enc", sealed_of_size(ring, c, &sealed, MAX_ARTIFACT_BYTES)?)),
            model: sealed,
            beside: Beside::Directory,
            status: 200,
            names: String::new(),
        },
        Variant {
            what: "a plain JSON file",
            file: Some(("json", plain_json)),
            model: plain,
            beside: Beside::Nothing,
            status: 400,
            names: "require-encrypted-artifacts".to_owned(),
        },
        Variant {
            what: "a sealed file with a flipped ciphertext byte (20 from the end)",
            file: Some(("enc", flip(&good, good.len().saturating_sub(20)))),
            model: tampered,
            beside: Beside::Nothing,
            status: 400,
            names: "model file".to_owned(),
        },
        Variant {
            what: "another model's sealed file under this model's name",
            file: Some(("enc", seal(ring, c, &renamed, &c.model("dir-other"), "1")?)),
            model: renamed,
            beside: Beside::Nothing,
            status: 400,
            names: "model file".to_owned(),
        },
        Variant {
            what: "a sealed file whose model.intercept is a string",
            file: Some(("enc", bad)),
            model: mistyped,
            beside: Beside::Nothing,
            status: 400,
            names: "parse artifact at model".to_owned(),
        },
        Variant {
            what: "a file one byte over max-artifact-bytes",
            file: Some(("enc", vec![0x5a; MAX_ARTIFACT_BYTES + 1])),
            model: oversized,
            beside: Beside::Nothing,
            status: 413,
            names: "max-artifact-bytes".to_owned(),
        },
        Variant {
            what: "a sealed file behind an entry of the plain file's name that cannot be \
                   examined (a symbolic link to itself)",
            file: Some(("enc", seal(ring, c, &looped, &looped, "1")?)),
            model: looped,
            beside: Beside::SelfLink,
            status: 500,
            names: "internal server error".to_owned(),
        },
        Variant {
            what: "no file",
            names: format!("{absent}.json"),
            model: absent,
            file: None,
            beside: Beside::Nothing,
            status: 404,
        },
    ])
}

/// An envelope of `name` v1 of exactly `size` bytes: the artifact's JSON padded with trailing
/// spaces (an envelope's overhead does not depend on its plaintext's bytes).
fn sealed_of_size(ring: &Keyring, c: &Ctx, name: &str, size: usize) -> Step<Vec<u8>> {
    let mut plain = serde_json::to_vec(&c.artifact(name, "1", 0.0)?)
        .map_err(|e| Verdict::error(format!("failed to serialise an artifact: {e}")))?;
    let seal_plain = |plain: &[u8]| seal_bytes(ring, name, "1", plain);
    let overhead = seal_plain(&plain)?.len().saturating_sub(plain.len());
    plain.resize(size.saturating_sub(overhead), b' ');
    let sealed = seal_plain(&plain)?;
    if sealed.len() != size {
        return Err(Verdict::error(format!(
            "failed to seal an envelope of exactly {size} bytes: got {}",
            sealed.len()
        )));
    }
    Ok(sealed)
}

/// The case's engine: a keyring, `require-encrypted-artifacts`, and `models/` of `dir`.
fn engine(dir: &Path, ring: &Keyring) -> Result<InProcess, String> {
    state(dir, ring).map(InProcess::new)
}

/// [`engine`]'s state, before it serves.
fn state(dir: &Path, ring: &Keyring) -> Result<AppState, String> {
    let keyring = write(dir, "keyring.toml", &ring.to_toml_string(), 0o600)
        .map_err(|e| format!("failed to write keyring.toml: {e}"))?;
    let models = dir.join("models");
    std::fs::create_dir(&models)
        .map_err(|e| format!("failed to create {}: {e}", models.display()))?;
    let security = SecurityConfig {
        keyring: Some(keyring),
        require_encrypted_artifacts: true,
        ..SecurityConfig::default()
    };
    let loaded = Security::load(&security).map_err(|e| gauntlet_harness::error_chain(&e))?;
    let config = EngineConfig {
        model_dir: Some(models),
        max_artifact_bytes: MAX_ARTIFACT_BYTES,
        security,
        ..EngineConfig::default()
    };
    Ok(AppState::with_security(config, loaded))
}

/// [`state`] of an engine in `dir`'s new subdirectory `sub`, and its model directory.
fn start_engine(dir: &Path, sub: &str, ring: &Keyring) -> Step<(AppState, PathBuf)> {
    let root = dir.join(sub);
    let state = std::fs::create_dir(&root)
        .map_err(|e| e.to_string())
        .and_then(|()| state(&root, ring))
        .map_err(|e| Verdict::error(format!("failed to make the engine of {sub}/: {e}")))?;
    Ok((state, root.join("models")))
}

/// The load at start (`gauntlet-engine --model-dir`, `AppState::load_model_dir`): every
/// regular `.json` and `.enc` file of the directory and nothing else. A sealed model beside
/// a note that is no model file and a directory named like a model file loads alone, and is
/// served; a sealed model one byte over `max-artifact-bytes` stops the load, naming the file
/// and the limit. Returns what was seen.
async fn start_load(c: &Ctx, dir: &Path, ring: &Keyring) -> Step<String> {
    let fail =
        |what: String| Verdict::fail(format!("the load of a model directory at start: {what}"));
    let (state, models) = start_engine(dir, "start", ring)?;
    let name = c.model("dir-start");
    let sealed = seal(ring, c, &name, &name, "1")?;
    std::fs::write(models.join(format!("{name}.enc")), sealed)
        .and_then(|()| std::fs::write(models.join("README.txt"), "not a model\n"))
        .and_then(|()| std::fs::create_dir(models.join("notes.json")))
        .map_err(|e| {
            Verdict::error(format!(
                "failed to write the directory loaded at start: {e}"
            ))
        })?;
    let loaded = state.load_model_dir(&models).map_err(|e| {
        fail(format!(
            "{name}.enc beside README.txt and a directory notes.json was refused: {}",
            gauntlet_harness::error_chain(&e)
        ))
    })?;
    if loaded != 1 {
        return Err(fail(format!(
            "{name}.enc beside README.txt and a directory notes.json: {loaded} models loaded, \
             expected 1"
        )));
    }
    let target = InProcess::new(state);
    let meta = target
        .get(&format!("/v2/models/{name}"))
        .await
        .map_err(|e| Verdict::error(format!("GET /v2/models/{name}: {e}")))?;
    if !meta.status.is_success() {
        return Err(fail(format!(
            "{name}.enc loaded, but GET /v2/models/{name} answers {}",
            answer(&meta)
        )));
    }
    // A file over max-artifact-bytes stops the load at start, naming the file and the limit,
    // even when it is a good model otherwise.
    let (state, models) = start_engine(dir, "start-over", ring)?;
    let big = c.model("dir-start-over");
    let file = format!("{big}.enc");
    std::fs::write(
        models.join(&file),
        sealed_of_size(ring, c, &big, MAX_ARTIFACT_BYTES + 1)?,
    )
    .map_err(|e| Verdict::error(format!("failed to write {file}: {e}")))?;
    match state.load_model_dir(&models) {
        Ok(n) => {
            return Err(fail(format!(
                "{file}, a sealed model one byte over max-artifact-bytes ({MAX_ARTIFACT_BYTES}), \
                 was accepted: {n} models loaded"
            )));
        }
        Err(e) => {
            let said = gauntlet_harness::error_chain(&e);
            if !(said.contains(&file) && said.contains("max-artifact-bytes")) {
                return Err(fail(format!(
                    "{file}, one byte over max-artifact-bytes: the error does not name the \
                     file and the limit: {said}"
                )));
            }
        }
    }
    Ok(format!(
        "\n- at start: {name}.enc loaded and served, README.txt and the directory notes.json \
         passed over; {file}, one byte over max-artifact-bytes, refused naming both"
    ))
}

/// Loads by name from the model directory: the sealed file of the model's own name loads, at
/// the size limit too (a directory named like the plain file is passed over); a plain,
/// tampered, renamed, oversized or missing file, or one behind an entry that cannot be
/// examined, is refused with a status and an error naming why, and nothing is staged. Then
/// the load of a whole directory at start takes its model files only ([`start_load`]).
pub(crate) async fn model_directory_serves_only_sealed_files(c: &Ctx) -> Verdict {
    if !c.own_build {
        return Verdict::skip(
            "by URL the engine's model directory is not gauntlet's to write: only an \
             in-process engine of this build can be given one",
        );
    }
    let mut ring = Keyring::new();
    if let Err(e) = ring.add("at-rest", [0x3c; 32]) {
        return Verdict::error(format!("failed to make a keyring: {e}"));
    }
    if let Err(e) = ring.set_primary("at-rest") {
        return Verdict::error(format!("failed to make a keyring: {e}"));
    }
    let dir = match gauntlet_harness::private_temp_dir(&format!("gauntlet-modeldir-{}-", c.tag)) {
        Ok(d) => d,
        Err(e) => return Verdict::error(format!("failed to create a private directory: {e}")),
    };
    let target = match engine(dir.path(), &ring) {
        Ok(t) => t,
        Err(e) => return Verdict::error(format!("failed to start the case's engine: {e}")),
    };
    let variants = match variants(c, &ring) {
        Ok(v) => v,
        Err(v) => return v,
    };
    let models = dir.path().join("models");
    let mut problems = Vec::new();
    let mut seen = String::new();
    for v in &variants {
        let written = match &v.file {
            Some((ext, bytes)) => std::fs::write(models.join(format!("{}.{ext}", v.model)), bytes),
            None => Ok(()),
        };
        // Only regular files are model files: a directory of the plain file's name must
        // not hide the sealed file behind it. But an entry that cannot be examined stops the
        // load (fail closed): the engine never loads another file than the one it looks at
        // first without knowing what that one is.
        let plain = models.join(format!("{}.json", v.model));
        let shadow = match v.beside {
            Beside::Nothing => Ok(()),
            Beside::Directory => std::fs::create_dir(&plain),
            #[cfg(unix)]
            Beside::SelfLink => std::os::unix::fs::symlink(&plain, &plain),
            #[cfg(not(unix))]
            Beside::SelfLink => Err(std::io::Error::other("no symbolic links here")),
        };
        if let Err(e) = written.and(shadow) {
            return Verdict::error(format!("failed to write {}'s file: {e}", v.model));
        }
        let path = format!("/v2/repository/models/{}/load", v.model);
        let reply = match target.call(Method::POST, &path, Bytes::new(), None).await {
            Ok(r) => r,
            Err(e) => return Verdict::error(format!("POST {path}: {e}")),
        };
        let meta = match target.get(&format!("/v2/models/{}", v.model)).await {
            Ok(r) => r,
            Err(e) => return Verdict::error(format!("GET /v2/models/{}: {e}", v.model)),
        };
        let got = answer(&reply);
        if reply.status.as_u16() != v.status {
            problems.push(format!("{}: expected {}, got {got}", v.what, v.status));
        } else if !reply.text().contains(&v.names) {
            problems.push(format!(
                "{}: the error does not name `{}`: {got}",
                v.what, v.names
            ));
        } else if v.status == 200 && !meta.status.is_success() {
            problems.push(format!(
                "{}: loaded, but GET /v2/models/{} answers {}",
                v.what,
                v.model,
                answer(&meta)
            ));
        } else if v.status != 200 && meta.status.as_u16() != 404 {
            problems.push(format!(
                "{}: refused, but the model exists: GET /v2/models/{} answers {}",
                v.what,
                v.model,
                answer(&meta)
            ));
        } else {
            let _ = write!(seen, "\n- {}: {got}", v.what);
        }
    }
    if problems.is_empty() {
        match start_load(c, dir.path(), &ring).await {
            Ok(at_start) => Verdict::pass(format!(
                "loads by name from a model directory with require-encrypted-artifacts:{seen}{at_start}"
            )),
            Err(v) => v,
        }
    } else {
        Verdict::fail(format!(
            "{} of {} model-directory loads were not answered as they should be:\n- {}",
            problems.len(),
            variants.len(),
            problems.join("\n- ")
        ))
    }
}
