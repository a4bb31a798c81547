//! Writing many outbox messages at once (R28), for a remittance's tens of thousands per chunk.
//!
//! `tavana_kit::outbox::enqueue_many` writes 500 rows per statement with six parameters
//! each; a 1,000,000-line remittance enqueues about 2,000,000 messages, which took 4,000
//! statements and most of the remittance's time on PostgreSQL. Here the rows of a chunk go in
//! one statement on PostgreSQL (three arrays, `unnest`) and in statements of
//! [`SQLITE_ROWS`] rows on SQLite, with the timestamp bound once. The rows are the ones
//! `enqueue_many` writes (same columns, same conflict rule); this belongs in `tavana_kit`.

use chrono::Utc;
use sea_orm::sea_query::ArrayType;
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, Statement, Value};

use crate::messages::Outgoing;

/// Rows per statement on SQLite: five parameters each, under its limit of 32,766.
const SQLITE_ROWS: usize = 6_000;

/// Writes messages to the outbox in the transaction; a message already there (same topic
/// and key) is left alone. The relay schedules by the wall clock, so rows are due at once.
pub(super) async fn enqueue_bulk(
    txn: &DatabaseTransaction,
    messages: Vec<Outgoing>,
) -> Result<(), DbErr> {
    if messages.is_empty() {
        return Ok(());
    }
    let now = Utc::now();
    if txn.get_database_backend() == DbBackend::Postgres {
        let mut topics = Vec::with_capacity(messages.len());
        let mut keys = Vec::with_capacity(messages.len());
        let mut payloads = Vec::with_capacity(messages.len());
        for message in messages {
            topics.push(Value::String(Some(message.topic.to_owned())));
            keys.push(Value::String(Some(message.dedup_key)));
            payloads.push(Value::Bytes(Some(message.payload)));
        }
        let statement = Statement::from_sql_and_values(
            DbBackend::Postgres,
            "INSERT INTO outbox (topic, dedup_key, payload, created_at, attempts, next_attempt_at) \
             SELECT topic, dedup_key, payload, $4, 0, $4 \
             FROM unnest($1::text[], $2::text[], $3::bytea[]) AS m(topic, dedup_key, payload) \
             ON CONFLICT (topic, dedup_key) DO NOTHING",
            [
                Value::Array(ArrayType::String, Some(Box::new(topics))),
                Value::Array(ArrayType::String, Some(Box::new(keys))),
                Value::Array(ArrayType::Bytes, Some(Box::new(payloads))),
                now.into(),
            ],
        );
        txn.execute_raw(statement).await?;
        return Ok(());
    }
    let mut messages = messages.into_iter().peekable();
    while messages.peek().is_some() {
        let mut sql = String::from(
            "INSERT INTO outbox (topic, dedup_key, payload, created_at, attempts, next_attempt_at) VALUES ",
        );
        let mut values: Vec<Value> = Vec::with_capacity(5 * SQLITE_ROWS);
        for (row, message) in messages.by_ref().take(SQLITE_ROWS).enumerate() {
            if row > 0 {
                sql.push(',');
            }
            sql.push_str("(?, ?, ?, ?, 0, ?)");
            values.push(message.topic.into());
            values.push(message.dedup_key.into());
            values.push(message.payload.into());
            values.push(now.into());
            values.push(now.into());
        }
        sql.push_str(" ON CONFLICT (topic, dedup_key) DO NOTHING");
        txn.execute_raw(Statement::from_sql_and_values(
            DbBackend::Sqlite,
            sql,
            values,
        ))
        .await?;
    }
    Ok(())
}
