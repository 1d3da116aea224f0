//! SEC-SECRETS, SEC-SIG, SEC-ENC: the key files the engine reads when it starts. A file that
//! group or others may read, or whose contents are malformed (a short or non-base64 secret, a
//! duplicate or invalid key id, a digest that is not 64 lowercase hex digits, a primary that
//! names a retired key, ...), is refused with an error naming the file or the field, and no
//! error quotes a secret.
//!
//! Only this build's own loader can be tried: by URL the engine read its files before the run.
//! So the case runs when the harness made the secured twin (the in-process engine, the same
//! build as this `gauntlet`), through the loader the `gauntlet-engine` binary starts with
//! ([`Security::load`]), on real files in a private directory of the run.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;

use gauntlet_engine::EngineConfig;
use gauntlet_engine::security::keyring::{DEFAULT_MAX_USES, Keyring};
use gauntlet_engine::security::sign::MIN_SECRET_LEN;
use gauntlet_engine::security::{Security, SecurityConfig};

use crate::probe::{Ctx, Verdict};

/// One file of a variant: which config key reads it, its text and its mode.
struct File {
    key: Key,
    text: String,
    mode: u32,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Key {
    AdminKeys,
    ReadTokens,
    Keyring,
}

impl Key {
    fn name(self) -> &'static str {
        match self {
            Key::AdminKeys => "admin-keys",
            Key::ReadTokens => "read-tokens",
            Key::Keyring => "keyring",
        }
    }
}

/// What the run wrote: the well-formed files, the token digest, and the secrets in them
/// (base64, as written).
struct Good {
    admin: String,
    tokens: String,
    digest: String,
    keyring: String,
    secrets: Vec<String>,
}

fn good(tag: &str) -> Result<Good, String> {
    let secret: Vec<u8> = (0..MIN_SECRET_LEN)
        .map(|i| (i as u8).wrapping_mul(37) ^ 0x5a)
        .collect();
    let secret_b64 = base64::engine::general_purpose::STANDARD.encode(&secret);
    // The longest principal the engine takes: 128 bytes.
    let principal = format!("alice-{}", "x".repeat(122));
    let admin = format!(
        "[[keys]]\nid = \"ops-{tag}\"\nsecret = \"{secret_b64}\"\nprincipal = \"{principal}\"\nrole = \"operator\"\n"
    );
    // The loader checks a digest's form only: any 32 bytes in lowercase hex will do.
    let digest = gauntlet_engine::security::sign::hex(&[0xab; 32]);
    let tokens = format!("[[tokens]]\nprincipal = \"reader\"\nsha256 = \"{digest}\"\n");
    let mut ring = Keyring::new();
    ring.add("k0", [7; 32]).map_err(|e| e.to_string())?;
    ring.add("k1", [9; 32]).map_err(|e| e.to_string())?;
    ring.set_primary("k1").map_err(|e| e.to_string())?;
    ring.retire("k0").map_err(|e| e.to_string())?;
    // The largest use limit the engine takes: half the 2^32 nonce bound.
    let keyring = replace_line(&ring.to_toml_string(), "max-uses = ", "2147483648");
    let ring_b64 = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
    Ok(Good {
        admin,
        tokens,
        digest,
        keyring,
        secrets: vec![secret_b64, ring_b64],
    })
}

