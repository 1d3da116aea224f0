//! Lowercase hex for hashes, keys and signatures in files and JSON.

/// Lowercase hex of `bytes`.
pub fn encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    out
}

/// Why a hex string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HexError {
    /// An odd number of digits.
    #[error("failed to decode hex: odd length {0}")]
    OddLength(usize),
    /// A character that is not a hex digit.
    #[error("failed to decode hex: invalid digit at position {0}")]
    InvalidDigit(usize),
    /// The wrong number of bytes for the field.
    #[error("failed to decode hex: expected {expected} bytes, got {got}")]
    WrongLength {
        /// Bytes wanted.
        expected: usize,
        /// Bytes given.
        got: usize,
    },
}

/// Bytes of a hex string (either case).
///
/// # Errors
/// [`HexError`] naming the position of the first bad digit.
pub fn decode(s: &str) -> Result<Vec<u8>, HexError> {
    let s = s.as_bytes();
    if !s.len().is_multiple_of(2) {
        return Err(HexError::OddLength(s.len()));
    }
    let digit = |i: usize| match s[i] {
        c @ b'0'..=b'9' => Ok(c - b'0'),
        c @ b'a'..=b'f' => Ok(c - b'a' + 10),
        c @ b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err(HexError::InvalidDigit(i)),
    };
    (0..s.len() / 2)
        .map(|i| Ok((digit(2 * i)? << 4) | digit(2 * i + 1)?))
        .collect()
}

/// Exactly `N` bytes of a hex string.
///
/// # Errors
/// [`HexError`], including [`HexError::WrongLength`].
pub fn decode_array<const N: usize>(s: &str) -> Result<[u8; N], HexError> {
    let bytes = decode(s)?;
    let got = bytes.len();
    bytes
        .try_into()
        .map_err(|_| HexError::WrongLength { expected: N, got })
}

/// A 32-byte hash or key.
///
/// # Errors
/// [`HexError`].
pub fn decode32(s: &str) -> Result<[u8; 32], HexError> {
    decode_array::<32>(s)
}

/// `#[serde(with = "hex::serde_bytes32")]` for `[u8; 32]` fields.
pub mod serde_bytes32 {
    use serde::{Deserialize as _, Deserializer, Serializer};

    /// Serialises as lowercase hex.
    pub fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::encode(v))
    }

    /// Reads 64 hex digits.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = std::borrow::Cow::<str>::deserialize(d)?;
        super::decode32(&s).map_err(serde::de::Error::custom)
    }
}

/// `#[serde(with = "hex::serde_bytes64")]` for `[u8; 64]` fields (signatures).
pub mod serde_bytes64 {
    use serde::{Deserialize as _, Deserializer, Serializer};

    /// Serialises as lowercase hex.
    pub fn serialize<S: Serializer>(v: &[u8; 64], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::encode(v))
    }

    /// Reads 128 hex digits.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 64], D::Error> {
        let s = std::borrow::Cow::<str>::deserialize(d)?;
        super::decode_array::<64>(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors() {
        assert_eq!(encode(&[0, 0xab, 0xff]), "00abff");
        assert_eq!(decode("00ABff").unwrap(), vec![0, 0xab, 0xff]);
        assert_eq!(decode("abc"), Err(HexError::OddLength(3)));
        assert_eq!(decode("0g"), Err(HexError::InvalidDigit(1)));
        assert_eq!(
            decode32("00"),
            Err(HexError::WrongLength {
                expected: 32,
                got: 1
            })
        );
    }
}
