//! AES-256-GCM envelope encryption of model artifacts (format `GNTLENC1`, version 1).
//!
//! Each artifact gets a fresh random 256-bit data key (DEK) that encrypts the artifact's
//! JSON; the DEK is wrapped (AES-256-GCM again) by a key-encryption key (KEK) of a
//! [`Keyring`]. Rotating a KEK rewraps the DEK without touching the encrypted content.
//!
//! Layout, all integers big-endian, lengths in bytes:
//!
//! | part | field | size |
//! |---|---|---|
//! | preamble | magic `GNTLENC1` | 8 |
//! | | format version (`1`) | 1 |
//! | key slot | KEK id length *k*, then the id (`[A-Za-z0-9_.-]`) | 1 + *k* |
//! | | wrap nonce | 12 |
//! | | wrapped DEK (32) and its tag (16) | 48 |
//! | content header | data nonce | 12 |
//! | | model name length *n*, then the name | 1 + *n* |
//! | | model version length *v*, then the version | 1 + *v* |
//! | | SHA-256 of the plaintext | 32 |
//! | body | ciphertext and its 16-byte tag | rest |
//!
//! The body's AAD is the preamble followed by the content header, so it binds the format,
//! the model name, its version and the plaintext's SHA-256. The DEK's AAD is the preamble, the
//! key slot's id field and the SHA-256 of the content header, so the key slot is bound to
//! the content too. A flipped byte anywhere fails one of the two tags; a header naming
//! another model or version is refused before decryption ([`EnvelopeError::WrongName`]), and
//! editing those fields to match fails the tags.

use aes_gcm::aead::{Aead as _, AeadCore as _, KeyInit as _, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use sha2::{Digest as _, Sha256};

use super::keyring::{Keyring, KeyringError};

/// First bytes of every encrypted artifact.
pub const MAGIC: &[u8; 8] = b"GNTLENC1";
/// Envelope format version written and read.
pub const ENVELOPE_VERSION: u8 = 1;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const DEK_LEN: usize = 32;
const WRAPPED_LEN: usize = DEK_LEN + TAG_LEN;
const DIGEST_LEN: usize = 32;

/// Why an encrypted artifact was refused. No message carries key material or plaintext.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// The bytes end before a field.
    #[error("failed to read encrypted artifact: truncated in {field}")]
    Truncated {
        /// The field being read.
        field: &'static str,
    },
    /// The bytes do not start with [`MAGIC`].
    #[error("failed to read encrypted artifact: not a GNTLENC1 envelope")]
    BadMagic,
    /// The format version is not one this engine reads.
    #[error(
        "failed to read encrypted artifact: format version {found} is not supported (expected {ENVELOPE_VERSION})"
    )]
    UnsupportedVersion {
        /// The version found.
        found: u8,
    },
    /// A header field is malformed (bad id or name characters).
    #[error("failed to read encrypted artifact: invalid {field}")]
    InvalidField {
        /// The field.
        field: &'static str,
    },
    /// The envelope holds another model.
    #[error("failed to decrypt artifact: it holds model {found:?}, not {expected:?}")]
    WrongName {
        /// The name asked for.
        expected: String,
        /// The name in the header.
        found: String,
    },
    /// The envelope holds another version.
    #[error(
        "failed to decrypt artifact: it holds version {found:?} of the model, not {expected:?}"
    )]
    WrongVersion {
        /// The version asked for.
        expected: String,
        /// The version in the header.
        found: String,
    },
    /// The KEK id is unknown, or the key is retired.
    #[error("failed to decrypt artifact: {0}")]
    Key(#[source] KeyringError),
    /// The wrapped data key does not authenticate: tampered key slot or header, or a
    /// different key under the same id.
    #[error(
        "failed to decrypt artifact: the data key does not authenticate (tampered header or wrong key)"
    )]
    KeySlotTampered,
    /// The body does not authenticate: tampered body or header.
    #[error("failed to decrypt artifact: the content does not authenticate (tampered bytes)")]
    ContentTampered,
    /// The plaintext's SHA-256 differs from the header's.
    #[error("failed to decrypt artifact: the plaintext's SHA-256 does not match the header")]
    DigestMismatch,
    /// Encryption failed (a keyring refusal, such as an exhausted key, or a field too long).
    #[error("failed to encrypt artifact: {0}")]
    Encrypt(String),
}

