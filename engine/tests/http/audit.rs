//! The audit log for real: files on disk, the engine's router on a loopback port, and every
//! tampering the verifier must locate.

use std::path::{Path, PathBuf};

use gauntlet_engine::audit::{
    self, Action, AuditConfig, AuditEvent, AuditLog, Checkpoint, Outcome, VerifyError,
    VerifyOptions, merkle,
};
use gauntlet_engine::{AppState, EngineConfig, app};
use serde_json::{Value, json};

use super::linear;
use gauntlet_engine::artifact::ImputePolicy;

pub(crate) fn config(tmp: &Path) -> AuditConfig {
    AuditConfig::new(tmp.join("log"), tmp.join("keys"))
}

/// `n` records (admin and predictions), a checkpoint, closed.
async fn written(tmp: &Path, n: u64) -> (AuditConfig, [u8; 32]) {
    let config = config(tmp);
    let log = AuditLog::open(&config).unwrap();
    for i in 0..n {
        let mut e = AuditEvent::new("alice", Action::Prediction, Outcome::Ok);
        e.request_id = Some(format!("req-{i}"));
        if i % 3 == 0 {
            e.action = Action::ModelLoad;
            log.record_durable(e).await.unwrap();
        } else {
            log.record(e).unwrap();
        }
    }
    log.checkpoint_now().await.unwrap();
    let key = log.public_key();
    log.close().await;
    (config, key)
}

fn segment(dir: &Path) -> PathBuf {
    dir.join(format!("{:020}.seg", 0))
}

/// Byte offset of each frame of a segment.
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

fn verify(dir: &Path, key: [u8; 32]) -> Result<audit::VerifyReport, VerifyError> {
    audit::verify_dir(
        dir,
        &VerifyOptions {
            public_key: Some(key),
        },
    )
}

/// Predictions queue without waking the writer (it sleeps to its flush deadline), but an admin
/// record is acknowledged at once, not at that deadline, and the queued prediction is written
/// within the flush interval without any admin record to carry it.
#[tokio::test]
async fn an_admin_record_does_not_wait_for_the_prediction_flush_deadline() {
    use std::time::{Duration, Instant};
    let tmp = tempfile::tempdir().unwrap();
    let mut config = config(tmp.path());
    config.flush_interval = Duration::from_secs(1);
    let log = AuditLog::open(&config).unwrap();
    for round in 0..3 {
        log.record(AuditEvent::new("alice", Action::Prediction, Outcome::Ok))
            .unwrap();
        // Let the writer take the prediction and go back to sleep until its deadline.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = Instant::now();
        log.record_durable(AuditEvent::new("admin", Action::ModelLoad, Outcome::Ok))
            .await
            .unwrap();
        let took = started.elapsed();
        assert!(
            took < Duration::from_millis(500),
            "round {round}: the admin record took {took:?}: it waited for the 1 s flush deadline"
        );
    }
    // A prediction alone is written by its deadline.
    let before = log.len();
    log.record(AuditEvent::new("alice", Action::Prediction, Outcome::Ok))
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(log.len(), before + 1, "the lone prediction was not written");
    log.close().await;
}

/// Scheduling policy (`/proc/self/task/TID/stat`, field 41) of every thread of this process
/// named `name`.
fn thread_policies(name: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let Ok(comm) = std::fs::read_to_string(task.path().join("comm")) else {
            continue; // the thread ended meanwhile
        };
        if comm.trim_end() != name {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        // Fields after the parenthesised name start at field 3.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        out.push(rest.split(' ').nth(41 - 3).unwrap().parse().unwrap());
    }
    out
}

