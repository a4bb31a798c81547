//! Merchant API keys (R26): shown once, stored only as a hash.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Every key starts with this, so that leaked keys are easy to recognise and scan for.
pub const API_KEY_PREFIX: &str = "tvk_";
/// Random bytes in a key.
const KEY_BYTES: usize = 32;

/// A freshly made API key and the hash that is stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewApiKey {
    /// The key, shown to the contracts user once and never stored.
    pub plaintext: String,
    /// The stored hash of the key.
    pub hash: String,
}

/// Makes a new key: `tvk_` and 32 random bytes from the thread's CSPRNG, base64url.
pub fn generate_api_key() -> NewApiKey {
    let mut bytes = [0u8; KEY_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    let plaintext = format!("{API_KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
    let hash = hash_api_key(&plaintext);
    NewApiKey { plaintext, hash }
}

/// Returns the stored form of a key: hex SHA-256.
///
/// A fast hash is right here, unlike for passwords or PINs: the key carries 256 bits of
/// randomness, so no dictionary or brute-force search over the hash is feasible and a
/// slow KDF (argon2) would only add latency to every merchant request. Being
/// unsalted and deterministic, the hash can be looked up by an index.
pub fn hash_api_key(plaintext: &str) -> String {
    hex::encode(Sha256::digest(plaintext.as_bytes()))
}

/// Returns true when `text` has the shape of a key, so that junk is refused without a
/// database lookup.
pub fn looks_like_api_key(text: &str) -> bool {
    text.strip_prefix(API_KEY_PREFIX).is_some_and(|rest| {
        rest.len() == 43
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r26_keys_are_random_prefixed_and_hash_to_their_stored_form() {
        let first = generate_api_key();
        let second = generate_api_key();
        assert_ne!(first.plaintext, second.plaintext);
        assert!(looks_like_api_key(&first.plaintext), "{}", first.plaintext);
        assert_eq!(hash_api_key(&first.plaintext), first.hash);
        assert_ne!(first.hash, second.hash);
        assert!(!first.hash.contains(&first.plaintext));
        assert_eq!(first.hash.len(), 64);
    }

    #[test]
    fn junk_does_not_look_like_a_key() {
        assert!(!looks_like_api_key(""));
        assert!(!looks_like_api_key("tvk_short"));
        assert!(!looks_like_api_key(&format!("xyz_{}", "a".repeat(43))));
        assert!(!looks_like_api_key(&format!(
            "tvk_{}",
            "a+".repeat(21) + "a"
        )));
    }
}
