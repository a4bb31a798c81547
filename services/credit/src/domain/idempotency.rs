//! Idempotency of money-moving requests (R19).

use sha2::{Digest, Sha256};

use crate::error::CreditError;

/// How long idempotency records are kept at least.
pub const KEEP_HOURS: i64 = 24;

/// The longest accepted idempotency key.
const MAX_KEY_LEN: usize = 255;

/// A client's idempotency key, unique per caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Parses a key: present, at most 255 printable ASCII characters.
    pub fn parse(input: &str) -> Result<IdempotencyKey, CreditError> {
        let key = input.trim();
        if key.is_empty() {
            return Err(CreditError::invalid(
                "idempotency_key",
                "idempotency_key_missing",
                "An Idempotency-Key header is required.",
                "سرآیند Idempotency-Key الزامی است.",
            ));
        }
        if key.len() > MAX_KEY_LEN || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(CreditError::invalid(
                "idempotency_key",
                "idempotency_key_invalid",
                "The Idempotency-Key must be at most 255 printable ASCII characters.",
                "کلید Idempotency-Key باید حداکثر ۲۵۵ نویسهٔ اسکی قابل چاپ باشد.",
            ));
        }
        Ok(IdempotencyKey(key.to_owned()))
    }

    /// Returns the key.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Returns the SHA-256 (hex) of a canonical encoding of a request: the operation name and
/// its fields as `name=value` lines, in the order given. Two requests are "the same body"
/// exactly when their hashes are equal.
pub fn request_hash(operation: &str, fields: &[(&str, String)]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(operation.as_bytes());
    for (name, value) in fields {
        hasher.update(b"\n");
        hasher.update(name.as_bytes());
        hasher.update(b"=");
        // Length-prefixed so that no value can imitate a field boundary.
        hasher.update(value.len().to_string().as_bytes());
        hasher.update(b":");
        hasher.update(value.as_bytes());
    }
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r19_missing_key_is_refused() {
        assert_eq!(
            IdempotencyKey::parse("  ").unwrap_err().code(),
            "idempotency_key_missing"
        );
        assert!(IdempotencyKey::parse("abc-123").is_ok());
    }

    #[test]
    fn r19_hash_separates_bodies() {
        let a = request_hash("p", &[("amount", "12".into()), ("months", "3".into())]);
        let b = request_hash("p", &[("amount", "1".into()), ("months", "23".into())]);
        assert_ne!(a, b);
        assert_eq!(
            a,
            request_hash("p", &[("amount", "12".into()), ("months", "3".into())])
        );
    }
}