/// The variants: a description, the one file that differs from the good set, and what the
/// refusal must name.
fn variants(g: &Good) -> Vec<(&'static str, File, &'static str)> {
    let admin = |text: String, mode| File {
        key: Key::AdminKeys,
        text,
        mode,
    };
    let tokens = |text: String, mode| File {
        key: Key::ReadTokens,
        text,
        mode,
    };
    let ring = |text: String, mode| File {
        key: Key::Keyring,
        text,
        mode,
    };
    let short = base64::engine::general_purpose::STANDARD.encode([1u8; MIN_SECRET_LEN - 1]);
    let first = g.admin.clone();
    let twice = format!("{first}\n{}", first.replace("alice-", "bob-"));
    let digest = g.digest.as_str();
    vec![
        (
            "admin keys readable by the group (0640)",
            admin(g.admin.clone(), 0o640),
            "lets group or others read it",
        ),
        (
            "admin keys readable by anyone (0604)",
            admin(g.admin.clone(), 0o604),
            "lets group or others read it",
        ),
        (
            "an admin secret one byte short",
            admin(replace_secret(&g.admin, &short), 0o600),
            "keys[0].secret",
        ),
        (
            "an admin secret that is not base64",
            admin(replace_secret(&g.admin, "not*base64!"), 0o600),
            "keys[0].secret",
        ),
        (
            "a duplicate admin key id",
            admin(twice, 0o600),
            "keys[1].id",
        ),
        (
            "an admin key id with a space",
            admin(first.replacen("id = \"ops-", "id = \"ops ", 1), 0o600),
            "keys[0].id",
        ),
        (
            "an admin key with no principal",
            admin(replace_line(&first, "principal = ", "\"\""), 0o600),
            "keys[0].principal",
        ),
        (
            "an admin principal of 129 bytes",
            admin(first.replace("alice-", "alice-x"), 0o600),
            "keys[0].principal",
        ),
        (
            "an admin key with an unknown field",
            admin(format!("{first}expires = 1\n"), 0o600),
            "unknown field",
        ),
        (
            "read tokens readable by anyone (0644)",
            tokens(g.tokens.clone(), 0o644),
            "lets group or others read it",
        ),
        (
            "a token digest in upper case",
            tokens(g.tokens.replace(digest, &digest.to_uppercase()), 0o600),
            "tokens[0].sha256",
        ),
        (
            "a token digest one digit short",
            tokens(g.tokens.replace(digest, &digest[1..]), 0o600),
            "tokens[0].sha256",
        ),
        (
            "a keyring readable by the group (0640)",
            ring(g.keyring.clone(), 0o640),
            "lets group or others read it",
        ),
        (
            "a keyring key of 31 bytes",
            ring(
                g.keyring.replace(
                    &base64::engine::general_purpose::STANDARD.encode([9u8; 32]),
                    &base64::engine::general_purpose::STANDARD.encode([9u8; 31]),
                ),
                0o600,
            ),
            "keys[1].key",
        ),
        (
            "a keyring whose primary is retired",
            ring(
                g.keyring.replace("primary = \"k1\"", "primary = \"k0\""),
                0o600,
            ),
            "primary",
        ),
        (
            "a keyring with a duplicate key id",
            ring(g.keyring.replace("id = \"k1\"", "id = \"k0\""), 0o600),
            "keys[1].id",
        ),
        (
            "a retired keyring key that keeps its material",
            ring(
                g.keyring.replacen(
                    "state = \"retired\"",
                    &format!(
                        "state = \"retired\"\nkey = \"{}\"",
                        base64::engine::general_purpose::STANDARD.encode([7u8; 32])
                    ),
                    1,
                ),
                0o600,
            ),
            "keys[0].key",
        ),
        (
            "a keyring with max-uses 0",
            ring(replace_line(&g.keyring, "max-uses = ", "0"), 0o600),
            "max-uses",
        ),
        (
            "a keyring with max-uses 2^31 + 1",
            ring(replace_line(&g.keyring, "max-uses = ", "2147483649"), 0o600),
            "max-uses",
        ),
    ]
}

/// `text` without the lines that start with `key` (`name = `).
fn drop_line(text: &str, key: &str) -> String {
    text.lines()
        .filter(|l| !l.starts_with(key))
        .collect::<Vec<_>>()
        .join("\n")
}

fn replace_secret(admin: &str, secret: &str) -> String {
    replace_line(admin, "secret = ", &format!("\"{secret}\""))
}

