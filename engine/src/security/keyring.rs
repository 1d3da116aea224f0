//! The key-encryption-key (KEK) keyring: a TOML file of AES-256 keys with ids, one primary.
//!
//! ```toml
//! format = "gauntlet-keyring"
//! format-version = 1
//! primary = "k2"
//! max-uses = 16777216
//!
//! [[keys]]
//! id = "k1"
//! state = "retired"      # material erased; artifacts under k1 are refused
//! uses = 120
//!
//! [[keys]]
//! id = "k2"
//! state = "active"
//! key = "base64 of 32 random bytes"
//! uses = 3
//! ```
//!
//! Rotation is add → make primary → rewrap every artifact → retire. Each wrap of a data key
//! under a KEK draws a fresh random 96-bit nonce, and NIST SP 800-38D bounds such a key to 2^32
//! invocations; `uses` counts them and `Keyring::begin_wrap` refuses a key at `max-uses`
//! (2^24 by default, 256 times below the bound), which forces a rotation.
//!
//! The file holds secrets: [`Keyring::load`] refuses a file that group or others may read,
//! and [`Keyring::save`] writes it with mode 0600 (atomically, through a temporary file).

use std::path::{Path, PathBuf};

use aes_gcm::aead::{KeyInit as _, OsRng, rand_core::RngCore as _};
use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// `format` of every keyring file.
pub const KEYRING_FORMAT: &str = "gauntlet-keyring";
/// Keyring format version this engine reads and writes.
pub const KEYRING_FORMAT_VERSION: u32 = 1;
/// Default largest number of wraps per key: 2^24, far below the 2^32 random-nonce bound.
pub const DEFAULT_MAX_USES: u64 = 1 << 24;
/// The NIST SP 800-38D bound on invocations of one key with random 96-bit nonces.
pub const NONCE_BOUND: u64 = 1 << 32;
// The default stays at least 256 times below the bound.
const _: () = assert!(DEFAULT_MAX_USES <= NONCE_BOUND / 256);
/// Length of a KEK in bytes (AES-256).
pub const KEY_LEN: usize = 32;

/// Why a keyring operation failed. Messages name the key id or the file, never key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyringError {
    /// The file could not be read or written. [`check_private`] gives it for every file of
    /// secrets (admin keys, read tokens, signing and TLS keys too), so it names the file, not
    /// its kind: the caller's context does.
    #[error("failed to {action} `{}`", path.display())]
    Io {
        /// `read` or `write`.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file may be read by group or others (any file of secrets: see [`check_private`]).
    #[error(
        "refusing `{}`: mode {mode:04o} lets group or others read it; run `chmod 600` on it",
        path.display()
    )]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The TOML is malformed or does not match the schema.
    #[error("failed to parse keyring: {message}")]
    Parse {
        /// toml's message, naming the key and line (never a value).
        message: String,
    },
    /// A field is invalid.
    #[error("invalid keyring: {field}: {message}")]
    Invalid {
        /// The field, e.g. `keys[1].key`.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// No key has this id.
    #[error("failed to find key {id:?} in the keyring")]
    UnknownKey {
        /// The id.
        id: String,
    },
    /// The key is retired.
    #[error("key {id:?} is retired")]
    Retired {
        /// The id.
        id: String,
    },
    /// A key with this id already exists.
    #[error("failed to add key {id:?}: the id is taken")]
    DuplicateId {
        /// The id.
        id: String,
    },
    /// The primary key cannot be retired.
    #[error("failed to retire key {id:?}: it is the primary; make another key primary first")]
    RetirePrimary {
        /// The id.
        id: String,
    },
    /// The keyring has no primary key.
    #[error("failed to encrypt: the keyring has no primary key; add one with `keys add`")]
    NoPrimary,
    /// The primary key has reached its use limit.
    #[error(
        "failed to wrap a data key: key {id:?} has been used {uses} times, its max-uses limit of {limit}; add a key and make it primary"
    )]
    Exhausted {
        /// The id.
        id: String,
        /// Uses so far.
        uses: u64,
        /// The limit.
        limit: u64,
    },
}