/// The thread that writes predictions at their flush deadline runs at `SCHED_IDLE`, so its
/// batches never take a core from the predict path; and nothing anybody waits on depends on
/// it: with it held (as a saturated CPU would starve it), an admin record is acknowledged with
/// the predictions queued before it, and a checkpoint is signed, by the urgent thread.
#[tokio::test]
async fn the_batch_writer_runs_idle_and_acknowledgements_do_not_depend_on_it() {
    use std::time::Duration;
    const SCHED_OTHER: u32 = 0;
    const SCHED_IDLE: u32 = 5;
    let tmp = tempfile::tempdir().unwrap();
    let log = AuditLog::open(&config(tmp.path())).unwrap();
    // The idle thread lowers its own priority as it starts.
    let mut idle = thread_policies("audit-writer");
    for _ in 0..100 {
        if !idle.is_empty() && idle.iter().all(|&p| p == SCHED_IDLE) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        idle = thread_policies("audit-writer");
    }
    assert!(
        !idle.is_empty() && idle.iter().all(|&p| p == SCHED_IDLE),
        "audit-writer policies {idle:?}, want {SCHED_IDLE} (SCHED_IDLE)"
    );
    let urgent = thread_policies("audit-urgent");
    assert!(
        !urgent.is_empty() && urgent.iter().all(|&p| p == SCHED_OTHER),
        "audit-urgent policies {urgent:?}, want {SCHED_OTHER} (SCHED_OTHER)"
    );

    log.hold_idle_writer(true);
    for i in 0..100 {
        let mut e = AuditEvent::new("alice", Action::Prediction, Outcome::Ok);
        e.request_id = Some(format!("req-{i}"));
        log.record(e).unwrap();
    }
    // Five flush intervals: a writer that is not held would have written them.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(log.len(), 0, "the held idle thread wrote records");
    let receipt = tokio::time::timeout(
        Duration::from_secs(5),
        log.record_durable(AuditEvent::new("admin", Action::ModelLoad, Outcome::Ok)),
    )
    .await
    .expect("the admin acknowledgement waited for the idle thread")
    .unwrap();
    assert_eq!(receipt.index, 100, "the queued predictions come first");
    assert_eq!(log.len(), 101);
    let cp = tokio::time::timeout(Duration::from_secs(5), log.checkpoint_now())
        .await
        .expect("the checkpoint waited for the idle thread")
        .unwrap();
    assert_eq!(cp.size, 101);
    log.hold_idle_writer(false);
    log.close().await;
    let key = log.public_key();
    verify(&tmp.path().join("log"), key).unwrap();
}

#[tokio::test]
async fn an_untouched_log_verifies_with_the_pinned_key() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, key) = written(tmp.path(), 10).await;
    let report = verify(&config.dir, key).unwrap();
    assert_eq!(report.records, 10);
    assert_eq!(report.unsigned_records, 0);
    assert_eq!(report.key_source, audit::KeySource::Pinned);
    let cp = report.latest_checkpoint.unwrap();
    assert_eq!((cp.size, cp.root), (10, report.root));
    // Times are monotonic, with microseconds.
    let records = audit::read_records(&config.dir, 0, 100).unwrap();
    assert_eq!(records.len(), 10);
    for pair in records.windows(2) {
        assert!(pair[0].time_us <= pair[1].time_us);
        assert_eq!(pair[0].index + 1, pair[1].index);
    }
    let t = &records[0].time;
    assert!(
        t.ends_with('Z') && t.len() == "2026-12-05T18:51:38.123456Z".len(),
        "{t}"
    );
}

#[tokio::test]
async fn a_flipped_byte_is_located_by_offset_and_index() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, key) = written(tmp.path(), 10).await;
    let path = segment(&config.dir);
    let mut data = std::fs::read(&path).unwrap();
    let (offset, len) = frames(&data)[6];
    data[offset + len - 3] ^= 0x20;
    std::fs::write(&path, &data).unwrap();
    match verify(&config.dir, key) {
        Err(VerifyError::BadFrame {
            offset: o,
            index: 6,
            fault: audit::FrameFault::Crc,
            ..
        }) => assert_eq!(o, offset as u64),
        other => panic!("{other:?}"),
    }
    // Inside the signed region the engine refuses to start rather than cut it off.
    let err = AuditLog::open(&config).unwrap_err();
    assert!(err.to_string().contains("record 6"), "{err}");
}

