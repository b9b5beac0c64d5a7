//! Signing keys of atproto: secp256k1 (K-256) and NIST P-256, `did:key`, multibase, and
//! ECDSA signatures in the only form atproto accepts (64-byte compact `r‖s`, low-S).

use k256::ecdsa::signature::Signer;
use k256::ecdsa::signature::hazmat::PrehashVerifier;
use sha2::{Digest, Sha256};
use thiserror::Error;

/// Why a key or a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CryptoError {
    /// A `did:key` or multibase key that could not be decoded.
    #[error("invalid public key encoding: {0}")]
    KeyEncoding(&'static str),
    /// Bytes that are not a point (or a scalar) of the curve.
    #[error("invalid key material")]
    KeyMaterial,
    /// A signature that is not 64 bytes (for instance DER).
    #[error("signature is not a 64-byte compact signature")]
    SignatureFormat,
    /// A signature whose `s` is in the upper half of the order (atproto requires low-S).
    #[error("signature is not low-S")]
    HighS,
    /// The signature does not verify.
    #[error("signature does not verify")]
    BadSignature,
}

/// The curves atproto signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// secp256k1, JWT `ES256K`, multicodec 0xe7.
    K256,
    /// NIST P-256, JWT `ES256`, multicodec 0x1200.
    P256,
}

impl Algorithm {
    /// The JWT `alg` name.
    #[must_use]
    pub const fn jwt_alg(self) -> &'static str {
        match self {
            Algorithm::K256 => "ES256K",
            Algorithm::P256 => "ES256",
        }
    }

    /// The multicodec prefix (varint) of a compressed public key.
    const fn multicodec(self) -> &'static [u8] {
        match self {
            Algorithm::K256 => &[0xe7, 0x01],
            Algorithm::P256 => &[0x80, 0x24],
        }
    }
}

/// A private signing key.
#[derive(Clone)]
pub enum Keypair {
    /// A secp256k1 key.
    K256(k256::ecdsa::SigningKey),
    /// A P-256 key.
    P256(p256::ecdsa::SigningKey),
}

impl std::fmt::Debug for Keypair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keypair({})", self.public_key().to_did_key())
    }
}

impl Keypair {
    /// A fresh random key.
    #[must_use]
    pub fn generate(alg: Algorithm) -> Keypair {
        let mut rng = rand::rngs::OsRng;
        match alg {
            Algorithm::K256 => Keypair::K256(k256::ecdsa::SigningKey::random(&mut rng)),
            Algorithm::P256 => Keypair::P256(p256::ecdsa::SigningKey::random(&mut rng)),
        }
    }

    /// A key from its 32-byte secret scalar (big-endian).
    pub fn from_bytes(alg: Algorithm, secret: &[u8]) -> Result<Keypair, CryptoError> {
        match alg {
            Algorithm::K256 => k256::ecdsa::SigningKey::from_slice(secret).map(Keypair::K256),
            Algorithm::P256 => p256::ecdsa::SigningKey::from_slice(secret).map(Keypair::P256),
        }
        .map_err(|_| CryptoError::KeyMaterial)
    }

    /// The 32-byte secret scalar, to store the key. Treat as a secret.
    #[must_use]
    pub fn to_bytes(&self) -> [u8; 32] {
        match self {
            Keypair::K256(k) => k.to_bytes().into(),
            Keypair::P256(k) => k.to_bytes().into(),
        }
    }

    /// The curve.
    #[must_use]
    pub fn algorithm(&self) -> Algorithm {
        match self {
            Keypair::K256(_) => Algorithm::K256,
            Keypair::P256(_) => Algorithm::P256,
        }
    }

    /// The public half.
    #[must_use]
    pub fn public_key(&self) -> PublicKey {
        match self {
            Keypair::K256(k) => PublicKey::K256(*k.verifying_key()),
            Keypair::P256(k) => PublicKey::P256(*k.verifying_key()),
        }
    }

    /// Signs SHA-256(`msg`) with deterministic ECDSA (RFC 6979) and returns the 64-byte compact
    /// low-S signature atproto requires. The same key and message always give the same bytes.
    #[must_use]
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        let mut out = [0u8; 64];
        match self {
            Keypair::K256(k) => {
                let sig: k256::ecdsa::Signature = Signer::sign(k, msg);
                let sig = sig.normalize_s().unwrap_or(sig);
                out.copy_from_slice(&sig.to_bytes());
            }
            Keypair::P256(k) => {
                let sig: p256::ecdsa::Signature = Signer::sign(k, msg);
                let sig = sig.normalize_s().unwrap_or(sig);
                out.copy_from_slice(&sig.to_bytes());
            }
        }
        out
    }
}

/// A public key that verifies atproto signatures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublicKey {
    /// A secp256k1 key.
    K256(k256::ecdsa::VerifyingKey),
    /// A P-256 key.
    P256(p256::ecdsa::VerifyingKey),
}

impl PublicKey {
    /// The curve.
    #[must_use]
    pub fn algorithm(&self) -> Algorithm {
        match self {
            PublicKey::K256(_) => Algorithm::K256,
            PublicKey::P256(_) => Algorithm::P256,
        }
    }

