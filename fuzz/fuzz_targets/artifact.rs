//! The artifact parsers: plain JSON (`ModelArtifact::from_json`, then `Model::from_artifact`)
//! and the encrypted envelope (`envelope::read_header`, `envelope::decrypt` under a keyring).
//! Any bytes give a model or a typed error — never a panic; an envelope decrypts only when
//! it is exactly what the keyring encrypted.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;

use gauntlet_engine::security::envelope::{self, Expect};
use gauntlet_engine::security::keyring::Keyring;
use gauntlet_engine::{Model, ModelArtifact};

/// A keyring with one key, and an envelope it made (the fuzzer's seed for valid headers).
static KEYS: LazyLock<(Keyring, Vec<u8>)> = LazyLock::new(|| {
    let mut keyring = Keyring::new();
    keyring.add("k1", [7u8; 32]).expect("add");
    keyring.set_primary("k1").expect("primary");
    let sealed = envelope::encrypt(&mut keyring, "m", "1", br#"{"name":"m"}"#).expect("seal");
    (keyring, sealed)
});

fuzz_target!(|data: &[u8]| {
    if let Ok(artifact) = ModelArtifact::from_json(data) {
        let _ = artifact.validate();
        let _ = Model::from_artifact(artifact);
    }
    let (keyring, sealed) = &*KEYS;
    let _ = envelope::is_envelope(data);
    let _ = envelope::read_header(data);
    let opened = envelope::decrypt(keyring, data, Expect::default());
    if opened.is_ok() {
        // AES-GCM: only the bytes the keyring sealed open (a forgery is a finding).
        assert_eq!(data, sealed.as_slice(), "a forged envelope decrypted");
    }
});