#[tokio::test]
async fn a_removed_or_reordered_record_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, key) = written(tmp.path(), 10).await;
    let path = segment(&config.dir);
    let data = std::fs::read(&path).unwrap();
    let f = frames(&data);
    // Remove record 4.
    let mut removed = data[..f[4].0].to_vec();
    removed.extend_from_slice(&data[f[5].0..]);
    std::fs::write(&path, &removed).unwrap();
    match verify(&config.dir, key) {
        Err(VerifyError::IndexMismatch {
            expected: 4,
            found: 5,
            offset,
            ..
        }) => assert_eq!(offset, f[4].0 as u64),
        other => panic!("{other:?}"),
    }
    // Swap records 2 and 3.
    let mut swapped = data[..f[2].0].to_vec();
    swapped.extend_from_slice(&data[f[3].0..f[3].0 + f[3].1]);
    swapped.extend_from_slice(&data[f[2].0..f[2].0 + f[2].1]);
    swapped.extend_from_slice(&data[f[4].0..]);
    std::fs::write(&path, &swapped).unwrap();
    assert!(matches!(
        verify(&config.dir, key),
        Err(VerifyError::IndexMismatch {
            expected: 2,
            found: 3,
            ..
        })
    ));
    // Records cut off the end, below the checkpoint.
    std::fs::write(&path, &data[..f[8].0]).unwrap();
    assert!(matches!(
        verify(&config.dir, key),
        Err(VerifyError::CheckpointBeyondLog {
            size: 10,
            records: 8,
            ..
        })
    ));
}

/// Rewrites the JSON of record `n` of the first segment (same length) with a valid CRC.
fn rewrite_record(path: &Path, n: usize, from: &str, to: &str) -> u64 {
    let mut data = std::fs::read(path).unwrap();
    let (offset, len) = frames(&data)[n];
    let json = audit::PAYLOAD_HEADER;
    let payload = &mut data[offset + 8..offset + len];
    let text = String::from_utf8(payload[json..].to_vec()).unwrap();
    let forged = text.replace(from, to);
    assert_ne!(text, forged);
    payload[json..].copy_from_slice(forged.as_bytes());
    let crc = crc32(&data[offset + 8..offset + len]);
    data[offset + 4..offset + 8].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(path, &data).unwrap();
    offset as u64
}

