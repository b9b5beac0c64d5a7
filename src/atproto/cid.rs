//! Content identifiers: `CIDv1` with a SHA-256 multihash.

use sha2::{Digest, Sha256};
use thiserror::Error;

/// Multicodec of DAG-CBOR, the codec of records, MST nodes and commits.
pub const DAG_CBOR: u64 = 0x71;
/// Multicodec of raw bytes, the codec of blobs.
pub const RAW: u64 = 0x55;
const SHA2_256: u64 = 0x12;

/// Why bytes or a string are not a CID atproto accepts.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CidError {
    /// Not multibase, or a multibase this crate does not decode.
    #[error("CID string is not valid multibase")]
    Multibase,
    /// `CIDv0` (`Qm…`) or an unknown version.
    #[error("only CIDv1 is supported")]
    Version,
    /// A multihash other than a 32-byte SHA-256.
    #[error("only sha2-256 multihashes are supported")]
    Hash,
    /// Truncated or malformed bytes.
    #[error("malformed CID bytes")]
    Malformed,
}

/// A `CIDv1` whose multihash is SHA-256 (the only kind atproto produces). `Copy`, compared and
/// ordered by codec then digest. Its string form is multibase base32 (`bafy…`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cid {
    codec: u64,
    digest: [u8; 32],
}

pub(crate) fn write_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads an unsigned LEB128 varint (at most 9 bytes, minimal); returns the value and the
/// number of bytes read.
pub(crate) fn read_varint(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, &b) in bytes.iter().enumerate().take(9) {
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            if b == 0 && i > 0 {
                return None;
            }
            return Some((v, i + 1));
        }
    }
    None
}

impl Cid {
    /// The CID of `bytes` under `codec` (SHA-256 of the bytes).
    #[must_use]
    pub fn hash(codec: u64, bytes: &[u8]) -> Cid {
        Cid {
            codec,
            digest: Sha256::digest(bytes).into(),
        }
    }

    /// The CID of a DAG-CBOR block.
    #[must_use]
    pub fn for_cbor(bytes: &[u8]) -> Cid {
        Self::hash(DAG_CBOR, bytes)
    }

    /// The CID of a blob (raw codec).
    #[must_use]
    pub fn for_raw(bytes: &[u8]) -> Cid {
        Self::hash(RAW, bytes)
    }

    /// A CID from its parts.
    #[must_use]
    pub const fn from_digest(codec: u64, digest: [u8; 32]) -> Cid {
        Cid { codec, digest }
    }

    /// The multicodec of the content.
    #[must_use]
    pub const fn codec(&self) -> u64 {
        self.codec
    }

    /// The SHA-256 digest of the content.
    #[must_use]
    pub const fn digest(&self) -> &[u8; 32] {
        &self.digest
    }

    /// Whether `bytes` hash to this CID.
    #[must_use]
    pub fn matches(&self, bytes: &[u8]) -> bool {
        <[u8; 32]>::from(Sha256::digest(bytes)) == self.digest
    }

    /// The binary form: version, codec, multihash.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(36);
        self.write_bytes(&mut out);
        out
    }

    pub(crate) fn write_bytes(&self, out: &mut Vec<u8>) {
        out.push(1);
        write_varint(out, self.codec);
        out.push(SHA2_256 as u8);
        out.push(32);
        out.extend_from_slice(&self.digest);
    }

    /// Parses a binary CID that starts `bytes`; returns it and its length.
    pub fn read_bytes(bytes: &[u8]) -> Result<(Cid, usize), CidError> {
        if bytes.first() == Some(&0x12) {
            return Err(CidError::Version);
        }
        let (version, mut at) = read_varint(bytes).ok_or(CidError::Malformed)?;
        if version != 1 {
            return Err(CidError::Version);
        }
        let (codec, n) = read_varint(&bytes[at..]).ok_or(CidError::Malformed)?;
        at += n;
        let (hash, n) = read_varint(&bytes[at..]).ok_or(CidError::Malformed)?;
        at += n;
        let (len, n) = read_varint(&bytes[at..]).ok_or(CidError::Malformed)?;
        at += n;
        if hash != SHA2_256 || len != 32 {
            return Err(CidError::Hash);
        }
        let digest = bytes.get(at..at + 32).ok_or(CidError::Malformed)?;
        let mut d = [0u8; 32];
        d.copy_from_slice(digest);
        Ok((Cid { codec, digest: d }, at + 32))
    }

    /// Parses a binary CID that is exactly `bytes`.
    pub fn from_bytes(bytes: &[u8]) -> Result<Cid, CidError> {
        match Self::read_bytes(bytes)? {
            (cid, n) if n == bytes.len() => Ok(cid),
            _ => Err(CidError::Malformed),
        }
    }
}

/// Whether `s` has the syntax of a CID string as lexicon's `cid` format checks it: 8 to 256
/// characters of `A-Za-z0-9+=`, and not `CIDv0` (`Qmb…`). It does not decode the CID.
#[must_use]
pub fn is_valid_cid_syntax(s: &str) -> bool {
    (8..=256).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'=')
        && !s.starts_with("Qmb")
}

impl std::str::FromStr for Cid {
    type Err = CidError;
    fn from_str(s: &str) -> Result<Cid, CidError> {
        if s.starts_with("Qm") {
            return Err(CidError::Version);
        }
        if s.len() > 256 {
            return Err(CidError::Malformed);
        }
        let (_, bytes) = multibase::decode(s).map_err(|_| CidError::Multibase)?;
        Cid::from_bytes(&bytes)
    }
}

impl std::fmt::Display for Cid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
        let bytes = self.to_bytes();
        let mut out = String::with_capacity(1 + bytes.len() * 8 / 5 + 1);
        out.push('b');
        let mut buffer = 0u32;
        let mut bits = 0;
        for b in bytes {
            buffer = (buffer << 8) | u32::from(b);
            bits += 8;
            while bits >= 5 {
                bits -= 5;
                out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
            }
        }
        if bits > 0 {
            out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
        }
        f.write_str(&out)
    }
}

impl std::fmt::Debug for Cid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cid({self})")
    }
}

impl serde::Serialize for Cid {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Cid {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_roundtrip() {
        let s = "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm";
        let cid: Cid = s.parse().unwrap();
        assert_eq!(cid.to_string(), s);
        assert_eq!(cid.codec(), DAG_CBOR);
        assert_eq!(Cid::from_bytes(&cid.to_bytes()).unwrap(), cid);
        let raw: Cid = "bafkreiccldh766hwcnuxnf2wh6jgzepf2nlu2lvcllt63eww5p6chi4ity"
            .parse()
            .unwrap();
        assert_eq!(raw.codec(), RAW);
        assert_eq!(
            Cid::for_cbor(&[0xa2, 0x61, 0x65, 0x80, 0x61, 0x6c, 0xf6]),
            cid
        );
    }
}
