//! Paging of list RPCs: page sizes and opaque page tokens.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::Problem;

/// The page size when none is asked for.
pub const DEFAULT_PAGE_SIZE: u64 = 20;
/// The largest page size served.
pub const MAX_PAGE_SIZE: u64 = 100;

/// Returns the page size to serve: 0 means the default (20), and at most 100.
pub fn page_size(requested: u32) -> u64 {
    match u64::from(requested) {
        0 => DEFAULT_PAGE_SIZE,
        size => size.min(MAX_PAGE_SIZE),
    }
}

/// Encodes a page position as an opaque token (URL-safe base64 of JSON).
pub fn encode_token<T: Serialize>(position: &T) -> String {
    // Serializing plain data to JSON does not fail; an empty token means "from the start".
    let json = serde_json::to_vec(position).unwrap_or_default();
    URL_SAFE_NO_PAD.encode(json)
}

/// Decodes a token made by [`encode_token`]; a bad token is `page_token_invalid`.
// Problem is the shared error shape; boxing it here alone would make callers differ.
#[allow(clippy::result_large_err)]
pub fn decode_token<T: DeserializeOwned>(token: &str) -> Result<T, Problem> {
    let invalid = Problem::page_token_invalid;
    let bytes = URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|_| invalid())?;
    serde_json::from_slice(&bytes).map_err(|_| invalid())
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;
    use crate::error::ErrorKind;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct After {
        created_at: String,
        id: i64,
    }

    #[test]
    fn page_size_defaults_and_caps() {
        assert_eq!(page_size(0), 20);
        assert_eq!(page_size(1), 1);
        assert_eq!(page_size(100), 100);
        assert_eq!(page_size(5000), 100);
    }

    #[test]
    fn token_round_trips_and_is_url_safe() {
        let position = After {
            created_at: "2026-01-01T00:00:00Z".into(),
            id: 42,
        };
        let token = encode_token(&position);
        assert!(
            token
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_eq!(decode_token::<After>(&token).unwrap(), position);
    }

    #[test]
    fn bad_token_is_an_invalid_argument() {
        for token in ["!!!", "bm90IGpzb24", ""] {
            let problem = decode_token::<After>(token).unwrap_err();
            assert_eq!(problem.kind, ErrorKind::InvalidArgument);
            assert_eq!(problem.code, "page_token_invalid");
        }
    }
}
