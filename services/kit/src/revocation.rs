//! Revoked access tokens. Access tokens are verified by the gateway without
//! asking identity, so identity records revocations in the shared store for
//! as long as a token issued before them could still be valid, and the
//! gateway refuses such tokens (R5: a mobile change ends every session at
//! once, not 15 minutes later).
//!
//! The store is a cache: the durable record is identity's sessions table.
//! When the store has no answer for a session (never asked, expired, or
//! Redis restarted empty), the gateway asks identity (`CheckSession`) and
//! remembers the answer: a revocation for [`REVOCATION_TTL`], an active
//! session for [`ACTIVE_TTL`]. So losing the store revokes nothing back to
//! life.

use std::time::Duration;

use crate::store::KvStore;

/// How long a revocation is kept: the access token lifetime and a margin.
pub const REVOCATION_TTL: Duration = Duration::from_secs(20 * 60);
/// How long the answer "active" is remembered before identity is asked again.
pub const ACTIVE_TTL: Duration = Duration::from_secs(30);

const REVOKED: &str = "1";
const ACTIVE: &str = "0";

/// The store key of a session's cached state.
pub fn session_key(session_id: &str) -> String {
    format!("revoked:session:{session_id}")
}

/// Records that a session (logout, refresh-token reuse, mobile change, role
/// revoked) is revoked; it overrides a remembered "active".
pub async fn revoke_session(store: &dyn KvStore, session_id: &str) -> anyhow::Result<()> {
    store
        .set(&session_key(session_id), REVOKED, REVOCATION_TTL)
        .await
}

/// Remembers that identity found the session active; never overrides a
/// revocation recorded meanwhile.
pub async fn remember_active(store: &dyn KvStore, session_id: &str) -> anyhow::Result<()> {
    store
        .set_nx(&session_key(session_id), ACTIVE, ACTIVE_TTL)
        .await?;
    Ok(())
}

/// Returns what the cache knows: `Some(true)` revoked, `Some(false)` active
/// (asked recently), `None` unknown (ask identity).
pub async fn cached(store: &dyn KvStore, session_id: &str) -> anyhow::Result<Option<bool>> {
    Ok(answer(
        store.get(&session_key(session_id)).await?.as_deref(),
    ))
}

/// Reads the value stored under [`session_key`] as [`cached`] does, for a caller that
/// read it itself.
pub fn answer(value: Option<&str>) -> Option<bool> {
    value.map(|value| value != ACTIVE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    #[tokio::test]
    async fn a_revoked_session_is_refused_and_others_are_unknown() {
        let store = MemoryStore::new();

        revoke_session(&store, "s1").await.unwrap();

        assert_eq!(cached(&store, "s1").await.unwrap(), Some(true));
        assert_eq!(cached(&store, "s2").await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_revocation_overrides_a_remembered_active_session_and_not_the_reverse() {
        let store = MemoryStore::new();
        remember_active(&store, "s1").await.unwrap();
        assert_eq!(cached(&store, "s1").await.unwrap(), Some(false));

        revoke_session(&store, "s1").await.unwrap();
        remember_active(&store, "s1").await.unwrap();

        assert_eq!(cached(&store, "s1").await.unwrap(), Some(true));
    }
}
