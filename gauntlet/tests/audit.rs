//! `gauntlet audit verify DIR|URL` through the composition root, as users run it: every kind
//! of tampering exits 1 naming the spot, a bad flag 2, an unreachable log 3.
#![expect(clippy::unwrap_used, reason = "tests fail loudly")]

use std::path::{Path, PathBuf};

use gauntlet_engine::audit::{
    self, Action, AuditConfig, AuditEvent, AuditLog, CHECKPOINT_FILE, Checkpoint, Outcome,
};

/// `n` records, a checkpoint, closed; returns the config and the public key in hex.
async fn written(tmp: &Path, n: u64) -> (AuditConfig, String) {
    let config = AuditConfig::new(tmp.join("log"), tmp.join("keys"));
    let log = AuditLog::open(&config).unwrap();
    for i in 0..n {
        let mut e = AuditEvent::new("alice", Action::ModelLoad, Outcome::Ok);
        e.request_id = Some(format!("req-{i}"));
        log.record_durable(e).await.unwrap();
    }
    log.checkpoint_now().await.unwrap();
    let key = audit::hex::encode(&log.public_key());
    log.close().await;
    (config, key)
}

/// Runs `gauntlet audit verify ARGS…`; exit code, stdout.
fn verify(args: &[&str]) -> (u8, String) {
    let mut out = Vec::new();
    let argv = ["gauntlet", "audit", "verify"].iter().chain(args).copied();
    let code = gauntlet::main_with(&gauntlet::registry(), argv, &mut out);
    (code, String::from_utf8(out).unwrap())
}

fn segment(dir: &Path) -> PathBuf {
    dir.join(format!("{:020}.seg", 0))
}

/// (offset, frame length) of every frame of an audit file.
fn frames(data: &[u8]) -> Vec<(usize, usize)> {
    let mut pos = 8;
    let mut out = Vec::new();
    while pos < data.len() {
        let len = u32::from_le_bytes(data[pos..pos + 4].try_into().unwrap()) as usize;
        out.push((pos, 8 + len));
        pos += 8 + len;
    }
    out
}

/// CRC-32 (IEEE), bitwise: the test does not trust the engine's framing code.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_verifies_and_each_tampering_exits_1_naming_the_spot() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, key) = written(tmp.path(), 10).await;
    let dir = config.dir.to_str().unwrap().to_owned();
    let (code, out) = verify(&[&dir, "--public-key", &key]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with("verified: 10 records") && out.contains("key pinned"),
        "{out}"
    );
    let (code, out) = verify(&[&dir]);
    assert_eq!(code, 0);
    assert!(out.contains("read from the directory"), "{out}");

    let path = segment(&config.dir);
    let original = std::fs::read(&path).unwrap();
    let f = frames(&original);
    // A flipped byte.
    let mut data = original.clone();
    let (offset, len) = f[6];
    data[offset + len - 3] ^= 0x20;
    std::fs::write(&path, &data).unwrap();
    let (code, _) = verify(&[&dir, "--public-key", &key]);
    assert_eq!(code, 1);
    // The message (stderr) is the VerifyError; checked through the library the CLI prints.
    let err = audit::verify_dir(&config.dir, &audit::VerifyOptions::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "record 6 at offset {offset} of `{}` is damaged: CRC mismatch",
            path.display()
        )
    );
    // A record rewritten with a valid CRC.
    let mut data = original.clone();
    let (offset, len) = f[4];
    let json = offset + 8 + audit::PAYLOAD_HEADER;
    let at = (json..offset + len).find(|&i| data[i] == b'a').unwrap();
    data[at] = b'm';
    let crc = crc32(&data[offset + 8..offset + len]);
    data[offset + 4..offset + 8].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&path, &data).unwrap();
    assert_eq!(verify(&[&dir, "--public-key", &key]).0, 1);
    let err = audit::verify_dir(&config.dir, &audit::VerifyOptions::default()).unwrap_err();
    assert!(
        err.to_string()
            .starts_with(&format!("record 4 at offset {offset} of ")),
        "{err}"
    );
    // A record removed, and two reordered.
    let mut removed = original[..f[3].0].to_vec();
    removed.extend_from_slice(&original[f[4].0..]);
    std::fs::write(&path, &removed).unwrap();
    assert_eq!(verify(&[&dir, "--public-key", &key]).0, 1);
    let mut swapped = original[..f[2].0].to_vec();
    swapped.extend_from_slice(&original[f[3].0..f[3].0 + f[3].1]);
    swapped.extend_from_slice(&original[f[2].0..f[2].0 + f[2].1]);
    swapped.extend_from_slice(&original[f[4].0..]);
    std::fs::write(&path, &swapped).unwrap();
    assert_eq!(verify(&[&dir, "--public-key", &key]).0, 1);
    std::fs::write(&path, &original).unwrap();
    assert_eq!(verify(&[&dir, "--public-key", &key]).0, 0);
    // A forged checkpoint.
    let cp_path = config.dir.join(CHECKPOINT_FILE);
    let cps = std::fs::read(&cp_path).unwrap();
    let (offset, len) = frames(&cps)[0];
    let mut cp: Checkpoint = serde_json::from_slice(&cps[offset + 8..offset + len]).unwrap();
    cp.size = 9;
    let payload = serde_json::to_vec(&cp).unwrap();
    let mut forged = cps[..offset].to_vec();
    forged.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    forged.extend_from_slice(&crc32(&payload).to_le_bytes());
    forged.extend_from_slice(&payload);
    std::fs::write(&cp_path, &forged).unwrap();
    assert_eq!(verify(&[&dir, "--public-key", &key]).0, 1);
}