impl From<KeyringError> for EnvelopeError {
    fn from(e: KeyringError) -> Self {
        EnvelopeError::Key(e)
    }
}

/// The header of an envelope, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvelopeHeader {
    /// The KEK that wraps the data key.
    pub kek_id: String,
    /// The model name bound into the AAD.
    pub name: String,
    /// The model version bound into the AAD.
    pub version: String,
    /// SHA-256 of the plaintext.
    pub plaintext_sha256: [u8; DIGEST_LEN],
}

/// The parts of an envelope as byte ranges of the input.
struct Parsed<'a> {
    header: EnvelopeHeader,
    wrap_nonce: &'a [u8],
    wrapped: &'a [u8],
    /// The content header's bytes (data nonce to digest).
    content: &'a [u8],
    data_nonce: &'a [u8],
    body: &'a [u8],
}

/// True when `bytes` start with the envelope magic (anything else is read as plain JSON).
pub fn is_envelope(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], EnvelopeError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or(EnvelopeError::Truncated { field })?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn label(&mut self, field: &'static str) -> Result<String, EnvelopeError> {
        let len = self.take(1, field)?[0] as usize;
        let raw = self.take(len, field)?;
        let ok = (1..=64).contains(&len)
            && raw
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !ok {
            return Err(EnvelopeError::InvalidField { field });
        }
        Ok(String::from_utf8_lossy(raw).into_owned())
    }
}

fn parse(bytes: &[u8]) -> Result<Parsed<'_>, EnvelopeError> {
    let mut r = Reader { bytes, at: 0 };
    if r.take(MAGIC.len(), "magic")? != MAGIC {
        return Err(EnvelopeError::BadMagic);
    }
    let version = r.take(1, "format version")?[0];
    if version != ENVELOPE_VERSION {
        return Err(EnvelopeError::UnsupportedVersion { found: version });
    }
    let kek_id = r.label("kek id")?;
    let wrap_nonce = r.take(NONCE_LEN, "wrap nonce")?;
    let wrapped = r.take(WRAPPED_LEN, "wrapped data key")?;
    let content_start = r.at;
    let data_nonce = r.take(NONCE_LEN, "data nonce")?;
    let name = r.label("model name")?;
    let model_version = r.label("model version")?;
    let digest = r.take(DIGEST_LEN, "plaintext sha-256")?;
    let content = &bytes[content_start..r.at];
    let body = &bytes[r.at..];
    if body.len() < TAG_LEN {
        return Err(EnvelopeError::Truncated { field: "body" });
    }
    let mut plaintext_sha256 = [0u8; DIGEST_LEN];
    plaintext_sha256.copy_from_slice(digest);
    Ok(Parsed {
        header: EnvelopeHeader {
            kek_id,
            name,
            version: model_version,
            plaintext_sha256,
        },
        wrap_nonce,
        wrapped,
        content,
        data_nonce,
        body,
    })
}

/// Reads the header without decrypting (for listings and `artifact rewrap`).
///
/// # Errors
/// The parse errors of [`EnvelopeError`].
pub fn read_header(bytes: &[u8]) -> Result<EnvelopeHeader, EnvelopeError> {
    parse(bytes).map(|p| p.header)
}

fn preamble() -> [u8; 9] {
    let mut p = [0u8; 9];
    p[..8].copy_from_slice(MAGIC);
    p[8] = ENVELOPE_VERSION;
    p
}