/// Whether a key may still decrypt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyState {
    /// Wraps (if primary) and unwraps data keys.
    Active,
    /// Its material is erased; artifacts wrapped under it are refused.
    Retired,
}

/// One key of the keyring file (serialised form).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct KeyEntry {
    id: String,
    state: KeyState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    #[serde(default)]
    uses: u64,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct KeyringFile {
    format: String,
    format_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    primary: Option<String>,
    #[serde(default = "default_max_uses")]
    max_uses: u64,
    #[serde(default)]
    keys: Vec<KeyEntry>,
}

fn default_max_uses() -> u64 {
    DEFAULT_MAX_USES
}

/// A key as held in memory. `Debug` never shows the material.
#[derive(Clone)]
pub(crate) struct Key {
    pub(crate) id: String,
    pub(crate) state: KeyState,
    material: Option<[u8; KEY_LEN]>,
    pub(crate) uses: u64,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("id", &self.id)
            .field("state", &self.state)
            .field("uses", &self.uses)
            .finish_non_exhaustive()
    }
}

/// Summary of one key for listings (no material).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// The key id.
    pub id: String,
    /// Active or retired.
    pub state: KeyState,
    /// Whether it is the primary.
    pub primary: bool,
    /// Data keys wrapped under it so far.
    pub uses: u64,
}

/// The keyring: KEKs by id, one primary. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct Keyring {
    primary: Option<String>,
    max_uses: u64,
    keys: Vec<Key>,
}

/// True for a key id: `[A-Za-z0-9_.-]{1,64}`.
pub fn is_valid_key_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

impl Keyring {
    /// An empty keyring (no keys, no primary) with the default use limit.
    pub fn new() -> Keyring {
        Keyring {
            primary: None,
            max_uses: DEFAULT_MAX_USES,
            keys: Vec::new(),
        }
    }

    /// Reads a keyring file, refusing one that group or others may read.
    ///
    /// # Errors
    /// [`KeyringError::Permissions`], [`KeyringError::Io`] or a parse/validation error.
    pub fn load(path: &Path) -> Result<Keyring, KeyringError> {
        check_private(path)?;
        let text = std::fs::read_to_string(path).map_err(|source| KeyringError::Io {
            action: "read",
            path: path.to_owned(),
            source,
        })?;
        Keyring::from_toml_str(&text)
    }

    /// Parses and validates a keyring document.
    ///
    /// # Errors
    /// [`KeyringError::Parse`] or [`KeyringError::Invalid`] naming the field.
    pub fn from_toml_str(text: &str) -> Result<Keyring, KeyringError> {
        let file: KeyringFile = toml::from_str(text).map_err(|e| KeyringError::Parse {
            // toml's message quotes the offending line, which may hold a key: keep only its
            // first line ("TOML parse error at line N, column M") and the reason.
            message: redact_toml_error(&e),
        })?;
        let invalid = |field: String, message: &str| KeyringError::Invalid {
            field,
            message: message.to_owned(),
        };
        if file.format != KEYRING_FORMAT {
            return Err(invalid(
                "format".into(),
                &format!("expected {KEYRING_FORMAT:?}"),
            ));
        }
        if file.format_version != KEYRING_FORMAT_VERSION {
            return Err(invalid(
                "format-version".into(),
                &format!(
                    "expected {KEYRING_FORMAT_VERSION}, got {}",
                    file.format_version
                ),
            ));
        }
        if !(1..=NONCE_BOUND / 2).contains(&file.max_uses) {
            return Err(invalid(
                "max-uses".into(),
                &format!(
                    "must be between 1 and 2^31 (half the 2^32 nonce bound), got {}",
                    file.max_uses
                ),
            ));
        }
        let mut keys: Vec<Key> = Vec::with_capacity(file.keys.len());
        for (i, entry) in file.keys.into_iter().enumerate() {
            if !is_valid_key_id(&entry.id) {
                return Err(invalid(
                    format!("keys[{i}].id"),
                    "must match [A-Za-z0-9_.-]{1,64}",
                ));
            }
            if keys.iter().any(|k| k.id == entry.id) {
                return Err(invalid(format!("keys[{i}].id"), "duplicate key id"));
            }
            let material = match (entry.state, entry.key) {
                (KeyState::Active, Some(b64)) => Some(decode_key(&b64).ok_or_else(|| {
                    invalid(format!("keys[{i}].key"), "must be the base64 of 32 bytes")
                })?),
                (KeyState::Active, None) => {
                    return Err(invalid(
                        format!("keys[{i}].key"),
                        "an active key needs its material",
                    ));
                }
                (KeyState::Retired, Some(_)) => {
                    return Err(invalid(
                        format!("keys[{i}].key"),
                        "a retired key must not keep its material",
                    ));
                }
                (KeyState::Retired, None) => None,
            };
            keys.push(Key {
                id: entry.id,
                state: entry.state,
                material,
                uses: entry.uses,
            });
        }
        if let Some(primary) = &file.primary {
            match keys.iter().find(|k| &k.id == primary) {
                None => return Err(invalid("primary".into(), "names no key of the keyring")),
                Some(k) if k.state == KeyState::Retired => {
                    return Err(invalid("primary".into(), "names a retired key"));
                }
                Some(_) => {}
            }
        }
        Ok(Keyring {
            primary: file.primary,
            max_uses: file.max_uses,
            keys,
        })
    }

