//! Idempotency records (R19).

use super::*;

impl Store {
    /// Returns the stored answer for `scope`: `Ok(Some)` for the same body,
    /// `Err(IdempotencyKeyReused)` for another body, `Ok(None)` when the key is new.
    pub async fn find_replay(
        &self,
        scope: &IdempotencyScope,
    ) -> Result<Option<Replay>, CreditError> {
        Self::find_replay_in(&self.db, scope).await
    }

    pub(super) async fn find_replay_in<C: ConnectionTrait>(
        conn: &C,
        scope: &IdempotencyScope,
    ) -> Result<Option<Replay>, CreditError> {
        let record =
            idempotency_record::Entity::find_by_id((scope.caller.clone(), scope.key.clone()))
                .one(conn)
                .await?;
        match record {
            None => Ok(None),
            Some(record) if record.request_hash == scope.request_hash => {
                Ok(Some(Replay(record.response)))
            }
            Some(_) => Err(CreditError::IdempotencyKeyReused),
        }
    }

    /// The statement that keeps the answer of `scope`'s request (R19), for the batch of the
    /// transaction that made it.
    pub(super) fn replay_record(
        backend: DbBackend,
        scope: &IdempotencyScope,
        response: Vec<u8>,
        now: DateTime<Utc>,
    ) -> Statement {
        idempotency_record::Entity::insert(idempotency_record::ActiveModel {
            caller: Set(scope.caller.clone()),
            idempotency_key: Set(scope.key.clone()),
            request_hash: Set(scope.request_hash.clone()),
            response: Set(response),
            created_at: Set(now),
        })
        .build(backend)
    }

    /// Deletes the idempotency records older than twice [`KEEP_HOURS`] at `now` (R19: a key
    /// is kept at least `KEEP_HOURS`); returns how many. Credit's upkeep runs it, off the
    /// purchase's path.
    pub async fn purge_idempotency_records(&self, now: DateTime<Utc>) -> Result<u64, DbErr> {
        let delete = idempotency_record::Entity::delete_many()
            .filter(idempotency_record::Column::CreatedAt.lt(now - Duration::hours(2 * KEEP_HOURS)))
            .into_query();
        Ok(tavana_kit::db::execute_write(&self.db, &delete)
            .await?
            .rows_affected())
    }

    /// After a transaction failed on a unique key, tells whether the idempotency record
    /// that a concurrent request wrote explains it.
    pub(super) async fn replay_after_conflict(
        &self,
        scope: &IdempotencyScope,
        error: DbErr,
    ) -> Result<Replay, CreditError> {
        match self.find_replay(scope).await? {
            Some(replay) => Ok(replay),
            None => Err(CreditError::Internal(anyhow::Error::new(error))),
        }
    }
}