#[tokio::test]
async fn a_rewritten_record_with_a_valid_crc_is_named_by_index_and_offset() {
    for (n, next) in [(0, 1), (7, 8), (8, 9)] {
        let tmp = tempfile::tempdir().unwrap();
        let (config, key) = written(tmp.path(), 10).await;
        let offset = rewrite_record(&segment(&config.dir), n, "alice", "mallo");
        match verify(&config.dir, key) {
            Err(VerifyError::RecordAltered {
                index,
                offset: o,
                next: nx,
                ..
            }) => assert_eq!((index, o, nx), (n as u64, offset, next)),
            other => panic!("record {n}: {other:?}"),
        }
    }
    // The last record has no successor to expose it: the signed root does, for its range.
    let tmp = tempfile::tempdir().unwrap();
    let (config, key) = written(tmp.path(), 10).await;
    rewrite_record(&segment(&config.dir), 9, "alice", "mallo");
    match verify(&config.dir, key) {
        Err(VerifyError::RootMismatch {
            size: 10,
            first: 0,
            last: 9,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
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

fn rewrite_checkpoint(dir: &Path, edit: impl FnOnce(&mut Checkpoint)) {
    let path = dir.join(audit::CHECKPOINT_FILE);
    let data = std::fs::read(&path).unwrap();
    let (offset, len) = frames(&data)[0];
    let mut cp: Checkpoint = serde_json::from_slice(&data[offset + 8..offset + len]).unwrap();
    edit(&mut cp);
    let payload = serde_json::to_vec(&cp).unwrap();
    let mut out = data[..offset].to_vec();
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    out.extend_from_slice(&data[offset + len..]);
    std::fs::write(&path, out).unwrap();
}

#[tokio::test]
async fn a_forged_checkpoint_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, key) = written(tmp.path(), 5).await;
    rewrite_checkpoint(&config.dir, |cp| cp.size = 4);
    assert!(matches!(
        verify(&config.dir, key),
        Err(VerifyError::CheckpointSignature {
            number: 0,
            size: 4,
            source: audit::SignatureError::BadSignature
        })
    ));
    // Re-signed with another key (and the directory's public key replaced): the pinned key
    // still catches it.
    let other = ed25519_dalek::SigningKey::from_bytes(&[42; 32]);
    rewrite_checkpoint(&config.dir, |cp| {
        *cp = Checkpoint::sign(&other, 5, cp.root, cp.time_us);
    });
    std::fs::write(
        config.dir.join(audit::PUBLIC_KEY_FILE),
        audit::hex::encode(other.verifying_key().as_bytes()),
    )
    .unwrap();
    assert!(matches!(
        verify(&config.dir, key),
        Err(VerifyError::CheckpointSignature {
            source: audit::SignatureError::WrongKey { .. },
            ..
        })
    ));
}

#[tokio::test]
async fn a_torn_tail_is_cut_kept_and_reported_and_the_chain_still_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, key) = written(tmp.path(), 6).await;
    let path = segment(&config.dir);
    let mut data = std::fs::read(&path).unwrap();
    let good_len = data.len();
    // A crash mid-write: a frame header promising 200 bytes, 11 of them written.
    data.extend_from_slice(&200u32.to_le_bytes());
    data.extend_from_slice(&[0xAB; 15]);
    std::fs::write(&path, &data).unwrap();
    assert!(matches!(
        verify(&config.dir, key),
        Err(VerifyError::BadFrame {
            index: 6,
            fault: audit::FrameFault::Truncated,
            ..
        })
    ));
    let log = AuditLog::open(&config).unwrap();
    let torn = &log.recovery().torn;
    assert_eq!(torn.len(), 1, "{torn:?}");
    assert_eq!(
        (torn[0].offset, torn[0].index, torn[0].bytes),
        (good_len as u64, Some(6), 19)
    );
    assert_eq!(
        std::fs::read(&torn[0].quarantine).unwrap(),
        data[good_len..]
    );
    // Appends go on at the next index.
    let r = log
        .record_durable(AuditEvent::new("bob", Action::KillEngage, Outcome::Ok))
        .await
        .unwrap();
    assert_eq!(r.index, 6);
    log.checkpoint_now().await.unwrap();
    log.close().await;
    let report = verify(&config.dir, key).unwrap();
    assert_eq!((report.records, report.quarantined.len()), (7, 1));
}

#[tokio::test]
async fn segments_rotate_and_proofs_span_them() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = config(tmp.path());
    config.segment_bytes = 4096;
    let log = AuditLog::open(&config).unwrap();
    for i in 0..200 {
        let mut e = AuditEvent::new("alice", Action::OrderIntent, Outcome::Ok);
        e.request_id = Some(format!("r{i}"));
        log.record(e).unwrap();
    }
    let cp = log.checkpoint_now().await.unwrap();
    assert_eq!(cp.size, 200);
    let segments = std::fs::read_dir(&config.dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "seg")
        })
        .count();
    assert!(segments > 3, "{segments} segments");
    for index in [0, 77, 199] {
        let p = log.inclusion_proof(index, None).unwrap();
        let leaf = audit::hex::decode(&p.leaf).unwrap();
        let proof: Vec<_> = p
            .proof
            .iter()
            .map(|h| audit::hex::decode32(h).unwrap())
            .collect();
        merkle::verify_inclusion(index, 200, &merkle::leaf_hash(&leaf), &proof, &cp.root).unwrap();
        let record = audit::decode_payload(&leaf).unwrap();
        assert_eq!(
            record.event.request_id.as_deref(),
            Some(&*format!("r{index}"))
        );
    }
    let key = log.public_key();
    log.close().await;
    assert_eq!(verify(&config.dir, key).unwrap().segments, segments);
    // A whole segment removed leaves a gap that is named.
    let second = std::fs::read_dir(&config.dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .min_by_key(|p| {
            let first: u64 = p.file_stem().unwrap().to_str().unwrap().parse().unwrap();
            if first == 0 { u64::MAX } else { first }
        })
        .unwrap();
    std::fs::remove_file(&second).unwrap();
    assert!(matches!(
        verify(&config.dir, key),
        Err(VerifyError::SegmentGap { .. })
    ));
}