    /// The TOML document, key material in base64.
    pub fn to_toml_string(&self) -> String {
        let file = KeyringFile {
            format: KEYRING_FORMAT.to_owned(),
            format_version: KEYRING_FORMAT_VERSION,
            primary: self.primary.clone(),
            max_uses: self.max_uses,
            keys: self
                .keys
                .iter()
                .map(|k| KeyEntry {
                    id: k.id.clone(),
                    state: k.state,
                    key: k
                        .material
                        .map(|m| base64::engine::general_purpose::STANDARD.encode(m)),
                    uses: k.uses,
                })
                .collect(),
        };
        toml::to_string(&file).unwrap_or_default()
    }

    /// Writes the keyring with mode 0600, replacing `path` atomically.
    ///
    /// # Errors
    /// [`KeyringError::Io`].
    pub fn save(&self, path: &Path) -> Result<(), KeyringError> {
        write_private(path, self.to_toml_string().as_bytes()).map_err(|source| KeyringError::Io {
            action: "write",
            path: path.to_owned(),
            source,
        })
    }

    /// Adds a fresh random key; the first key added becomes the primary.
    ///
    /// # Errors
    /// [`KeyringError::Invalid`] for a bad id, [`KeyringError::DuplicateId`].
    pub fn add_random(&mut self, id: &str) -> Result<(), KeyringError> {
        let mut material = [0u8; KEY_LEN];
        OsRng.fill_bytes(&mut material);
        self.add(id, material)
    }

    /// Adds a key with the given material; the first key added becomes the primary.
    ///
    /// # Errors
    /// [`KeyringError::Invalid`] for a bad id, [`KeyringError::DuplicateId`].
    pub fn add(&mut self, id: &str, material: [u8; KEY_LEN]) -> Result<(), KeyringError> {
        if !is_valid_key_id(id) {
            return Err(KeyringError::Invalid {
                field: "id".into(),
                message: format!("{id:?} must match [A-Za-z0-9_.-]{{1,64}}"),
            });
        }
        if self.keys.iter().any(|k| k.id == id) {
            return Err(KeyringError::DuplicateId { id: id.to_owned() });
        }
        self.keys.push(Key {
            id: id.to_owned(),
            state: KeyState::Active,
            material: Some(material),
            uses: 0,
        });
        if self.primary.is_none() {
            self.primary = Some(id.to_owned());
        }
        Ok(())
    }

    /// Makes an active key the primary (the one new artifacts are wrapped under).
    ///
    /// # Errors
    /// [`KeyringError::UnknownKey`] or [`KeyringError::Retired`].
    pub fn set_primary(&mut self, id: &str) -> Result<(), KeyringError> {
        let key = self.find(id)?;
        if key.state == KeyState::Retired {
            return Err(KeyringError::Retired { id: id.to_owned() });
        }
        self.primary = Some(id.to_owned());
        Ok(())
    }