    /// A key from SEC1 bytes (33-byte compressed or 65-byte uncompressed).
    pub fn from_sec1(alg: Algorithm, bytes: &[u8]) -> Result<PublicKey, CryptoError> {
        match alg {
            Algorithm::K256 => {
                k256::ecdsa::VerifyingKey::from_sec1_bytes(bytes).map(PublicKey::K256)
            }
            Algorithm::P256 => {
                p256::ecdsa::VerifyingKey::from_sec1_bytes(bytes).map(PublicKey::P256)
            }
        }
        .map_err(|_| CryptoError::KeyMaterial)
    }

    /// The 33-byte compressed SEC1 point.
    #[must_use]
    pub fn to_compressed(&self) -> Vec<u8> {
        match self {
            PublicKey::K256(k) => k.to_encoded_point(true).as_bytes().to_vec(),
            PublicKey::P256(k) => k.to_encoded_point(true).as_bytes().to_vec(),
        }
    }

    /// The `Multikey` form used by DID documents' `publicKeyMultibase`: base58btc of the
    /// multicodec prefix and the compressed point (`zQ3s…` for K-256, `zDna…` for P-256).
    #[must_use]
    pub fn to_multikey(&self) -> String {
        let mut bytes = self.algorithm().multicodec().to_vec();
        bytes.extend_from_slice(&self.to_compressed());
        multibase::encode(multibase::Base::Base58Btc, bytes)
    }

    /// Parses the `Multikey` form (see [`PublicKey::to_multikey`]).
    pub fn from_multikey(s: &str) -> Result<PublicKey, CryptoError> {
        if !s.starts_with('z') {
            return Err(CryptoError::KeyEncoding("multikey must be base58btc ('z')"));
        }
        let (_, bytes) =
            multibase::decode(s).map_err(|_| CryptoError::KeyEncoding("not base58btc"))?;
        for alg in [Algorithm::K256, Algorithm::P256] {
            if let Some(point) = bytes.strip_prefix(alg.multicodec()) {
                return Self::from_sec1(alg, point);
            }
        }
        Err(CryptoError::KeyEncoding("unsupported multicodec"))
    }

    /// `did:key:` + the multikey.
    #[must_use]
    pub fn to_did_key(&self) -> String {
        format!("did:key:{}", self.to_multikey())
    }

    /// Parses a `did:key` of a K-256 or P-256 key.
    pub fn from_did_key(did: &str) -> Result<PublicKey, CryptoError> {
        let mk = did
            .strip_prefix("did:key:")
            .ok_or(CryptoError::KeyEncoding("not a did:key"))?;
        Self::from_multikey(mk)
    }

    /// The legacy `publicKeyMultibase` of `EcdsaSecp256k1VerificationKey2019` /
    /// `EcdsaSecp256r1VerificationKey2019` DID document entries: base58btc of the bare SEC1
    /// point (compressed or uncompressed), with the curve given by the entry's type.
    pub fn from_legacy_multibase(alg: Algorithm, s: &str) -> Result<PublicKey, CryptoError> {
        if !s.starts_with('z') {
            return Err(CryptoError::KeyEncoding(
                "multibase must be base58btc ('z')",
            ));
        }
        let (_, bytes) =
            multibase::decode(s).map_err(|_| CryptoError::KeyEncoding("not base58btc"))?;
        Self::from_sec1(alg, &bytes)
    }

    /// The legacy `publicKeyMultibase` (base58btc of the compressed point, no multicodec).
    #[must_use]
    pub fn to_legacy_multibase(&self) -> String {
        multibase::encode(multibase::Base::Base58Btc, self.to_compressed())
    }

    /// Verifies a signature over SHA-256(`msg`). Only 64-byte compact low-S signatures are
    /// accepted: DER and high-S signatures are refused even if mathematically valid.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> Result<(), CryptoError> {
        self.verify_hash(&Sha256::digest(msg).into(), sig)
    }

    /// Verifies a signature over a precomputed SHA-256 digest; see [`PublicKey::verify`].
    pub fn verify_hash(&self, hash: &[u8; 32], sig: &[u8]) -> Result<(), CryptoError> {
        if sig.len() != 64 {
            return Err(CryptoError::SignatureFormat);
        }
        match self {
            PublicKey::K256(k) => {
                let s = k256::ecdsa::Signature::from_slice(sig)
                    .map_err(|_| CryptoError::SignatureFormat)?;
                if s.normalize_s().is_some() {
                    return Err(CryptoError::HighS);
                }
                k.verify_prehash(hash, &s)
                    .map_err(|_| CryptoError::BadSignature)
            }
            PublicKey::P256(k) => {
                let s = p256::ecdsa::Signature::from_slice(sig)
                    .map_err(|_| CryptoError::SignatureFormat)?;
                if s.normalize_s().is_some() {
                    return Err(CryptoError::HighS);
                }
                k.verify_prehash(hash, &s)
                    .map_err(|_| CryptoError::BadSignature)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_both_curves() {
        for alg in [Algorithm::K256, Algorithm::P256] {
            let k = Keypair::generate(alg);
            let sig = k.sign(b"hello");
            let pk = k.public_key();
            pk.verify(b"hello", &sig).unwrap();
            assert_eq!(pk.verify(b"hellp", &sig), Err(CryptoError::BadSignature));
            let back = PublicKey::from_did_key(&pk.to_did_key()).unwrap();
            assert_eq!(back, pk);
            let again = Keypair::from_bytes(alg, &k.to_bytes()).unwrap();
            assert_eq!(again.sign(b"hello"), sig);
            assert_eq!(
                PublicKey::from_legacy_multibase(alg, &pk.to_legacy_multibase()).unwrap(),
                pk
            );
        }
    }
}
