//! Revoked access tokens. Access tokens are verified by the gateway without
//! asking identity, so identity records revocations in the shared store for
//! as long as a token issued before them could still be valid, and the
//! gateway refuses such tokens (R5: a mobile change ends every session at
//! once, not 15 minutes later).

use std::time::Duration;

use crate::store::KvStore;

/// How long a revocation is kept: the access token lifetime and a margin.
pub const REVOCATION_TTL: Duration = Duration::from_secs(20 * 60);

fn session_key(session_id: &str) -> String {
    format!("revoked:session:{session_id}")
}

/// Records that a session (logout, refresh-token reuse, mobile change, role
/// revoked) is revoked.
pub async fn revoke_session(store: &dyn KvStore, session_id: &str) -> anyhow::Result<()> {
    store
        .set(&session_key(session_id), "1", REVOCATION_TTL)
        .await
}

/// Returns whether the session of an access token has been revoked.
pub async fn is_revoked(store: &dyn KvStore, session_id: &str) -> anyhow::Result<bool> {
    Ok(store.get(&session_key(session_id)).await?.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    #[tokio::test]
    async fn a_revoked_session_is_refused_and_others_are_not() {
        let store = MemoryStore::new();

        revoke_session(&store, "s1").await.unwrap();

        assert!(is_revoked(&store, "s1").await.unwrap());
        assert!(!is_revoked(&store, "s2").await.unwrap());
    }
}
