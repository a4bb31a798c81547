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
    /// Draws a uniformly random code of six digits.
    pub fn generate() -> LoginCode {
        let number: u32 = rand::rng().random_range(0..1_000_000);
        LoginCode(format!("{number:06}"))
    }

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
    /// When the code was issued, by the injected clock.
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
    /// clock; this check runs on the injected clock, so tests can move time).
    pub fn is_expired(&self, now: DateTime<Utc>, lifetime: Duration) -> bool {
        let lifetime = chrono::Duration::from_std(lifetime).unwrap_or(chrono::Duration::MAX);
        now >= self.issued_at + lifetime
    }

    /// Returns true when `code` is this challenge's code.
    pub fn matches(&self, code: &str) -> bool {
        constant_time_eq(&hash_code(&self.salt, code), &self.code_hash)
    }
}

/// Returns the rate-limit key of a mobile for one window of the injected clock, with the
/// seconds left in that window. Fixed windows follow the injected clock, so tests can move
/// time past them.
pub fn rate_window(
    prefix: &str,
    mobile: &str,
    rule: RateLimit,
    now: DateTime<Utc>,
) -> (String, Duration) {
    let window = rule.window.as_secs().max(1) as i64;
    let seconds = now.timestamp();
    let index = seconds.div_euclid(window);
    let left = window - seconds.rem_euclid(window);
    (
        format!("{prefix}:{window}:{mobile}:{index}"),
        Duration::from_secs(left as u64),
    )
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn r3_codes_have_six_digits() {
        for _ in 0..200 {
            let code = LoginCode::generate();
            assert_eq!(code.as_str().len(), CODE_DIGITS);
            assert!(code.as_str().bytes().all(|b| b.is_ascii_digit()));
        }
        assert!(!format!("{:?}", LoginCode::generate()).contains(|c: char| c.is_ascii_digit()));
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
        let challenge = Challenge::new("E1".into(), &LoginCode::generate(), now);
        let lifetime = Duration::from_secs(120);
        assert!(!challenge.is_expired(now + chrono::Duration::seconds(119), lifetime));
        assert!(challenge.is_expired(now + chrono::Duration::seconds(120), lifetime));
    }

    #[test]
    fn rate_windows_follow_the_clock() {
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 10, 0, 15).unwrap();
        let (key, left) = rate_window("sms", "09121234567", CODES_PER_MINUTE, now);
        assert_eq!(left, Duration::from_secs(45));
        let (next, _) = rate_window(
            "sms",
            "09121234567",
            CODES_PER_MINUTE,
            now + chrono::Duration::seconds(45),
        );
        assert_ne!(key, next);
        let (hour, left) = rate_window("sms", "09121234567", CODES_PER_HOUR, now);
        assert_eq!(left, Duration::from_secs(3585));
        assert_ne!(hour, key);
    }
}