    /// Retires a key: its material is erased, artifacts under it are refused from then on.
    ///
    /// # Errors
    /// [`KeyringError::UnknownKey`] or [`KeyringError::RetirePrimary`].
    pub fn retire(&mut self, id: &str) -> Result<(), KeyringError> {
        if self.primary.as_deref() == Some(id) {
            return Err(KeyringError::RetirePrimary { id: id.to_owned() });
        }
        let key = self
            .keys
            .iter_mut()
            .find(|k| k.id == id)
            .ok_or_else(|| KeyringError::UnknownKey { id: id.to_owned() })?;
        key.state = KeyState::Retired;
        key.material = None;
        Ok(())
    }

    /// Sets the per-key use limit (1 to 2^31).
    ///
    /// # Errors
    /// [`KeyringError::Invalid`] out of range.
    pub fn set_max_uses(&mut self, limit: u64) -> Result<(), KeyringError> {
        if !(1..=NONCE_BOUND / 2).contains(&limit) {
            return Err(KeyringError::Invalid {
                field: "max-uses".into(),
                message: format!("must be between 1 and 2^31, got {limit}"),
            });
        }
        self.max_uses = limit;
        Ok(())
    }

    /// The keys, in the order they were added.
    pub fn list(&self) -> Vec<KeyInfo> {
        self.keys
            .iter()
            .map(|k| KeyInfo {
                id: k.id.clone(),
                state: k.state,
                primary: self.primary.as_deref() == Some(k.id.as_str()),
                uses: k.uses,
            })
            .collect()
    }

    /// The primary key's id.
    pub fn primary(&self) -> Option<&str> {
        self.primary.as_deref()
    }

    /// The per-key use limit.
    pub fn max_uses(&self) -> u64 {
        self.max_uses
    }

    fn find(&self, id: &str) -> Result<&Key, KeyringError> {
        self.keys
            .iter()
            .find(|k| k.id == id)
            .ok_or_else(|| KeyringError::UnknownKey { id: id.to_owned() })
    }

    /// The cipher of an active key, for unwrapping.
    pub(crate) fn unwrap_cipher(&self, id: &str) -> Result<aes_gcm::Aes256Gcm, KeyringError> {
        let key = self.find(id)?;
        match key.material {
            Some(m) => Ok(aes_gcm::Aes256Gcm::new(&m.into())),
            None => Err(KeyringError::Retired { id: id.to_owned() }),
        }
    }

    /// Counts one wrap under the primary key and returns its id and cipher; refuses a key at
    /// its use limit. The caller saves the keyring so that the count persists.
    pub(crate) fn begin_wrap(&mut self) -> Result<(String, aes_gcm::Aes256Gcm), KeyringError> {
        let id = self.primary.clone().ok_or(KeyringError::NoPrimary)?;
        let limit = self.max_uses;
        let key = self
            .keys
            .iter_mut()
            .find(|k| k.id == id)
            .ok_or_else(|| KeyringError::UnknownKey { id: id.clone() })?;
        let material = key
            .material
            .ok_or_else(|| KeyringError::Retired { id: id.clone() })?;
        if key.uses >= limit {
            return Err(KeyringError::Exhausted {
                id,
                uses: key.uses,
                limit,
            });
        }
        key.uses += 1;
        Ok((id, aes_gcm::Aes256Gcm::new(&material.into())))
    }
}

impl Default for Keyring {
    fn default() -> Self {
        Keyring::new()
    }
}

fn decode_key(b64: &str) -> Option<[u8; KEY_LEN]> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    bytes.try_into().ok()
}

/// toml's error without the quoted source line (it may hold key material).
fn redact_toml_error(e: &toml::de::Error) -> String {
    let mut message = e.message().to_owned();
    if let Some(span) = e.span() {
        message = format!("{message} (at byte {})", span.start);
    }
    message
}