#[test]
fn keys_inside_the_log_and_short_retention_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = config(tmp.path());
    config.signing_key_file = config.dir.join("k.key");
    let err = AuditLog::open(&config).unwrap_err().to_string();
    assert!(
        err.contains("audit.signing-key-file") && err.contains("outside"),
        "{err}"
    );
    let toml = format!(
        "[audit]\ndir = {:?}\nsigning-key-file = {:?}\npseudonym-key-file = {:?}\nretention = \"4years\"\n",
        tmp.path().join("log"),
        tmp.path().join("keys/s"),
        tmp.path().join("keys/p")
    );
    let err = EngineConfig::from_toml_str(&toml).unwrap_err().to_string();
    assert!(
        err.contains("audit.retention") && err.contains("at least"),
        "{err}"
    );
    let ok = toml.replace("4years", "7years");
    assert!(EngineConfig::from_toml_str(&ok).unwrap().audit.is_some());
}

// ---- over HTTP on loopback ----

/// One HTTP/1.1 exchange; returns the status and the JSON body (`Null` when empty).
pub(crate) fn call(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> (u16, Value) {
    try_call(addr, method, path, headers, body).unwrap()
}

/// [`call`], with transport failures (a killed server) as `Err`.
pub(crate) fn try_call(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> std::io::Result<(u16, Value)> {
    use std::io::{Read as _, Write as _};
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        req.push_str("content-type: application/json\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(&body);
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    stream.write_all(req.as_bytes())?;
    let mut out = Vec::new();
    stream.read_to_end(&mut out)?;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status line in {text:?}")))?;
    let json = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.trim())
        .filter(|b| !b.is_empty())
        .map_or(Value::Null, |b| {
            serde_json::from_str(b).unwrap_or(Value::Null)
        });
    Ok((status, json))
}

fn hex32(v: &Value) -> [u8; 32] {
    audit::hex::decode32(v.as_str().unwrap()).unwrap()
}

#[test]
fn admin_calls_are_audited_before_they_are_acknowledged_and_proved_over_http() {
    let tmp = tempfile::tempdir().unwrap();
    let audit_config = config(tmp.path());
    let dir = audit_config.dir.clone();
    let engine_config = EngineConfig {
        audit: Some(audit_config),
        ..EngineConfig::default()
    };
    let state = AppState::open(engine_config).unwrap();
    let key = state.audit().unwrap().public_key();
    let addr = gauntlet_testkit::serve_router(move || app(state)).unwrap();

    let (status, meta) = call(addr, "GET", "/v2", &[], None);
    assert_eq!(status, 200);
    assert!(
        meta["extensions"]
            .as_array()
            .unwrap()
            .contains(&json!("gauntlet_audit"))
    );

    let artifact = json!({ "parameters": { "artifact": linear("m", "1", ImputePolicy::Median) } });
    // No principal: refused, and nothing staged.
    let (status, body) = call(
        addr,
        "POST",
        "/v2/repository/models/m/load",
        &[],
        Some(&artifact),
    );
    assert_eq!(status, 401, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("x-gauntlet-principal")
    );
    let who = [("x-gauntlet-principal", "alice")];
    let (status, body) = call(
        addr,
        "POST",
        "/v2/repository/models/m/load",
        &who,
        Some(&artifact),
    );
    assert_eq!(status, 200, "{body}");
    // Acknowledged means written: the record is in the segment file now, before any flush.
    let on_disk = std::fs::read(segment(&dir)).unwrap();
    let text = String::from_utf8_lossy(&on_disk);
    assert!(text.contains("\"action\":\"model_load\""), "{text}");
    assert!(text.contains("\"principal\":\"alice\""), "{text}");
    let (status, _) = call(addr, "POST", "/v2/repository/models/m/promote", &who, None);
    assert_eq!(status, 200);

    // A prediction with a client id: recorded under a pseudonym only.
    let infer = json!({ "id": "req-9", "inputs": [{ "name": "x", "shape": [1, 2], "datatype": "FP64", "data": [1.0, 2.0] }] });
    let client = [("x-gauntlet-client", "client-Jane-Doe-42")];
    let (status, body) = call(addr, "POST", "/v2/models/m/infer", &client, Some(&infer));
    assert_eq!(status, 200, "{body}");

    let (status, cp1) = call(addr, "POST", "/v2/audit/checkpoint", &who, None);
    assert_eq!(status, 200, "{cp1}");
    let size1 = cp1["size"].as_u64().unwrap();
    assert_eq!(
        size1, 4,
        "load, promote, prediction, checkpoint request: {cp1}"
    );
    let (status, latest) = call(addr, "GET", "/v2/audit/checkpoint", &[], None);
    assert_eq!((status, &latest), (200, &cp1));
    let checkpoint: Checkpoint = serde_json::from_value(cp1.clone()).unwrap();
    checkpoint
        .verify(&ed25519_dalek::VerifyingKey::from_bytes(&key).unwrap())
        .unwrap();

    // Each record's inclusion, checked here from the raw leaf.
    for index in 0..size1 {
        let (status, p) = call(
            addr,
            "GET",
            &format!("/v2/audit/proof/inclusion?index={index}&size={size1}"),
            &[],
            None,
        );
        assert_eq!(status, 200, "{p}");
        let leaf = audit::hex::decode(p["leaf"].as_str().unwrap()).unwrap();
        let proof: Vec<_> = p["proof"].as_array().unwrap().iter().map(hex32).collect();
        merkle::verify_inclusion(
            index,
            size1,
            &merkle::leaf_hash(&leaf),
            &proof,
            &checkpoint.root,
        )
        .unwrap();
    }
    let (_, record) = call(addr, "GET", "/v2/audit/records/2", &[], None);
    assert_eq!(record["action"], "prediction");
    assert_eq!(record["request_id"], "req-9");
    assert_eq!(record["model"], "m");
    assert_eq!(record["client"].as_str().unwrap().len(), 32);

    // The log grows; the second checkpoint is consistent with the first.
    let (status, _) = call(addr, "POST", "/v2/repository/models/m/unload", &who, None);
    assert_eq!(status, 200);
    let (_, cp2) = call(addr, "POST", "/v2/audit/checkpoint", &who, None);
    let size2 = cp2["size"].as_u64().unwrap();
    assert_eq!(size2, 6);
    let (status, c) = call(
        addr,
        "GET",
        &format!("/v2/audit/proof/consistency?first={size1}&second={size2}"),
        &[],
        None,
    );
    assert_eq!(status, 200, "{c}");
    let proof: Vec<_> = c["proof"].as_array().unwrap().iter().map(hex32).collect();
    merkle::verify_consistency(size1, size2, &checkpoint.root, &hex32(&cp2["root"]), &proof)
        .unwrap();

    // Bad queries are 400s naming the parameter; no route deletes or edits a record.
    let (status, e) = call(addr, "GET", "/v2/audit/proof/inclusion?index=99", &[], None);
    assert_eq!(status, 400, "{e}");
    let (status, e) = call(addr, "GET", "/v2/audit/proof/inclusion?indx=1", &[], None);
    assert_eq!(status, 400);
    assert!(e["error"].as_str().unwrap().contains("indx"));
    for method in ["DELETE", "PUT", "PATCH"] {
        let (status, _) = call(addr, method, "/v2/audit/records/0", &who, None);
        assert_eq!(status, 405, "{method}");
    }

    // The client id never appears in clear in any file of the log.
    for entry in std::fs::read_dir(&dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(
            !bytes.windows(18).any(|w| w == b"client-Jane-Doe-42"),
            "client id in clear"
        );
    }
    let report = verify(&dir, key).unwrap();
    assert_eq!(report.records, 6);
}
