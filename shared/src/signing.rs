//! Ed25519 device and hub keys, and what they sign (docs/ARCHITECTURE.md, section 5).
//!
//! - Every sync request carries a signature over method, path with query,
//!   timestamp, nonce and the SHA-256 of its body ([`request_message`]).
//! - Every answer of the hub carries a signature over the request's nonce,
//!   the hub's time and the SHA-256 of the answer ([`response_message`]), so
//!   an answer cannot be replayed to another request.
//! - A pushed batch is signed over its chain head ([`head_message`]): the
//!   device vouches for its whole log up to that event.

use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};

use crate::event::Hash;

/// How far a request's timestamp may be from the receiver's clock.
pub const FRESHNESS_WINDOW_MS: i64 = 5 * 60 * 1000;

/// Header names of signed sync requests and answers.
pub const HEADER_DEVICE: &str = "x-device";
pub const HEADER_TIMESTAMP: &str = "x-timestamp";
pub const HEADER_NONCE: &str = "x-nonce";
pub const HEADER_SIGNATURE: &str = "x-signature";
pub const HEADER_HUB_TIME: &str = "x-hub-time";
pub const HEADER_HUB_SIGNATURE: &str = "x-hub-signature";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigningError {
    #[error("the system random source failed")]
    Random,
    #[error("the stored key is not a valid Ed25519 key")]
    BadKey,
    #[error("bad signature encoding")]
    Encoding,
    #[error("signature does not verify")]
    Invalid,
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// A private signing key, kept as its PKCS#8 document.
pub struct SigningKey {
    pair: Ed25519KeyPair,
    pkcs8: Vec<u8>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("SigningKey")
            .field("public", &self.public_key_b64())
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    pub fn generate() -> Result<Self, SigningError> {
        let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| SigningError::Random)?;
        Self::from_pkcs8(doc.as_ref())
    }

    pub fn from_pkcs8(bytes: &[u8]) -> Result<Self, SigningError> {
        let pair = Ed25519KeyPair::from_pkcs8(bytes).map_err(|_| SigningError::BadKey)?;
        Ok(Self {
            pair,
            pkcs8: bytes.to_vec(),
        })
    }

    /// The PKCS#8 document, for storing with mode 0600.
    pub fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    pub fn public_key_b64(&self) -> String {
        b64().encode(self.pair.public_key().as_ref())
    }

    pub fn sign_b64(&self, message: &[u8]) -> String {
        b64().encode(self.pair.sign(message).as_ref())
    }
}

/// Checks a base64 signature over `message` by the base64 public key.
pub fn verify_b64(
    public_key_b64: &str,
    message: &[u8],
    signature_b64: &str,
) -> Result<(), SigningError> {
    let key = b64()
        .decode(public_key_b64)
        .map_err(|_| SigningError::Encoding)?;
    let signature = b64()
        .decode(signature_b64)
        .map_err(|_| SigningError::Encoding)?;
    UnparsedPublicKey::new(&ED25519, key)
        .verify(message, &signature)
        .map_err(|_| SigningError::Invalid)
}

/// Whether a base64 string is a well-formed Ed25519 public key.
pub fn is_public_key(public_key_b64: &str) -> bool {
    b64()
        .decode(public_key_b64)
        .is_ok_and(|key| key.len() == 32)
}

/// A fresh random nonce, 16 bytes in hex.
pub fn nonce() -> Result<String, SigningError> {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| SigningError::Random)?;
    Ok(hex::encode(bytes))
}

/// What a sync request's signature covers.
pub fn request_message(
    method: &str,
    path_and_query: &str,
    timestamp_ms: i64,
    nonce: &str,
    body: &[u8],
) -> Vec<u8> {
    format!(
        "sync-request-v1\n{method}\n{path_and_query}\n{timestamp_ms}\n{nonce}\n{}",
        Hash::of(body).to_hex()
    )
    .into_bytes()
}

/// What the hub's signature over an answer covers.
pub fn response_message(
    request_nonce: &str,
    hub_time_ms: i64,
    status: u16,
    body: &[u8],
) -> Vec<u8> {
    format!(
        "sync-response-v1\n{request_nonce}\n{hub_time_ms}\n{status}\n{}",
        Hash::of(body).to_hex()
    )
    .into_bytes()
}

/// What a batch's head signature covers: the device vouches that its log
/// up to `seq` ends in `hash`.
pub fn head_message(origin: &str, epoch: u32, seq: u64, hash: &Hash) -> Vec<u8> {
    format!("sync-head-v1\n{origin}\n{epoch}\n{seq}\n{}", hash.to_hex()).into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_with_its_key_and_nothing_else() {
        let key = SigningKey::generate().expect("key");
        let other = SigningKey::generate().expect("key");
        let message = request_message("POST", "/v1/sync/push", 1_000, "abc", b"{}");
        let signature = key.sign_b64(&message);
        assert_eq!(
            verify_b64(&key.public_key_b64(), &message, &signature),
            Ok(())
        );
        assert_eq!(
            verify_b64(&other.public_key_b64(), &message, &signature),
            Err(SigningError::Invalid)
        );
        let tampered = request_message("POST", "/v1/sync/push", 1_000, "abc", b"{ }");
        assert_eq!(
            verify_b64(&key.public_key_b64(), &tampered, &signature),
            Err(SigningError::Invalid)
        );
        assert_eq!(
            verify_b64(&key.public_key_b64(), &message, "not base64!"),
            Err(SigningError::Encoding)
        );
    }

    #[test]
    fn keys_survive_their_stored_form() {
        let key = SigningKey::generate().expect("key");
        let again = SigningKey::from_pkcs8(key.pkcs8()).expect("load");
        assert_eq!(again.public_key_b64(), key.public_key_b64());
        assert!(is_public_key(&key.public_key_b64()));
        assert!(!format!("{key:?}").contains(&hex::encode(key.pkcs8())));
        assert!(SigningKey::from_pkcs8(b"junk").is_err());
    }

    #[test]
    fn every_part_of_a_request_is_covered() {
        let base = request_message("POST", "/p?a=1", 5, "n", b"body");
        for other in [
            request_message("GET", "/p?a=1", 5, "n", b"body"),
            request_message("POST", "/p?a=2", 5, "n", b"body"),
            request_message("POST", "/p?a=1", 6, "n", b"body"),
            request_message("POST", "/p?a=1", 5, "m", b"body"),
            request_message("POST", "/p?a=1", 5, "n", b"bodY"),
        ] {
            assert_ne!(other, base);
        }
    }
}