/// `text` with the value of every line that starts with `key` (`name = `) replaced.
fn replace_line(text: &str, key: &str, value: &str) -> String {
    text.lines()
        .map(|l| {
            if l.starts_with(key) {
                format!("{key}{value}")
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Writes `text` to `dir/name` (replacing it) with permission bits `mode`, created owner-only.
pub(crate) fn write(dir: &Path, name: &str, text: &str, mode: u32) -> std::io::Result<PathBuf> {
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    std::io::Write::write_all(&mut options.open(&path)?, text.as_bytes())?;
    #[cfg(unix)]
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(mode))?;
    #[cfg(not(unix))]
    let _ = mode;
    Ok(path)
}

/// Loads the three files as the engine binary does at start.
fn load(dir: &Path, g: &Good, swap: Option<&File>) -> std::io::Result<Result<Security, String>> {
    let mut config = SecurityConfig::default();
    for key in [Key::AdminKeys, Key::ReadTokens, Key::Keyring] {
        let (text, mode) = match swap {
            Some(f) if f.key == key => (f.text.as_str(), f.mode),
            _ => (
                match key {
                    Key::AdminKeys => g.admin.as_str(),
                    Key::ReadTokens => g.tokens.as_str(),
                    Key::Keyring => g.keyring.as_str(),
                },
                0o600,
            ),
        };
        let path = write(dir, &format!("{}.toml", key.name()), text, mode)?;
        match key {
            Key::AdminKeys => config.admin_keys = Some(path),
            Key::ReadTokens => config.read_tokens = Some(path),
            Key::Keyring => config.keyring = Some(path),
        }
    }
    Ok(Security::load(&config).map_err(|e| gauntlet_harness::error_chain(&e)))
}

/// Weak or malformed key files are refused at start, each naming the file or the field (and
/// an admin-keys or read-tokens file never as a keyring), and no refusal quotes a secret; the
/// well-formed set loads (so a loader that refuses everything fails too), and so does a
/// keyring without `max-uses`, with the documented default limit.
pub(crate) async fn weak_key_files_are_refused(c: &Ctx) -> Verdict {
    if !c.own_build {
        return Verdict::skip(
            "by URL the engine read its key files when it started, before the run: only the \
             in-process engine's loader (this build's) can be given weak files",
        );
    }
    let g = match good(&c.tag) {
        Ok(g) => g,
        Err(e) => return Verdict::error(format!("failed to make the key files: {e}")),
    };
    let dir = match gauntlet_harness::private_temp_dir(&format!("gauntlet-keyfiles-{}-", c.tag)) {
        Ok(d) => d,
        Err(e) => return Verdict::error(format!("failed to create a private directory: {e}")),
    };
    match load(dir.path(), &g, None) {
        Err(e) => return Verdict::error(format!("failed to write the key files: {e}")),
        Ok(Err(e)) => {
            return Verdict::fail(format!(
                "well-formed owner-only admin keys, read tokens and keyring were refused: {e}"
            ));
        }
        Ok(Ok(_)) => {}
    }
    // An operator's keyring may leave `max-uses` out: it must load, with the documented
    // default limit of data keys a key wraps (DEFAULT_MAX_USES), not some other bound.
    let minimal = drop_line(&g.keyring, "max-uses = ");
    let swap = File {
        key: Key::Keyring,
        text: minimal.clone(),
        mode: 0o600,
    };
    match load(dir.path(), &g, Some(&swap)) {
        Err(e) => return Verdict::error(format!("failed to write the key files: {e}")),
        Ok(Err(e)) => {
            return Verdict::fail(format!(
                "a well-formed keyring without max-uses (the default applies) was refused: {e}"
            ));
        }
        Ok(Ok(_)) => {}
    }
    match Keyring::from_toml_str(&minimal) {
        Ok(ring) if ring.max_uses() == DEFAULT_MAX_USES => {}
        Ok(ring) => {
            return Verdict::fail(format!(
                "a keyring without max-uses limits each key to {} data keys, not the documented \
                 default {DEFAULT_MAX_USES}",
                ring.max_uses()
            ));
        }
        Err(e) => {
            return Verdict::fail(format!(
                "a well-formed keyring without max-uses does not parse: {}",
                gauntlet_harness::error_chain(&e)
            ));
        }
    }
    let mut problems = Vec::new();
    let mut refused = String::new();
    let variants = variants(&g);
    for (what, file, names) in &variants {
        match load(dir.path(), &g, Some(file)) {
            Err(e) => return Verdict::error(format!("failed to write the key files: {e}")),
            Ok(Ok(_)) => problems.push(format!("{what}: accepted")),
            Ok(Err(e)) => {
                if g.secrets.iter().any(|s| e.contains(s.as_str())) {
                    problems.push(format!(
                        "{what}: the refusal quotes a secret of the file (redacted here)"
                    ));
                } else if !e.contains(names) {
                    problems.push(format!("{what}: refused without naming `{names}`: {e}"));
                } else if file.key != Key::Keyring && e.contains("keyring") {
                    // An operator told to fix "the keyring" looks at the wrong file.
                    problems.push(format!("{what}: the refusal calls it a keyring: {e}"));
                } else {
                    let _ = write!(refused, "\n- {what}: {e}");
                }
            }
        }
    }
    refusals(
        &problems,
        &format!(
            "the well-formed files load (a keyring without max-uses too, limited to \
             {DEFAULT_MAX_USES} data keys a key); {} weak or malformed ones are refused:{refused}",
            variants.len()
        ),
        variants.len(),
        "weak or malformed key files",
    )
}

/// The verdict of a set of `n` inputs that should each be refused: a pass saying `passed`
/// when no `problems` were found, else a failure listing them.
fn refusals(problems: &[String], passed: &str, n: usize, inputs: &str) -> Verdict {
    if problems.is_empty() {
        Verdict::pass(passed.to_owned())
    } else {
        Verdict::fail(format!(
            "{} of {n} {inputs} were not refused as they should be:\n- {}",
            problems.len(),
            problems.join("\n- ")
        ))
    }
}

/// The engine's `[security]` settings as its config file gives them at start: each value that
/// would weaken a control is refused, naming the setting. A signed call's clock-skew window is
/// also how long a nonce is remembered (the replay window): 0 or over an hour is refused; no
/// header may be allowed zero times or without bound; a JSON body cannot be limited to depth
/// 0; a TLS certificate needs its key. The defaults and the widest window accepted (`1h`)
/// load, so a loader that refuses everything fails too. In process only, like the key files.
pub(crate) async fn weak_security_settings_are_refused(c: &Ctx) -> Verdict {
    if !c.own_build {
        return Verdict::skip(
            "by URL the engine read its config when it started, before the run: only the \
             in-process engine's loader (this build's) can be given weak settings",
        );
    }
    let load = |table: &str| EngineConfig::from_toml_str(&format!("[security]\n{table}\n"));
    for (what, table) in [
        ("the defaults", ""),
        (
            "a clock-skew window of exactly 1h",
            "max-clock-skew = \"1h\"",
        ),
    ] {
        if let Err(e) = load(table) {
            return Verdict::fail(format!("{what}: refused: {e}"));
        }
    }
    let variants = [
        (
            "a clock-skew window of 0s",
            "max-clock-skew = \"0s\"",
            "security.max-clock-skew",
        ),
        (
            "a clock-skew window of 1h 1s",
            "max-clock-skew = \"1h 1s\"",
            "security.max-clock-skew",
        ),
        (
            "a clock-skew window of 2 days",
            "max-clock-skew = \"2days\"",
            "security.max-clock-skew",
        ),
        ("max-headers 0", "max-headers = 0", "security.max-headers"),
        (
            "max-headers 1,000,000",
            "max-headers = 1000000",
            "security.max-headers",
        ),
        (
            "max-header-bytes 0",
            "max-header-bytes = 0",
            "security.max-header-bytes",
        ),
        (
            "max-json-depth 0",
            "max-json-depth = 0",
            "security.max-json-depth",
        ),
        (
            "max-tensor-elements 0",
            "max-tensor-elements = 0",
            "security.max-tensor-elements",
        ),
        (
            "a TLS certificate without its key",
            "tls-cert = \"cert.pem\"",
            "security.tls-cert",
        ),
    ];
    let mut problems = Vec::new();
    let mut refused = String::new();
    for (what, table, names) in variants {
        match load(table) {
            Ok(_) => problems.push(format!("{what}: accepted")),
            Err(e) if !e.to_string().contains(names) => {
                problems.push(format!("{what}: refused without naming `{names}`: {e}"));
            }
            Err(e) => {
                let _ = write!(refused, "\n- {what}: {e}");
            }
        }
    }
    refusals(
        &problems,
        &format!(
            "the defaults and a 1h clock-skew window load; {} weakening settings are refused:{refused}",
            variants.len()
        ),
        variants.len(),
        "weakening settings",
    )
}
