//! Ed25519-signed checkpoints: a tree size, its root and a time.
//!
//! The signed message is the text
//! `gauntlet-audit-checkpoint/v1\n<size>\n<root hex>\n<time_us>\n`, so any Ed25519 library
//! can check one without this crate.

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use super::hex;
use super::merkle::Hash;

/// First line of every signed checkpoint message.
pub const CHECKPOINT_ORIGIN: &str = "gauntlet-audit-checkpoint/v1";

/// A signed statement that the log held `size` records with `root` at `time_us`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// Records covered.
    pub size: u64,
    /// RFC 6962 root over the first `size` records.
    #[serde(with = "hex::serde_bytes32")]
    pub root: Hash,
    /// Microseconds since the epoch, UTC, when it was signed.
    pub time_us: i64,
    /// The Ed25519 public key that signed it.
    #[serde(with = "hex::serde_bytes32")]
    pub public_key: [u8; 32],
    /// Ed25519 signature over [`Checkpoint::message`].
    #[serde(with = "hex::serde_bytes64")]
    pub signature: [u8; 64],
}

/// Why a checkpoint's signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// The public key is not a valid Ed25519 point.
    #[error("failed to verify checkpoint: invalid public key")]
    BadKey,
    /// Signed by a different key than the one trusted.
    #[error("failed to verify checkpoint: signed by key {found}, expected {expected}")]
    WrongKey {
        /// Hex of the key trusted.
        expected: String,
        /// Hex of the key in the checkpoint.
        found: String,
    },
    /// The signature does not verify.
    #[error("failed to verify checkpoint: bad signature")]
    BadSignature,
}

impl Checkpoint {
    /// The bytes signed.
    pub fn message(size: u64, root: &Hash, time_us: i64) -> String {
        format!(
            "{CHECKPOINT_ORIGIN}\n{size}\n{}\n{time_us}\n",
            hex::encode(root)
        )
    }

    /// Signs a checkpoint.
    pub fn sign(key: &SigningKey, size: u64, root: Hash, time_us: i64) -> Checkpoint {
        let signature = key.sign(Checkpoint::message(size, &root, time_us).as_bytes());
        Checkpoint {
            size,
            root,
            time_us,
            public_key: key.verifying_key().to_bytes(),
            signature: signature.to_bytes(),
        }
    }

    /// Checks the signature with `trusted` (strict Ed25519: no malleable signatures).
    ///
    /// # Errors
    /// [`SignatureError`] saying which check failed.
    pub fn verify(&self, trusted: &VerifyingKey) -> Result<(), SignatureError> {
        if self.public_key != trusted.to_bytes() {
            return Err(SignatureError::WrongKey {
                expected: hex::encode(trusted.as_bytes()),
                found: hex::encode(&self.public_key),
            });
        }
        let signature = Signature::from_bytes(&self.signature);
        trusted
            .verify_strict(
                Checkpoint::message(self.size, &self.root, self.time_us).as_bytes(),
                &signature,
            )
            .map_err(|_| SignatureError::BadSignature)
    }
}

impl Checkpoint {
    /// [`Checkpoint::verify`] against the raw 32-byte public key `trusted`.
    ///
    /// # Errors
    /// [`SignatureError`]; `BadKey` when `trusted` is not a valid Ed25519 key.
    pub fn verify_with(&self, trusted: &[u8; 32]) -> Result<(), SignatureError> {
        self.verify(&verifying_key(trusted)?)
    }
}

/// The verifying key of 32 bytes.
///
/// # Errors
/// [`SignatureError::BadKey`].
pub fn verifying_key(bytes: &[u8; 32]) -> Result<VerifyingKey, SignatureError> {
    VerifyingKey::from_bytes(bytes).map_err(|_| SignatureError::BadKey)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_and_rejects_forgeries() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let cp = Checkpoint::sign(&key, 5, [9; 32], 1_000);
        let vk = key.verifying_key();
        cp.verify(&vk).unwrap();
        let mut forged = cp.clone();
        forged.size = 6;
        assert_eq!(forged.verify(&vk), Err(SignatureError::BadSignature));
        let mut forged = cp.clone();
        forged.root[0] ^= 1;
        assert_eq!(forged.verify(&vk), Err(SignatureError::BadSignature));
        let other = SigningKey::from_bytes(&[8; 32]);
        let by_other = Checkpoint::sign(&other, 5, [9; 32], 1_000);
        assert!(matches!(
            by_other.verify(&vk),
            Err(SignatureError::WrongKey { .. })
        ));
        let json = serde_json::to_string(&cp).unwrap();
        assert_eq!(serde_json::from_str::<Checkpoint>(&json).unwrap(), cp);
    }
}
