use atcr::atproto::crypto::{Algorithm, CryptoError, Keypair, PublicKey};

use crate::common::json;

fn b64(s: &str) -> Vec<u8> {
    atcr::atproto::data::decode_base64(s).unwrap_or_else(|| panic!("bad base64 {s}"))
}

#[test]
fn signature_fixtures() {
    let cases = json("crypto/signature-fixtures.json");
    let cases = cases.as_array().unwrap();
    assert_eq!(cases.len(), 6);
    for case in cases {
        let comment = case["comment"].as_str().unwrap();
        let alg = match case["algorithm"].as_str().unwrap() {
            "ES256" => Algorithm::P256,
            "ES256K" => Algorithm::K256,
            other => panic!("unknown algorithm {other}"),
        };
        let key = PublicKey::from_did_key(case["publicKeyDid"].as_str().unwrap()).unwrap();
        assert_eq!(key.algorithm(), alg, "{comment}");
        assert_eq!(
            key.algorithm().jwt_alg(),
            case["algorithm"].as_str().unwrap()
        );
        let legacy = case["publicKeyMultibase"].as_str().unwrap();
        assert_eq!(
            PublicKey::from_legacy_multibase(alg, legacy).unwrap(),
            key,
            "{comment}"
        );
        assert_eq!(key.to_legacy_multibase(), legacy, "{comment}");
        assert_eq!(key.to_did_key(), case["publicKeyDid"].as_str().unwrap());
        let msg = b64(case["messageBase64"].as_str().unwrap());
        let sig = b64(case["signatureBase64"].as_str().unwrap());
        let result = key.verify(&msg, &sig);
        let tags: Vec<&str> = case["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        if case["validSignature"].as_bool().unwrap() {
            assert_eq!(result, Ok(()), "{comment}");
        } else if tags.contains(&"high-s") {
            assert_eq!(result, Err(CryptoError::HighS), "{comment}");
        } else if tags.contains(&"der-encoded") {
            assert_eq!(result, Err(CryptoError::SignatureFormat), "{comment}");
        } else {
            panic!("invalid case without a known tag: {comment}");
        }
    }
}

#[test]
fn did_key_k256() {
    let cases = json("crypto/w3c_didkey_K256.json");
    assert!(!cases.as_array().unwrap().is_empty());
    for case in cases.as_array().unwrap() {
        let secret = hex::decode(case["privateKeyBytesHex"].as_str().unwrap()).unwrap();
        let key = Keypair::from_bytes(Algorithm::K256, &secret).unwrap();
        let did = case["publicDidKey"].as_str().unwrap();
        assert_eq!(key.public_key().to_did_key(), did);
        assert_eq!(PublicKey::from_did_key(did).unwrap(), key.public_key());
        assert!(did.starts_with("did:key:zQ3s"));
    }
}

#[test]
fn did_key_p256() {
    let cases = json("crypto/w3c_didkey_P256.json");
    assert!(!cases.as_array().unwrap().is_empty());
    for case in cases.as_array().unwrap() {
        let b58 = case["privateKeyBytesBase58"].as_str().unwrap();
        let (_, secret) = multibase::decode(format!("z{b58}")).unwrap();
        let key = Keypair::from_bytes(Algorithm::P256, &secret).unwrap();
        let did = case["publicDidKey"].as_str().unwrap();
        assert_eq!(key.public_key().to_did_key(), did);
        assert_eq!(PublicKey::from_did_key(did).unwrap(), key.public_key());
    }
}

#[test]
fn signatures_we_make_are_low_s_and_verify() {
    for alg in [Algorithm::K256, Algorithm::P256] {
        let key = Keypair::generate(alg);
        for i in 0..64u32 {
            let msg = i.to_be_bytes();
            let sig = key.sign(&msg);
            key.public_key().verify(&msg, &sig).unwrap();
        }
        // Flipping s to n - s gives the high-S twin, which must be refused.
        let sig = key.sign(b"x");
        let high = match alg {
            Algorithm::K256 => {
                let s = k256::ecdsa::Signature::from_slice(&sig).unwrap();
                let (r, s) = s.split_scalars();
                let neg = k256::ecdsa::Signature::from_scalars(r, -*s).unwrap();
                neg.to_bytes().to_vec()
            }
            Algorithm::P256 => {
                let s = p256::ecdsa::Signature::from_slice(&sig).unwrap();
                let (r, s) = s.split_scalars();
                let neg = p256::ecdsa::Signature::from_scalars(r, -*s).unwrap();
                neg.to_bytes().to_vec()
            }
        };
        assert_eq!(
            key.public_key().verify(b"x", &high),
            Err(CryptoError::HighS)
        );
    }
}