#[test]
fn usage_errors_exit_2_and_a_missing_log_exits_3() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    assert_eq!(verify(&[]).0, 2, "no DIR|URL");
    assert_eq!(verify(&[dir, "--public-key", "xyz"]).0, 2, "a bad key");
    assert_eq!(
        verify(&[dir, "--since", "1:00"]).0,
        2,
        "--since on a directory"
    );
    // An empty directory holds no key: say so, exit 2 (pass --public-key).
    assert_eq!(verify(&[dir]).0, 2);
    let missing = tmp.path().join("nope");
    assert_eq!(verify(&[missing.to_str().unwrap()]).0, 3);
    // Nothing listens on a port just released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    assert_eq!(verify(&[&url, "--connect-timeout", "1s"]).0, 3);
}

#[test]
fn a_served_log_verifies_and_a_record_changed_on_its_disk_exits_1() {
    let tmp = tempfile::tempdir().unwrap();
    let config = AuditConfig::new(tmp.path().join("log"), tmp.path().join("keys"));
    let state = gauntlet_engine::AppState::open(gauntlet_engine::EngineConfig {
        audit: Some(config.clone()),
        ..gauntlet_engine::EngineConfig::default()
    })
    .unwrap();
    let log = state.audit().unwrap().clone();
    let server = gauntlet_harness::ServedEngine::start(state, 1).unwrap();
    let url = server.url();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let cp = runtime.block_on(async {
        for i in 0..12 {
            let mut e = AuditEvent::new("bob", Action::KillEngage, Outcome::Ok);
            e.request_id = Some(format!("r{i}"));
            log.record_durable(e).await.unwrap();
        }
        log.checkpoint_now().await.unwrap()
    });
    let key = audit::hex::encode(&log.public_key());
    let (code, out) = verify(&[&url, "--public-key", &key]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("verified: 12 records"), "{out}");
    let first_root = log.consistency_proof(5, 12).unwrap().first_root;
    let (code, out) = verify(&[
        &url,
        "--public-key",
        &key,
        "--since",
        &format!("5:{first_root}"),
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("which extends size 5"), "{out}");
    let wrong = format!("5:{}", audit::hex::encode(&cp.root));
    assert_eq!(
        verify(&[&url, "--public-key", &key, "--since", &wrong]).0,
        1
    );
    // Another key: the checkpoint is not the pinned key's.
    let other = audit::hex::encode(&[7u8; 32]);
    assert_eq!(verify(&[&url, "--public-key", &other]).0, 1);
    // A record changed on the server's disk no longer hashes to its signed leaf.
    let path = segment(&config.dir);
    let mut data = std::fs::read(&path).unwrap();
    let (offset, len) = frames(&data)[8];
    data[offset + len - 3] ^= 0x20;
    std::fs::write(&path, &data).unwrap();
    assert_eq!(verify(&[&url, "--public-key", &key]).0, 1);
    let err = runtime
        .block_on(async {
            let target = gauntlet_harness::HttpTarget::connect(&url, Default::default())
                .await
                .unwrap();
            gauntlet_compliance::remote::verify_target(&target, &Default::default()).await
        })
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("record 8: its stored bytes no longer hash"),
        "{err}"
    );
    drop(server);
}

/// With admin keys the engine serves its log only to a signed viewer or auditor: `audit
/// verify URL` without credentials is refused, with a viewer's credentials file it verifies,
/// with an operator's it is refused.
#[test]
fn a_keyed_engine_serves_its_log_to_a_viewers_signed_reads() {
    use gauntlet_engine::security::keyring::write_private;
    use gauntlet_engine::security::{AdminKeys, Role, Security, SecurityConfig};

    let tmp = tempfile::tempdir().unwrap();
    let config = gauntlet_engine::EngineConfig {
        audit: Some(AuditConfig::new(
            tmp.path().join("log"),
            tmp.path().join("keys"),
        )),
        security: SecurityConfig {
            admin_keys: Some("admin-keys.toml".into()),
            ..SecurityConfig::default()
        },
        ..gauntlet_engine::EngineConfig::default()
    };
    let mut keys = AdminKeys::default();
    keys.insert("view-1".into(), vec![0; 32], "vic".into(), Role::Viewer)
        .unwrap();
    keys.insert("ops-1".into(), vec![0; 32], "olga".into(), Role::Operator)
        .unwrap();
    let security = Security::from_parts(&config.security, None, Some(keys), None);
    let state = gauntlet_engine::AppState::open_with_security(config, security).unwrap();
    let log = state.audit().unwrap().clone();
    let server = gauntlet_harness::ServedEngine::start(state, 1).unwrap();
    let url = server.url();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        for _ in 0..3 {
            let e = AuditEvent::new("bob", Action::KillEngage, Outcome::Ok);
            log.record_durable(e).await.unwrap();
        }
        log.checkpoint_now().await.unwrap();
    });
    let key = audit::hex::encode(&log.public_key());
    // 32 zero bytes, in base64.
    let secret = format!("{}=", "A".repeat(43));
    let credentials = |id: &str, role: &str| {
        let path = tmp.path().join(format!("{id}.toml"));
        let text = format!("key-id = \"{id}\"\nsecret = \"{secret}\"\nrole = \"{role}\"\n");
        write_private(&path, text.as_bytes()).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let (viewer, operator) = (
        credentials("view-1", "viewer"),
        credentials("ops-1", "operator"),
    );
    let (code, out) = verify(&[&url, "--public-key", &key]);
    assert_ne!(code, 0, "{out}");
    let (code, out) = verify(&[&url, "--public-key", &key, "--admin-credentials", &operator]);
    assert_ne!(code, 0, "{out}");
    let (code, out) = verify(&[&url, "--public-key", &key, "--admin-credentials", &viewer]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("verified: 3 records"), "{out}");
    drop(server);
}