fn wrap_aad(kek_id: &str, content: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(9 + 1 + kek_id.len() + DIGEST_LEN);
    aad.extend_from_slice(&preamble());
    push_label(&mut aad, kek_id);
    aad.extend_from_slice(&Sha256::digest(content));
    aad
}

fn data_aad(content: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(9 + content.len());
    aad.extend_from_slice(&preamble());
    aad.extend_from_slice(content);
    aad
}

fn push_label(out: &mut Vec<u8>, s: &str) {
    // Labels are checked to be 1..=64 bytes before they get here.
    out.push(u8::try_from(s.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(s.as_bytes());
}

fn check_label(s: &str, field: &'static str) -> Result<(), EnvelopeError> {
    if crate::security::keyring::is_valid_key_id(s) {
        Ok(())
    } else {
        Err(EnvelopeError::InvalidField { field })
    }
}

/// Encrypts `plaintext` (an artifact's JSON) for model `name` version `version` under the
/// keyring's primary key, counting one use of it; save the keyring afterwards.
///
/// # Errors
/// [`EnvelopeError::Encrypt`] when the keyring refuses (no primary, key exhausted) or a
/// label is invalid.
pub fn encrypt(
    keyring: &mut Keyring,
    name: &str,
    version: &str,
    plaintext: &[u8],
) -> Result<Vec<u8>, EnvelopeError> {
    check_label(name, "model name")?;
    check_label(version, "model version")?;
    let dek = Aes256Gcm::generate_key(OsRng);
    let data_nonce = Aes256Gcm::generate_nonce(OsRng);
    let mut content = Vec::with_capacity(NONCE_LEN + 2 + name.len() + version.len() + DIGEST_LEN);
    content.extend_from_slice(&data_nonce);
    push_label(&mut content, name);
    push_label(&mut content, version);
    content.extend_from_slice(&Sha256::digest(plaintext));
    let body = Aes256Gcm::new(&dek)
        .encrypt(
            &data_nonce,
            Payload {
                msg: plaintext,
                aad: &data_aad(&content),
            },
        )
        .map_err(|_| EnvelopeError::Encrypt("the content cipher failed".into()))?;
    let (kek_id, slot) = wrap(keyring, &dek, &content)?;
    let mut out = Vec::with_capacity(9 + slot.len() + content.len() + body.len());
    out.extend_from_slice(&preamble());
    out.extend_from_slice(&slot);
    out.extend_from_slice(&content);
    out.extend_from_slice(&body);
    tracing::debug!(kek = %kek_id, model = name, version, "artifact encrypted");
    Ok(out)
}

/// Wraps `dek` under the primary KEK: returns its id and the key slot bytes.
fn wrap(
    keyring: &mut Keyring,
    dek: &[u8],
    content: &[u8],
) -> Result<(String, Vec<u8>), EnvelopeError> {
    let (kek_id, kek) = keyring
        .begin_wrap()
        .map_err(|e| EnvelopeError::Encrypt(e.to_string()))?;
    let wrap_nonce = Aes256Gcm::generate_nonce(OsRng);
    let wrapped = kek
        .encrypt(
            &wrap_nonce,
            Payload {
                msg: dek,
                aad: &wrap_aad(&kek_id, content),
            },
        )
        .map_err(|_| EnvelopeError::Encrypt("the key-wrap cipher failed".into()))?;
    let mut slot = Vec::with_capacity(1 + kek_id.len() + NONCE_LEN + WRAPPED_LEN);
    push_label(&mut slot, &kek_id);
    slot.extend_from_slice(&wrap_nonce);
    slot.extend_from_slice(&wrapped);
    Ok((kek_id, slot))
}

/// The envelope's data key, unwrapped under its KEK (the key slot's tag checked).
fn unwrap_key(keyring: &Keyring, p: &Parsed<'_>) -> Result<Vec<u8>, EnvelopeError> {
    let kek = keyring.unwrap_cipher(&p.header.kek_id)?;
    kek.decrypt(
        Nonce::from_slice(p.wrap_nonce),
        Payload {
            msg: p.wrapped,
            aad: &wrap_aad(&p.header.kek_id, p.content),
        },
    )
    .map_err(|_| EnvelopeError::KeySlotTampered)
}

/// The body decrypted under the data key `dek` (the content tag checked).
fn open_body(dek: &[u8], p: &Parsed<'_>) -> Result<Vec<u8>, EnvelopeError> {
    let cipher = Aes256Gcm::new_from_slice(dek).map_err(|_| EnvelopeError::KeySlotTampered)?;
    cipher
        .decrypt(
            Nonce::from_slice(p.data_nonce),
            Payload {
                msg: p.body,
                aad: &data_aad(p.content),
            },
        )
        .map_err(|_| EnvelopeError::ContentTampered)
}

/// What the caller expects the envelope to hold; `None` accepts any.
#[derive(Debug, Clone, Copy, Default)]
pub struct Expect<'a> {
    /// The model name (the URL's `{m}`, a file's model).
    pub name: Option<&'a str>,
    /// The model version.
    pub version: Option<&'a str>,
}

/// Decrypts and verifies an envelope: header, key state, both tags and the plaintext digest.
///
/// # Errors
/// Every [`EnvelopeError`] but `Encrypt`.
pub fn decrypt(
    keyring: &Keyring,
    bytes: &[u8],
    expect: Expect<'_>,
) -> Result<(EnvelopeHeader, Vec<u8>), EnvelopeError> {
    let p = parse(bytes)?;
    if let Some(expected) = expect.name.filter(|e| *e != p.header.name) {
        return Err(EnvelopeError::WrongName {
            expected: expected.to_owned(),
            found: p.header.name.clone(),
        });
    }
    if let Some(expected) = expect.version.filter(|e| *e != p.header.version) {
        return Err(EnvelopeError::WrongVersion {
            expected: expected.to_owned(),
            found: p.header.version.clone(),
        });
    }
    let plaintext = open_body(&unwrap_key(keyring, &p)?, &p)?;
    let digest: [u8; DIGEST_LEN] = Sha256::digest(&plaintext).into();
    if digest != p.header.plaintext_sha256 {
        return Err(EnvelopeError::DigestMismatch);
    }
    Ok((p.header, plaintext))
}

/// Rewraps an envelope's data key under the keyring's primary KEK, leaving the content header
/// and body as they are (counts one use of the primary; save the keyring afterwards).
///
/// # Errors
/// The errors of [`decrypt`]'s unwrap step, or [`EnvelopeError::Encrypt`].
pub fn rewrap(keyring: &mut Keyring, bytes: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
    let p = parse(bytes)?;
    let dek = unwrap_key(keyring, &p)?;
    // Authenticate the body before vouching for it under the new key.
    open_body(&dek, &p)?;
    let (_, slot) = wrap(keyring, &dek, p.content)?;
    let mut out = Vec::with_capacity(bytes.len() + 64);
    out.extend_from_slice(&preamble());
    out.extend_from_slice(&slot);
    out.extend_from_slice(p.content);
    out.extend_from_slice(p.body);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> Keyring {
        let mut k = Keyring::new();
        k.add_random("k1").unwrap();
        k
    }

    #[test]
    fn round_trip_binds_name_and_version() {
        let mut k = ring();
        let env = encrypt(&mut k, "m", "1", b"{\"x\":1}").unwrap();
        assert!(is_envelope(&env));
        let (h, plain) = decrypt(
            &k,
            &env,
            Expect {
                name: Some("m"),
                version: Some("1"),
            },
        )
        .unwrap();
        assert_eq!(plain, b"{\"x\":1}");
        assert_eq!((h.kek_id.as_str(), h.name.as_str()), ("k1", "m"));
        let err = decrypt(
            &k,
            &env,
            Expect {
                name: Some("n"),
                version: None,
            },
        )
        .unwrap_err();
        assert!(matches!(err, EnvelopeError::WrongName { .. }), "{err}");
        let err = decrypt(
            &k,
            &env,
            Expect {
                name: None,
                version: Some("2"),
            },
        )
        .unwrap_err();
        assert!(matches!(err, EnvelopeError::WrongVersion { .. }), "{err}");
        assert_eq!(k.list()[0].uses, 1);
    }

    #[test]
    fn every_flipped_byte_is_refused() {
        let mut k = ring();
        let env = encrypt(&mut k, "m", "1", b"{\"features\":[1,2,3]}").unwrap();
        for i in 0..env.len() {
            let mut bad = env.clone();
            bad[i] ^= 0x01;
            assert!(
                decrypt(&k, &bad, Expect::default()).is_err(),
                "flipping byte {i} went unnoticed"
            );
        }
        assert!(matches!(
            decrypt(&k, &env[..env.len() - 1], Expect::default()),
            Err(EnvelopeError::ContentTampered)
        ));
    }

    /// Renaming the model in the header (and asking for the new name) fails the tags: the AAD
    /// binds the name.
    #[test]
    fn an_edited_name_fails_authentication() {
        let mut k = ring();
        let env = encrypt(&mut k, "ma", "1", b"{}").unwrap();
        let at = env.windows(3).position(|w| w == b"\x02ma").unwrap();
        let mut bad = env.clone();
        bad[at + 2] = b'b';
        let err = decrypt(
            &k,
            &bad,
            Expect {
                name: Some("mb"),
                version: None,
            },
        )
        .unwrap_err();
        assert!(matches!(err, EnvelopeError::KeySlotTampered), "{err}");
    }

    #[test]
    fn rotation_rewraps_without_reencrypting_and_retired_keys_are_refused() {
        let mut k = ring();
        let env = encrypt(&mut k, "m", "1", b"{}").unwrap();
        k.add_random("k2").unwrap();
        k.set_primary("k2").unwrap();
        let re = rewrap(&mut k, &env).unwrap();
        assert_eq!(read_header(&re).unwrap().kek_id, "k2");
        assert_eq!(env[env.len() - 18..], re[re.len() - 18..], "body unchanged");
        k.retire("k1").unwrap();
        let err = decrypt(&k, &env, Expect::default()).unwrap_err();
        assert!(
            matches!(err, EnvelopeError::Key(KeyringError::Retired { .. })),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            "failed to decrypt artifact: key \"k1\" is retired"
        );
        assert_eq!(decrypt(&k, &re, Expect::default()).unwrap().1, b"{}");
        let other = ring();
        assert!(matches!(
            decrypt(&other, &re, Expect::default()),
            Err(EnvelopeError::Key(KeyringError::UnknownKey { .. }))
        ));
    }

    #[test]
    fn a_different_key_under_the_same_id_is_refused() {
        let mut a = ring();
        let env = encrypt(&mut a, "m", "1", b"{}").unwrap();
        let b = ring();
        assert!(matches!(
            decrypt(&b, &env, Expect::default()),
            Err(EnvelopeError::KeySlotTampered)
        ));
    }

    #[test]
    fn garbage_is_a_typed_error_not_a_panic() {
        let k = ring();
        for bytes in [
            &b""[..],
            b"GNTLENC1",
            b"GNTLENC1\x02",
            b"GNTLENC1\x01\x00",
            b"GNTLENC1\x01\x05ab",
        ] {
            assert!(decrypt(&k, bytes, Expect::default()).is_err());
        }
        assert!(matches!(
            decrypt(&k, b"GNTLENC1\x02rest", Expect::default()),
            Err(EnvelopeError::UnsupportedVersion { found: 2 })
        ));
    }
}