/// Refuses a secrets file that group or others may read (or write).
///
/// # Errors
/// [`KeyringError::Permissions`] or [`KeyringError::Io`].
pub fn check_private(path: &Path) -> Result<(), KeyringError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let meta = std::fs::metadata(path).map_err(|source| KeyringError::Io {
            action: "read",
            path: path.to_owned(),
            source,
        })?;
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(KeyringError::Permissions {
                path: path.to_owned(),
                mode,
            });
        }
    }
    Ok(())
}

/// Writes `bytes` to `path` with mode 0600 through a temporary file in the same directory,
/// then renames it over `path`.
///
/// # Errors
/// The I/O error.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
    let dir = dir.unwrap_or_else(|| Path::new("."));
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(format!(".tmp-{}", std::process::id()));
    let tmp = dir.join(name);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let result = (|| {
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_first_key_is_primary() {
        let mut ring = Keyring::new();
        ring.add_random("k1").unwrap();
        ring.add_random("k2").unwrap();
        assert_eq!(ring.primary(), Some("k1"));
        ring.set_primary("k2").unwrap();
        ring.retire("k1").unwrap();
        let text = ring.to_toml_string();
        let back = Keyring::from_toml_str(&text).unwrap();
        assert_eq!(back.list(), ring.list());
        assert_eq!(back.list()[0].state, KeyState::Retired);
        assert!(matches!(
            back.unwrap_cipher("k1"),
            Err(KeyringError::Retired { .. })
        ));
        assert!(back.unwrap_cipher("k2").is_ok());
        assert!(!text.contains("k1\"\nstate = \"retired\"\nkey"), "{text}");
    }

    #[test]
    fn the_primary_cannot_be_retired_nor_a_retired_key_made_primary() {
        let mut ring = Keyring::new();
        ring.add_random("a").unwrap();
        ring.add_random("b").unwrap();
        assert!(matches!(
            ring.retire("a"),
            Err(KeyringError::RetirePrimary { .. })
        ));
        ring.retire("b").unwrap();
        assert!(matches!(
            ring.set_primary("b"),
            Err(KeyringError::Retired { .. })
        ));
        assert!(matches!(
            ring.add_random("a"),
            Err(KeyringError::DuplicateId { .. })
        ));
        assert!(matches!(
            ring.add_random("no spaces"),
            Err(KeyringError::Invalid { .. })
        ));
    }

    #[test]
    fn use_counter_forces_rotation_at_the_limit() {
        let mut ring = Keyring::new();
        ring.add_random("a").unwrap();
        ring.set_max_uses(2).unwrap();
        ring.begin_wrap().unwrap();
        ring.begin_wrap().unwrap();
        let err = ring.begin_wrap().err().unwrap();
        assert_eq!(
            err.to_string(),
            "failed to wrap a data key: key \"a\" has been used 2 times, its max-uses limit of 2; add a key and make it primary"
        );
        ring.add_random("b").unwrap();
        ring.set_primary("b").unwrap();
        assert_eq!(ring.begin_wrap().unwrap().0, "b");
        assert!(ring.set_max_uses(NONCE_BOUND).is_err());
    }

    #[test]
    fn parse_errors_do_not_echo_key_material() {
        let text = "format = \"gauntlet-keyring\"\nformat-version = 1\n[[keys]]\nid = \"a\"\nstate = \"active\"\nkey = \"c2VjcmV0LXNlY3JldA==\"\nuses = \"x\"\n";
        let msg = Keyring::from_toml_str(text).unwrap_err().to_string();
        assert!(!msg.contains("c2VjcmV0"), "{msg}");
        let short = text.replace("uses = \"x\"", "uses = 0");
        let msg = Keyring::from_toml_str(&short).unwrap_err().to_string();
        assert_eq!(
            msg,
            "invalid keyring: keys[0].key: must be the base64 of 32 bytes"
        );
    }

    #[cfg(unix)]
    #[test]
    fn group_readable_files_are_refused_and_saves_are_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keyring.toml");
        let mut ring = Keyring::new();
        ring.add_random("a").unwrap();
        ring.save(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(Keyring::load(&path).is_ok());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let msg = Keyring::load(&path).unwrap_err().to_string();
        assert!(
            msg.contains("mode 0640") && msg.contains("chmod 600"),
            "{msg}"
        );
    }
}
