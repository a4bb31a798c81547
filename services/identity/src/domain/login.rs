//! Login by national ID + mobile + one-time SMS code (R3).

use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tavana_kit::store::RateLimit;

/// How many digits a login code has.
pub const CODE_DIGITS: usize = 6;

/// At most one SMS code a minute per mobile (R3).
pub const CODES_PER_MINUTE: RateLimit = RateLimit {
    limit: 1,
    window: Duration::from_secs(60),
};

/// At most five SMS codes an hour per mobile (R3).
pub const CODES_PER_HOUR: RateLimit = RateLimit {
    limit: 5,
    window: Duration::from_secs(3600),
};

/// A one-time login code, never stored or logged in clear.
#[derive(Clone, PartialEq, Eq)]
pub struct LoginCode(String);

impl LoginCode {
    /// Returns the digits, for the SMS.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for LoginCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LoginCode(******)")
    }
}

/// The secret login codes are derived from (R3): a code is the keyed hash of its random
/// challenge id, so it is never stored, not even in the SMS outbox, and any replica's relay
/// renders the SMS at send time.
#[derive(Clone)]
pub struct LoginCodeKey([u8; 32]);

impl std::fmt::Debug for LoginCodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LoginCodeKey(***)")
    }
}

impl LoginCodeKey {
    /// Derives the key from a secret (the token signing key), for this one purpose.
    pub fn derive_from(secret: &[u8]) -> LoginCodeKey {
        LoginCodeKey(hmac_sha256(secret, b"tavana login codes v1"))
    }

    /// Returns the code of a challenge: six digits from HMAC-SHA256 of its id.
    pub fn code(&self, challenge_id: &str) -> LoginCode {
        let digest = hmac_sha256(&self.0, challenge_id.as_bytes());
        let mut head = [0u8; 8];
        head.copy_from_slice(&digest[..8]);
        LoginCode(format!("{:06}", u64::from_be_bytes(head) % 1_000_000))
    }
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    use hmac::{Hmac, Mac};
    // HMAC takes a key of any length; `new_from_slice` never fails for it.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return [0; 32];
    };
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// Returns a fresh random salt, hex-encoded.
pub fn new_salt() -> String {
    let bytes: [u8; 16] = rand::rng().random();
    hex::encode(bytes)
}

/// Hashes a code with its challenge's salt (sha256 over salt and code).
pub fn hash_code(salt: &str, code: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(salt.as_bytes());
    hasher.update(b":");
    hasher.update(code.trim().as_bytes());
    hex::encode(hasher.finalize())
}

/// Compares two strings in time independent of where they differ.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.bytes()
        .zip(b.bytes())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// A pending login, kept in the expiring-key store under its challenge id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenge {
    /// Whose login it is.
    pub employee_id: String,
    /// The per-challenge salt of `code_hash`.
    pub salt: String,
    /// `hash_code(salt, code)`.
    pub code_hash: String,
    /// When the code was issued, by the security clock.
    pub issued_at: DateTime<Utc>,
}

impl Challenge {
    /// Creates the challenge of a freshly drawn code.
    pub fn new(employee_id: String, code: &LoginCode, issued_at: DateTime<Utc>) -> Challenge {
        let salt = new_salt();
        let code_hash = hash_code(&salt, code.as_str());
        Challenge {
            employee_id,
            salt,
            code_hash,
            issued_at,
        }
    }

    /// Returns true once the code's lifetime has passed (the store's TTL runs on the wall
    /// clock; this check runs on the security clock, which identity's tests can move).
    pub fn is_expired(&self, now: DateTime<Utc>, lifetime: Duration) -> bool {
        let lifetime = chrono::Duration::from_std(lifetime).unwrap_or(chrono::Duration::MAX);
        now >= self.issued_at + lifetime
    }

    /// Returns true when `code` is this challenge's code.
    pub fn matches(&self, code: &str) -> bool {
        constant_time_eq(&hash_code(&self.salt, code), &self.code_hash)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn key() -> LoginCodeKey {
        LoginCodeKey::derive_from(b"test signing key")
    }

    #[test]
    fn r3_codes_have_six_digits() {
        let key = key();
        for n in 0..200 {
            let code = key.code(&format!("challenge-{n}"));
            assert_eq!(code.as_str().len(), CODE_DIGITS);
            assert!(code.as_str().bytes().all(|b| b.is_ascii_digit()));
        }
        assert!(!format!("{:?}", key.code("c")).contains(|c: char| c.is_ascii_digit()));
        assert!(!format!("{key:?}").contains("test"));
    }

    #[test]
    fn r3_a_code_is_rendered_again_only_with_the_key() {
        let key = key();
        let other = LoginCodeKey::derive_from(b"another signing key");

        let codes: std::collections::HashSet<String> = (0..50)
            .map(|n| key.code(&format!("challenge-{n}")).as_str().to_owned())
            .collect();

        assert_eq!(key.code("c1").as_str(), key.code("c1").as_str());
        assert!(codes.len() > 45, "codes of different challenges differ");
        let differ = (0..20).any(|n| {
            let id = format!("challenge-{n}");
            key.code(&id).as_str() != other.code(&id).as_str()
        });
        assert!(differ);
    }

    #[test]
    fn r3_code_is_stored_hashed_with_a_salt_per_challenge() {
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 10, 0, 0).unwrap();
        let code = LoginCode("123456".into());
        let first = Challenge::new("E1".into(), &code, now);
        let second = Challenge::new("E1".into(), &code, now);
        assert!(!first.code_hash.contains("123456"));
        assert_ne!(first.code_hash, second.code_hash);
        assert!(first.matches("123456"));
        assert!(first.matches(" 123456 "));
        assert!(!first.matches("123457"));
        assert!(!first.matches(""));
    }

    #[test]
    fn r3_code_expires_after_its_lifetime() {
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 10, 0, 0).unwrap();
        let challenge = Challenge::new("E1".into(), &key().code("c"), now);
        let lifetime = Duration::from_secs(120);
        assert!(!challenge.is_expired(now + chrono::Duration::seconds(119), lifetime));
        assert!(challenge.is_expired(now + chrono::Duration::seconds(120), lifetime));
    }
}
