//! The transactional outbox: a change and its outgoing message are written in one
//! transaction; a relay task delivers the message until the receiver accepts it.
//!
//! Rows are claimed with a lease (`lease_until`), so several relays (replicas) can share one
//! database: a relay that dies mid-delivery leaves a lease that expires, and another relay
//! delivers the row again. Receivers are idempotent, so the effect happens exactly once.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use backon::{BackoffBuilder, ExponentialBuilder};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::ArrayType;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement, Value};
use sea_orm_migration::prelude::{
    Alias, ColumnDef, DeriveIden, Expr, ExprTrait as _, Func, Index, IndexCreateStatement,
    MigrationName, MigrationTrait, Query, SchemaManager, Table, TableCreateStatement,
};
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The outbox table and its columns.
#[derive(Clone, Copy, Debug, DeriveIden)]
pub enum Outbox {
    /// The table, `outbox`.
    Table,
    /// The row id, in insertion order.
    Id,
    /// What the message is, e.g. `credit.open_facility`.
    Topic,
    /// The sender's id for the message; unique per topic.
    DedupKey,
    /// The protobuf-encoded message.
    Payload,
    /// When the row was written.
    CreatedAt,
    /// How many deliveries were tried.
    Attempts,
    /// When the next delivery may be tried.
    NextAttemptAt,
    /// Until when a relay holds the row.
    LeaseUntil,
    /// When the receiver accepted the message.
    DeliveredAt,
    /// When delivery was given up after a permanent failure.
    FailedAt,
    /// The last delivery error.
    LastError,
    /// Messages with the same key are delivered one after the other, in id order (e.g. a
    /// purchase's schedule and its refunds); null for messages without an order.
    OrderingKey,
    /// The aggregate's version the message carries, so that a receiver applies it only
    /// over an older one; null when the message has none.
    Version,
    /// The W3C `traceparent` of the span that enqueued the message, if any.
    Traceparent,
}

/// Returns the statement that creates the `outbox` table, for a service's migration.
pub fn create_outbox_table() -> TableCreateStatement {
    Table::create()
        .table(Outbox::Table)
        .if_not_exists()
        .col(
            ColumnDef::new(Outbox::Id)
                .big_integer()
                .not_null()
                .auto_increment()
                .primary_key(),
        )
        .col(ColumnDef::new(Outbox::Topic).string().not_null())
        .col(ColumnDef::new(Outbox::DedupKey).string().not_null())
        .col(ColumnDef::new(Outbox::Payload).blob().not_null())
        .col(
            ColumnDef::new(Outbox::CreatedAt)
                .timestamp_with_time_zone()
                .not_null(),
        )
        .col(
            ColumnDef::new(Outbox::Attempts)
                .integer()
                .not_null()
                .default(0),
        )
        .col(
            ColumnDef::new(Outbox::NextAttemptAt)
                .timestamp_with_time_zone()
                .not_null(),
        )
        .col(
            ColumnDef::new(Outbox::LeaseUntil)
                .timestamp_with_time_zone()
                .null(),
        )
        .col(
            ColumnDef::new(Outbox::DeliveredAt)
                .timestamp_with_time_zone()
                .null(),
        )
        .col(
            ColumnDef::new(Outbox::FailedAt)
                .timestamp_with_time_zone()
                .null(),
        )
        .col(ColumnDef::new(Outbox::LastError).text().null())
        .index(
            Index::create()
                .name("ux_outbox_topic_dedup_key")
                .unique()
                .col(Outbox::Topic)
                .col(Outbox::DedupKey),
        )
        .to_owned()
}

/// Returns the indexes of the `outbox` table, to create after the table.
pub fn create_outbox_indexes() -> Vec<IndexCreateStatement> {
    vec![
        Index::create()
            .name("ix_outbox_next_attempt_at")
            .table(Outbox::Table)
            .col(Outbox::DeliveredAt)
            .col(Outbox::NextAttemptAt)
            .if_not_exists()
            .to_owned(),
    ]
}

/// Adds [`Outbox::OrderingKey`], [`Outbox::Version`] and [`Outbox::Traceparent`] and the
/// index that keeps deliveries of one key in order: the body of each service's migration
/// `m20261203_170000_extend_outbox` (kept as it is; a later change gets a new function).
pub async fn extend_outbox_table(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    // One column per statement: SQLite alters one thing at a time.
    for column in [
        ColumnDef::new(Outbox::OrderingKey)
            .string()
            .null()
            .to_owned(),
        ColumnDef::new(Outbox::Version)
            .big_integer()
            .null()
            .to_owned(),
        ColumnDef::new(Outbox::Traceparent)
            .string()
            .null()
            .to_owned(),
    ] {
        manager
            .alter_table(
                Table::alter()
                    .table(Outbox::Table)
                    .add_column(column)
                    .to_owned(),
            )
            .await?;
    }
    manager
        .create_index(
            Index::create()
                .name("ix_outbox_ordering_key")
                .table(Outbox::Table)
                .col(Outbox::OrderingKey)
                .col(Outbox::Id)
                .if_not_exists()
                .to_owned(),
        )
        .await
}

/// Indexes the messages still to deliver, in id order: the body of each service's migration
/// `m20261204_000001_index_pending_outbox`. Delivered rows stay (R28 keeps them for a
/// while), so without it the relay's claim (`ORDER BY id LIMIT n` over the undelivered)
/// walks every delivered row first and grows with the table's history.
pub async fn index_pending_outbox(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_index(partial_index(
            "ix_outbox_pending",
            &[Outbox::Id],
            Expr::col(Outbox::DeliveredAt)
                .is_null()
                .and(Expr::col(Outbox::FailedAt).is_null()),
        ))
        .await
}

/// The migration `m20261206_180000_compress_outbox_lz4` of every service with an outbox:
/// the payloads PostgreSQL stores out of line are compressed with LZ4 instead of its
/// default `pglz`, and `down` gives the server's default back.
///
/// A remittance or a period close writes its messages to credit and identity as a few
/// payloads of hundreds of kilobytes; `pglz` compressed each in the writing transaction and
/// decompressed it again for the relay. LZ4 does both several times faster. Only values
/// written afterwards change; rows already stored keep `pglz`, and both read back alike.
/// A server built without LZ4 keeps `pglz` (a notice, not a failed migration). SQLite
/// compresses nothing, so there it does nothing.
pub struct CompressOutboxWithLz4;

impl MigrationName for CompressOutboxWithLz4 {
    fn name(&self) -> &str {
        "m20261206_180000_compress_outbox_lz4"
    }
}

#[async_trait]
impl MigrationTrait for CompressOutboxWithLz4 {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        set_outbox_compression(manager, "lz4").await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        set_outbox_compression(manager, "DEFAULT").await
    }
}

async fn set_outbox_compression(manager: &SchemaManager<'_>, method: &str) -> Result<(), DbErr> {
    if manager.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    let sql = format!(
        "DO $$ BEGIN \
           ALTER TABLE outbox ALTER COLUMN payload SET COMPRESSION {method}; \
         EXCEPTION WHEN feature_not_supported THEN \
           RAISE NOTICE 'outbox payloads keep the default compression: %', SQLERRM; \
         END $$"
    );
    manager.get_connection().execute_unprepared(&sql).await?;
    Ok(())
}

/// The migration `m20261207_220000_narrow_outbox_indexes` of every service with an
/// outbox: each message writes only the index entries a query reads it by.
///
/// - `ix_outbox_next_attempt_at` (`delivered_at`, `next_attempt_at`) is dropped. Every
///   message wrote an entry into it when enqueued and moved it when delivered, yet the
///   relay claims through `ix_outbox_pending`. The two queries that still read it get
///   their own indexes. `ix_outbox_failed` lists the dead letters and costs a message
///   nothing until its delivery is given up. `ix_outbox_delivered` (topic and time of
///   delivery) serves the purge of delivered messages by age, only in a service that
///   purges ([`NarrowOutboxIndexes::purges_delivered`]).
/// - `ix_outbox_ordering_key` (`ordering_key`, `id`) gives way to `ix_outbox_ordered`
///   over the same columns, only for the ordered messages not yet delivered: what the
///   claim asks of a key, whether an older message of it waits. A message without an
///   order writes no entry, and the claim no longer walks a key's delivered history.
pub struct NarrowOutboxIndexes {
    /// Whether the service deletes delivered messages by age ([`purge_delivered`]).
    pub purges_delivered: bool,
}

impl MigrationName for NarrowOutboxIndexes {
    fn name(&self) -> &str {
        "m20261207_220000_narrow_outbox_indexes"
    }
}

#[async_trait]
impl MigrationTrait for NarrowOutboxIndexes {
    // Each way drops before it creates: on PostgreSQL the drop's exclusive lock on the
    // table comes first in the transaction, not after the share lock of a creation,
    // which a relay's write waiting in between would turn into a deadlock.
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for old in ["ix_outbox_ordering_key", "ix_outbox_next_attempt_at"] {
            manager.drop_index(drop_outbox_index(old)).await?;
        }
        let mut indexes = vec![ordered_index(), failed_index()];
        if self.purges_delivered {
            indexes.push(delivered_index());
        }
        for index in indexes {
            manager.create_index(index).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for new in [
            "ix_outbox_ordered",
            "ix_outbox_failed",
            "ix_outbox_delivered",
        ] {
            manager.drop_index(drop_outbox_index(new)).await?;
        }
        for index in create_outbox_indexes() {
            manager.create_index(index).await?;
        }
        manager
            .create_index(
                Index::create()
                    .name("ix_outbox_ordering_key")
                    .table(Outbox::Table)
                    .col(Outbox::OrderingKey)
                    .col(Outbox::Id)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }
}

/// The migration `m20261207_230000_outbox_ids_without_sequence` of every service with an
/// outbox: on SQLite the outbox's ids are its rowids without `AUTOINCREMENT`, so that an
/// enqueue no longer reads and writes the `sqlite_sequence` table (a page of every
/// transaction that enqueues). SQLite gives a new row the largest id plus one, so the id of
/// a deleted newest row may come again; nothing keys on an outbox id past its row's life
/// (receivers deduplicate by the dedup key, the relay orders the rows there are).
/// PostgreSQL's sequence stays: it costs no page per row.
pub struct OutboxIdsWithoutSequence;

/// The outbox's key in the stored definitions, with and without `AUTOINCREMENT`.
const OUTBOX_ID_SEQUENCED: &str = "\"id\" integer NOT NULL PRIMARY KEY AUTOINCREMENT,";
const OUTBOX_ID: &str = "\"id\" integer NOT NULL PRIMARY KEY,";

impl MigrationName for OutboxIdsWithoutSequence {
    fn name(&self) -> &str {
        "m20261207_230000_outbox_ids_without_sequence"
    }
}

#[async_trait]
impl MigrationTrait for OutboxIdsWithoutSequence {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::db::rebuild_sqlite_table(manager, "outbox", |sql| {
            sql.contains(OUTBOX_ID_SEQUENCED)
                .then(|| sql.replacen(OUTBOX_ID_SEQUENCED, OUTBOX_ID, 1))
        })
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::db::rebuild_sqlite_table(manager, "outbox", |sql| {
            sql.contains(OUTBOX_ID)
                .then(|| sql.replacen(OUTBOX_ID, OUTBOX_ID_SEQUENCED, 1))
        })
        .await
    }
}

fn drop_outbox_index(name: &str) -> sea_orm_migration::prelude::IndexDropStatement {
    Index::drop()
        .name(name)
        .table(Outbox::Table)
        .if_exists()
        .to_owned()
}

/// The ordered messages not yet delivered, by key in id order.
fn ordered_index() -> IndexCreateStatement {
    partial_index(
        "ix_outbox_ordered",
        &[Outbox::OrderingKey, Outbox::Id],
        Expr::col(Outbox::OrderingKey)
            .is_not_null()
            .and(Expr::col(Outbox::DeliveredAt).is_null()),
    )
}

/// The dead letters, in id order.
fn failed_index() -> IndexCreateStatement {
    partial_index(
        "ix_outbox_failed",
        &[Outbox::Id],
        Expr::col(Outbox::DeliveredAt)
            .is_null()
            .and(Expr::col(Outbox::FailedAt).is_not_null()),
    )
}

/// The delivered messages by topic and time of delivery, for [`purge_delivered`].
fn delivered_index() -> IndexCreateStatement {
    partial_index(
        "ix_outbox_delivered",
        &[Outbox::Topic, Outbox::DeliveredAt],
        Expr::col(Outbox::DeliveredAt).is_not_null(),
    )
}

/// The outbox's index `name` over `columns`, of the rows that meet `condition`.
fn partial_index(name: &str, columns: &[Outbox], condition: Expr) -> IndexCreateStatement {
    use sea_orm::sea_query::ConditionalStatement as _;
    let mut index = Index::create();
    index.name(name).table(Outbox::Table).if_not_exists();
    for column in columns {
        index.col(*column);
    }
    index.cond_where(condition).to_owned()
}

/// A message to write to the outbox, in the transaction of the change it announces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The receiver's method, `<receiver>.<method>`, e.g. `credit.open_facility`.
    pub topic: &'static str,
    /// The sender's id for the message: unique per topic, a second one is dropped.
    pub dedup_key: String,
    /// The protobuf-encoded request.
    pub payload: Vec<u8>,
    /// Messages with the same key are delivered in the order they were enqueued: a
    /// message waits until every older one of its key is delivered (a failed one holds
    /// the key until an operator retries it).
    pub ordering_key: Option<String>,
    /// The aggregate's version this message carries, for receivers that apply a
    /// version only over an older one; shown by `tavana admin outbox`.
    pub version: Option<i64>,
}

impl Message {
    /// A message without an order or version.
    pub fn new(topic: &'static str, dedup_key: impl Into<String>, payload: Vec<u8>) -> Message {
        Message {
            topic,
            dedup_key: dedup_key.into(),
            payload,
            ordering_key: None,
            version: None,
        }
    }

    /// The message, delivered after the older messages of `ordering_key`, carrying
    /// `version`.
    pub fn ordered(mut self, ordering_key: impl Into<String>, version: i64) -> Message {
        self.ordering_key = Some(ordering_key.into());
        self.version = Some(version);
        self
    }
}

/// The ids of the messages a transaction enqueued: after the commit, hand them to
/// [`OutboxHandle::deliver_now`] so that the receivers see them before the caller gets
/// its answer (read your writes).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Enqueued {
    ids: Vec<i64>,
    /// The rows among `ids` written already leased to their sender
    /// ([`OutboxHandle::enqueue`]), with what delivering them takes.
    leased: Vec<Claimed>,
}

impl Enqueued {
    /// Adds the messages of another enqueue in the same transaction.
    pub fn extend(&mut self, other: Enqueued) {
        self.ids.extend(other.ids);
        self.leased.extend(other.leased);
    }

    /// Returns the row ids, in insertion order.
    pub fn ids(&self) -> &[i64] {
        &self.ids
    }

    /// Returns true when nothing new was enqueued (a repeated message is not new).
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// Rows per statement on SQLite: eight parameters each, under its limit of 32,766. Plain
/// `?` placeholders: numbered ones (`?NNN`) make preparing the statement grow with the
/// square of the parameter count.
const SQLITE_ROWS: usize = 4_000;

/// Writes a message to the outbox; call it inside the transaction that makes the change.
///
/// A second message with the same `(topic, dedup_key)` is ignored.
pub async fn enqueue<C: ConnectionTrait>(
    conn: &C,
    topic: &'static str,
    dedup_key: &str,
    payload: Vec<u8>,
) -> Result<Enqueued, DbErr> {
    enqueue_many(conn, vec![Message::new(topic, dedup_key, payload)]).await
}

/// Returns the W3C `traceparent` of the current span, if it belongs to a trace.
fn current_traceparent() -> Option<String> {
    let context = tracing::Span::current().context();
    let mut carrier = std::collections::HashMap::new();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut carrier);
    });
    carrier.remove("traceparent")
}

/// Writes messages to the outbox; a message already there (same topic and key) is left
/// alone. Call it inside the transaction that makes the change; returns the ids of the
/// new rows.
///
/// Built for batches of a million (a remittance): one statement binding arrays
/// (`unnest`) on PostgreSQL, statements of [`SQLITE_ROWS`] rows on SQLite, the timestamp
/// and the current span's `traceparent` bound once. The relay schedules by the wall
/// clock, not an injected one, so rows are due at once.
pub async fn enqueue_many<C: ConnectionTrait>(
    conn: &C,
    messages: Vec<Message>,
) -> Result<Enqueued, DbErr> {
    insert(conn, messages, None).await
}

/// The statements that write `messages` as [`enqueue_many`] does, for a transaction that
/// sends them along with statements of its own in one batch ([`crate::db::batch`]); hand
/// the rows the batch returns to [`Written::enqueued`]. The other statements of the batch
/// must return no rows.
pub fn enqueue_statements(backend: DbBackend, messages: Vec<Message>) -> (Vec<Statement>, Written) {
    prepare(backend, messages, None)
}

/// Writes messages to the outbox as [`enqueue_many`] does; with `lease`, the unordered ones
/// are written already leased to the sender for that long, and come back with their payloads
/// so that its immediate delivery hands them over without claiming them first.
async fn insert<C: ConnectionTrait>(
    conn: &C,
    messages: Vec<Message>,
    lease: Option<Duration>,
) -> Result<Enqueued, DbErr> {
    let (statements, written) = prepare(conn.get_database_backend(), messages, lease);
    let mut rows = Vec::new();
    for statement in statements {
        rows.extend(conn.query_all_raw(statement).await?);
    }
    written.enqueued(rows)
}

/// What tells the ids of messages written by [`prepare`]'s statements from the rows those
/// return.
#[derive(Debug)]
pub struct Written {
    /// What a leased row's delivery needs, by (topic, dedup key): RETURNING names the rows
    /// written, in no promised order, and none for a message already there.
    to_lease: std::collections::HashMap<(String, String), Vec<u8>>,
    traceparent: Option<String>,
}

/// The statements that write `messages` to the outbox as [`insert`] does, for a transaction
/// that sends them with statements of its own ([`crate::db::batch`]); hand the rows they
/// return, and only those, to [`Written::enqueued`].
fn prepare(
    backend: DbBackend,
    messages: Vec<Message>,
    lease: Option<Duration>,
) -> (Vec<Statement>, Written) {
    if messages.is_empty() {
        let written = Written {
            to_lease: std::collections::HashMap::new(),
            traceparent: None,
        };
        return (Vec::new(), written);
    }
    let now = Utc::now();
    let traceparent = current_traceparent();
    let lease_until = lease.map(|lease| now + chrono_of(lease));
    let to_lease: std::collections::HashMap<(String, String), Vec<u8>> = messages
        .iter()
        .filter(|message| lease_until.is_some() && message.ordering_key.is_none())
        .map(|message| {
            let key = (message.topic.to_owned(), message.dedup_key.clone());
            (key, message.payload.clone())
        })
        .collect();
    let returning = if to_lease.is_empty() {
        "RETURNING id"
    } else {
        "RETURNING id, topic, dedup_key, lease_until IS NOT NULL AS leased"
    };
    let mut statements = Vec::new();
    if backend == DbBackend::Postgres {
        let mut topics = Vec::with_capacity(messages.len());
        let mut keys = Vec::with_capacity(messages.len());
        let mut payloads = Vec::with_capacity(messages.len());
        let mut ordering_keys = Vec::with_capacity(messages.len());
        let mut versions = Vec::with_capacity(messages.len());
        for message in messages {
            topics.push(Value::String(Some(message.topic.to_owned())));
            keys.push(Value::String(Some(message.dedup_key)));
            payloads.push(Value::Bytes(Some(message.payload)));
            // Array elements are never NULL here: '' stands for none (NULLIF below).
            ordering_keys.push(Value::String(Some(
                message.ordering_key.unwrap_or_default(),
            )));
            versions.push(Value::String(Some(
                message.version.map(|v| v.to_string()).unwrap_or_default(),
            )));
        }
        statements.push(Statement::from_sql_and_values(
            DbBackend::Postgres,
            format!(
                "INSERT INTO outbox (topic, dedup_key, payload, ordering_key, version, \
                   traceparent, created_at, attempts, next_attempt_at, lease_until) \
                 SELECT topic, dedup_key, payload, NULLIF(ordering_key, ''), \
                   NULLIF(version, '')::bigint, $6, $7, 0, $7, \
                   CASE WHEN ordering_key = '' THEN $8::timestamptz END \
                 FROM unnest($1::text[], $2::text[], $3::bytea[], $4::text[], $5::text[]) \
                   WITH ORDINALITY AS m(topic, dedup_key, payload, ordering_key, version, n) \
                 ORDER BY n \
                 ON CONFLICT (topic, dedup_key) DO NOTHING \
                 {returning}"
            ),
            [
                Value::Array(ArrayType::String, Some(Box::new(topics))),
                Value::Array(ArrayType::String, Some(Box::new(keys))),
                Value::Array(ArrayType::Bytes, Some(Box::new(payloads))),
                Value::Array(ArrayType::String, Some(Box::new(ordering_keys))),
                Value::Array(ArrayType::String, Some(Box::new(versions))),
                traceparent.clone().into(),
                now.into(),
                lease_until.into(),
            ],
        ));
    } else {
        let mut messages = messages.into_iter().peekable();
        while messages.peek().is_some() {
            let mut sql = String::from(
                "INSERT INTO outbox (topic, dedup_key, payload, ordering_key, version, \
                 traceparent, created_at, attempts, next_attempt_at, lease_until) VALUES ",
            );
            let mut values: Vec<Value> = Vec::with_capacity(9 * SQLITE_ROWS);
            for (row, message) in messages.by_ref().take(SQLITE_ROWS).enumerate() {
                if row > 0 {
                    sql.push(',');
                }
                sql.push_str("(?, ?, ?, ?, ?, ?, ?, 0, ?, ?)");
                let ordering_key = message.ordering_key.filter(|key| !key.is_empty());
                let leased = if ordering_key.is_none() {
                    lease_until
                } else {
                    None
                };
                values.push(message.topic.into());
                values.push(message.dedup_key.into());
                values.push(message.payload.into());
                values.push(ordering_key.into());
                values.push(message.version.into());
                values.push(traceparent.clone().into());
                values.push(now.into());
                values.push(now.into());
                values.push(leased.into());
            }
            sql.push_str(" ON CONFLICT (topic, dedup_key) DO NOTHING ");
            sql.push_str(returning);
            statements.push(Statement::from_sql_and_values(
                DbBackend::Sqlite,
                sql,
                values,
            ));
        }
    }
    let written = Written {
        to_lease,
        traceparent,
    };
    (statements, written)
}

impl Written {
    /// The messages written, from the rows their statements returned.
    pub fn enqueued(mut self, rows: Vec<sea_orm::QueryResult>) -> Result<Enqueued, DbErr> {
        let mut enqueued = Enqueued {
            ids: Vec::with_capacity(rows.len()),
            leased: Vec::new(),
        };
        for row in rows {
            let id = row.try_get::<i64>("", "id")?;
            enqueued.ids.push(id);
            if self.to_lease.is_empty() || !row.try_get::<bool>("", "leased")? {
                continue;
            }
            let key: (String, String) = (row.try_get("", "topic")?, row.try_get("", "dedup_key")?);
            let Some(payload) = self.to_lease.remove(&key) else {
                // Not one we wrote (cannot happen): the relay delivers it when the lease ends.
                continue;
            };
            enqueued.leased.push(Claimed {
                id,
                topic: key.0,
                payload,
                attempts: 0,
                traceparent: self.traceparent.clone(),
                ordered: false,
            });
        }
        // RETURNING does not promise an order.
        enqueued.ids.sort_unstable();
        enqueued.leased.sort_by_key(|row| row.id);
        Ok(enqueued)
    }
}

/// Returns the number of messages not yet delivered (and not given up).
pub async fn pending_count<C: ConnectionTrait>(db: &C) -> Result<u64, DbErr> {
    count_where(db, Expr::col(Outbox::FailedAt).is_null()).await
}

/// Returns the number of messages of `topic` not yet delivered (and not given up).
pub async fn pending_count_of<C: ConnectionTrait>(db: &C, topic: &str) -> Result<u64, DbErr> {
    count_where(
        db,
        Expr::col(Outbox::FailedAt)
            .is_null()
            .and(Expr::col(Outbox::Topic).eq(topic)),
    )
    .await
}

/// Returns the number of messages given up after a permanent failure.
pub async fn failed_count<C: ConnectionTrait>(db: &C) -> Result<u64, DbErr> {
    count_where(db, Expr::col(Outbox::FailedAt).is_not_null()).await
}

/// Deletes the messages of `topic` delivered before `before` and returns how many: the
/// retention of messages that carry personal data (SMS texts and mobiles). The service's
/// migrations index them for it ([`NarrowOutboxIndexes::purges_delivered`]).
pub async fn purge_delivered<C: ConnectionTrait>(
    db: &C,
    topic: &str,
    before: DateTime<Utc>,
) -> Result<u64, DbErr> {
    let delete = Query::delete()
        .from_table(Outbox::Table)
        .and_where(Expr::col(Outbox::Topic).eq(topic))
        .and_where(Expr::col(Outbox::DeliveredAt).lt(before))
        .to_owned();
    Ok(db.execute(&delete).await?.rows_affected())
}

async fn count_where<C: ConnectionTrait>(db: &C, condition: Expr) -> Result<u64, DbErr> {
    let query = Query::select()
        .expr_as(Func::count(Expr::col(Outbox::Id)), Alias::new("n"))
        .from(Outbox::Table)
        .and_where(Expr::col(Outbox::DeliveredAt).is_null())
        .and_where(condition)
        .to_owned();
    let row = db.query_one(&query).await?;
    let count: i64 = match row {
        Some(row) => row.try_get("", "n")?,
        None => 0,
    };
    // Documented saturation: a COUNT is never negative.
    Ok(u64::try_from(count).unwrap_or(0))
}

/// Why a delivery failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// A transient failure: the relay tries again after a backoff.
    #[error("retryable delivery failure: {0}")]
    Retry(String),
    /// The message can never be delivered: the relay keeps the row with its error and
    /// stops trying.
    #[error("permanent delivery failure: {0}")]
    Permanent(String),
}

/// A relay started by [`OutboxRelay::start`].
pub struct RunningRelay {
    stop: tokio::sync::oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl RunningRelay {
    /// Stops the relay after the delivery in progress, and waits for it.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        if let Err(error) = self.task.await {
            tracing::warn!(%error, "outbox relay ended abnormally");
        }
    }
}

impl DeliveryError {
    /// Classifies a failed gRPC delivery: a receiver that says the message is
    /// invalid will never accept it; anything else is worth retrying.
    pub fn from_status(status: &tonic::Status) -> DeliveryError {
        let message = format!("{}: {}", status.code(), status.message());
        match status.code() {
            tonic::Code::InvalidArgument => DeliveryError::Permanent(message),
            _ => DeliveryError::Retry(message),
        }
    }
}

impl From<tonic::Status> for DeliveryError {
    fn from(status: tonic::Status) -> DeliveryError {
        DeliveryError::from_status(&status)
    }
}

/// Decodes a message's protobuf payload; an undecodable payload can never be
/// delivered.
pub fn decode_payload<M: prost::Message + Default>(payload: &[u8]) -> Result<M, DeliveryError> {
    M::decode(payload).map_err(|error| DeliveryError::Permanent(format!("bad payload: {error}")))
}

/// The topic that sends one SMS to an employee through identity's `NotifyEmployee`
/// (R28): credit's receipts, guarantee's status messages, and settlement's former
/// per-employee SMS rows. Each sender delivers it the same way.
pub const NOTIFY_EMPLOYEE: &str = "identity.notify_employee";

/// Delivers one topic's row by a gRPC call: decodes `$payload` as `$request` and calls
/// `$method` on a clone of the client `$client`, signed as `$caller`. A payload that does
/// not decode is permanent; a refusal maps as `From<tonic::Status>` says.
///
/// ```ignore
/// RECORD_SCHEDULE => forward!(self.settlement, record_schedule, RecordScheduleRequest, payload, &caller),
/// ```
#[macro_export]
macro_rules! forward {
    ($client:expr, $method:ident, $request:ty, $payload:expr, $caller:expr) => {{
        let request: $request = $crate::outbox::decode_payload($payload)?;
        $client
            .clone()
            .$method($crate::caller::attach(request, $caller))
            .await?;
    }};
}

/// Delivers outbox messages, typically by calling the receiver's gRPC method.
#[async_trait]
pub trait Deliver: Send + Sync + 'static {
    /// Delivers one message; the receiver must be idempotent.
    async fn deliver(&self, topic: &str, payload: &[u8]) -> Result<(), DeliveryError>;
}

/// Tuning of an [`OutboxRelay`].
#[derive(Clone, Debug)]
pub struct RelayConfig {
    /// How often the relay looks for due messages without being notified.
    pub poll_interval: Duration,
    /// How many messages one claim takes.
    pub batch_size: u32,
    /// How long a claim holds its messages.
    pub lease: Duration,
    /// How long one delivery may take before it counts as a retryable failure.
    pub delivery_timeout: Duration,
    /// The first retry delay.
    pub min_backoff: Duration,
    /// The longest retry delay.
    pub max_backoff: Duration,
    /// How long [`OutboxHandle::deliver_now`] may hold up its caller's answer; what it
    /// could not deliver in that time is left to the relay.
    pub immediate_deadline: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            poll_interval: Duration::from_millis(250),
            batch_size: 32,
            lease: Duration::from_secs(30),
            delivery_timeout: Duration::from_secs(20),
            min_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            immediate_deadline: Duration::from_secs(2),
        }
    }
}

impl RelayConfig {
    /// Returns the delay before the next try after `attempts` failed tries.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let mut delays = ExponentialBuilder::default()
            .with_min_delay(self.min_backoff)
            .with_max_delay(self.max_backoff)
            .with_factor(2.0)
            .without_max_times()
            .build();
        let index = Ord::min(attempts.saturating_sub(1), 64) as usize;
        delays.nth(index).unwrap_or(self.max_backoff)
    }
}

/// Delivers a service's outbox: wakes its relay, and delivers what a transaction just
/// enqueued at once (read your writes).
#[derive(Clone, Default)]
pub struct OutboxHandle {
    notify: Arc<Notify>,
    courier: Option<Arc<Courier>>,
}

impl std::fmt::Debug for OutboxHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxHandle")
            .field("delivers", &self.courier.is_some())
            .finish()
    }
}

impl OutboxHandle {
    /// Writes messages to the outbox as [`enqueue_many`] does, for a sender that hands
    /// them to [`OutboxHandle::deliver_now`] after the commit: the unordered ones are written
    /// already leased to it, so that it delivers them without claiming them first (one
    /// statement less per transaction). Should the sender die before, their lease ends and
    /// the relay delivers them. Their payloads are held until then, so this is for a
    /// transaction's few messages; a batch (a remittance, a period close) is written with
    /// [`enqueue_many`] and claimed as it is delivered.
    pub async fn enqueue<C: ConnectionTrait>(
        &self,
        conn: &C,
        messages: Vec<Message>,
    ) -> Result<Enqueued, DbErr> {
        insert(conn, messages, self.lease()).await
    }

    /// Writes messages as [`OutboxHandle::enqueue`] does, outside any transaction of the
    /// caller's: each statement commits on its own, on SQLite in this process's turn to
    /// write the file ([`crate::db::query_write`]) rather than racing the queued writers
    /// for its lock in SQLite's busy handler, whose sleeps grow to 100 ms.
    pub async fn enqueue_alone(
        &self,
        db: &DatabaseConnection,
        messages: Vec<Message>,
    ) -> Result<Enqueued, DbErr> {
        let (statements, written) = prepare(db.get_database_backend(), messages, self.lease());
        let mut rows = Vec::new();
        for statement in statements {
            rows.extend(crate::db::query_write(db, statement).await?);
        }
        written.enqueued(rows)
    }

    /// The statements that write `messages` as [`OutboxHandle::enqueue`] does, for a batch
    /// ([`enqueue_statements`]).
    pub fn enqueue_statements(
        &self,
        backend: DbBackend,
        messages: Vec<Message>,
    ) -> (Vec<Statement>, Written) {
        prepare(backend, messages, self.lease())
    }

    /// How long the messages handed to [`OutboxHandle::deliver_now`] are leased to it.
    fn lease(&self) -> Option<Duration> {
        self.courier.as_ref().map(|courier| courier.config.lease)
    }

    /// Wakes the relay at once.
    pub fn notify(&self) {
        self.notify.notify_one();
    }

    /// Delivers the messages a committed transaction enqueued, before the caller answers
    /// its own caller: each in order behind older undelivered messages of its ordering
    /// key, all within [`RelayConfig::immediate_deadline`]. What fails or is left is the
    /// relay's to retry; the caller's answer never depends on it. Call it only after the
    /// commit (the relay could not see the rows before).
    pub async fn deliver_now(&self, enqueued: &Enqueued) {
        if enqueued.is_empty() {
            return;
        }
        let all_done = match &self.courier {
            Some(courier) => courier.deliver_enqueued(enqueued).await,
            None => false,
        };
        if !all_done {
            self.notify();
        }
    }
}

/// The task that delivers outbox messages.
pub struct OutboxRelay {
    courier: Arc<Courier>,
    notify: Arc<Notify>,
}

/// Claims and delivers rows; shared by the relay and [`OutboxHandle::deliver_now`].
struct Courier {
    db: DatabaseConnection,
    deliver: Arc<dyn Deliver>,
    config: RelayConfig,
    records: DeliveryRecords,
}

/// The deliveries waiting to be recorded, and the turn to record them. Whoever takes the
/// turn records every delivery waiting, its own and those of the senders that came while
/// the turn was taken (a group commit), and tells each sender the outcome: concurrent
/// senders share one write of the outbox instead of one each (one commit, and on SQLite
/// one turn of the file's single writer, which their own transactions wait for too).
#[derive(Default)]
struct DeliveryRecords {
    waiting: std::sync::Mutex<Vec<Waiting>>,
    turn: tokio::sync::Mutex<()>,
}

/// One sender's delivered ids, and where it is told whether they were recorded.
type Waiting = (Vec<i64>, oneshot::Sender<bool>);

impl DeliveryRecords {
    /// The deliveries waiting (a panic while the list was held leaves it whole).
    fn waiting(&self) -> std::sync::MutexGuard<'_, Vec<Waiting>> {
        self.waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Claimed {
    id: i64,
    topic: String,
    payload: Vec<u8>,
    attempts: i32,
    traceparent: Option<String>,
    /// Whether the message has an ordering key (its delivery may free the next one).
    ordered: bool,
}

/// What one round of deliveries did.
struct Round {
    /// Every row tried was accepted and recorded.
    all_done: bool,
    /// The deadline came first; the rows not tried were given back.
    out_of_time: bool,
    /// The rows tried, accepted or not.
    tried: Vec<i64>,
}

fn chrono_of(duration: Duration) -> chrono::Duration {
    chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::MAX)
}

/// Ids per claim of [`OutboxHandle::deliver_now`] (bound parameters on SQLite).
const IDS_PER_CLAIM: usize = 500;

impl OutboxRelay {
    /// Starts a relay with the default tuning; it stops when `shutdown` completes.
    pub fn spawn(
        db: DatabaseConnection,
        deliver: Arc<dyn Deliver>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> (OutboxHandle, JoinHandle<()>) {
        OutboxRelay::spawn_with_config(db, deliver, RelayConfig::default(), shutdown)
    }

    /// Starts a relay that runs until [`RunningRelay::stop`]: what a service
    /// does beside its gRPC server, stopping it once the server has drained.
    pub fn start(
        db: DatabaseConnection,
        deliver: Arc<dyn Deliver>,
        settings: &crate::config::OutboxSettings,
    ) -> (OutboxHandle, RunningRelay) {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let config = RelayConfig {
            immediate_deadline: Duration::from_millis(settings.immediate_deadline_ms),
            lease: Duration::from_millis(settings.lease_ms),
            ..RelayConfig::default()
        };
        let (handle, task) = OutboxRelay::spawn_with_config(db, deliver, config, async move {
            let _ = stopped.await;
        });
        (handle, RunningRelay { stop, task })
    }

    /// Starts a relay with the given tuning; it stops when `shutdown` completes.
    pub fn spawn_with_config(
        db: DatabaseConnection,
        deliver: Arc<dyn Deliver>,
        config: RelayConfig,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> (OutboxHandle, JoinHandle<()>) {
        let notify = Arc::new(Notify::new());
        let courier = Arc::new(Courier::new(db, deliver, config));
        let relay = OutboxRelay {
            courier: courier.clone(),
            notify: notify.clone(),
        };
        let task = tokio::spawn(relay.run(shutdown));
        (
            OutboxHandle {
                notify,
                courier: Some(courier),
            },
            task,
        )
    }

    async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        tokio::pin!(shutdown);
        let courier = &self.courier;
        // The first sweep and a sweep on a sender's call take every due message; a sweep
        // on the poll leaves those a sender may still be delivering at once.
        let mut fresh_too = true;
        loop {
            let claimed = if fresh_too {
                courier.claim(Due::All).await
            } else {
                courier.claim(Due::LeavingFresh).await
            };
            let go_on = match claimed {
                Ok(rows) => {
                    // A full batch may leave more due rows; the delivery of an ordered
                    // message may free the next message of its key. Otherwise the relay
                    // waits: claiming again at once would race the senders' immediate
                    // deliveries for the rows they have just committed.
                    let mut go_on = rows.len() >= courier.config.batch_size as usize;
                    for row in rows {
                        let ordered = row.ordered;
                        let delivered = courier
                            .deliver_one(row, courier.config.delivery_timeout)
                            .await;
                        go_on |= delivered && ordered;
                    }
                    go_on
                }
                Err(error) => {
                    tracing::warn!(error = %error, "outbox claim failed");
                    false
                }
            };
            if go_on {
                if futures::FutureExt::now_or_never(&mut shutdown).is_some() {
                    break;
                }
                continue;
            }
            tokio::select! {
                () = &mut shutdown => break,
                () = self.notify.notified() => fresh_too = true,
                () = tokio::time::sleep(courier.config.poll_interval) => fresh_too = false,
            }
        }
        tracing::debug!("outbox relay stopped");
    }
}

/// Which due messages a claim takes.
#[derive(Clone, Copy, Debug)]
enum Due<'a> {
    /// Every one.
    All,
    /// Every one but those enqueued within the immediate deadline, never tried and without
    /// an ordering key: their senders may be delivering them at once (read your writes),
    /// and a relay that took them would make each sender wait for its lease. A sender
    /// that died before its immediate delivery leaves them to the next poll after the
    /// deadline. An ordered message may have waited behind an older one that another
    /// sender delivered: its own sender left it, so the poll takes it.
    LeavingFresh,
    /// These rows (a sender's immediate delivery), fresh or not.
    Ids(&'a [i64]),
}

impl Courier {
    fn new(db: DatabaseConnection, deliver: Arc<dyn Deliver>, config: RelayConfig) -> Courier {
        Courier {
            db,
            deliver,
            config,
            records: DeliveryRecords::default(),
        }
    }

    /// Leases a batch of due messages in one statement: none that waits behind an older
    /// undelivered message of its ordering key.
    async fn claim(&self, due: Due<'_>) -> Result<Vec<Claimed>, DbErr> {
        let backend = self.db.get_database_backend();
        let now = Utc::now();
        let lease_until = now + chrono_of(self.config.lease);
        let mut values: Vec<Value> = vec![lease_until.into(), now.into(), now.into()];
        let (placeholder, lock) = match backend {
            DbBackend::Postgres => ("$", " FOR UPDATE SKIP LOCKED"),
            _ => ("?", ""),
        };
        let p = |n: usize| {
            if placeholder == "$" {
                format!("${n}")
            } else {
                "?".to_owned()
            }
        };
        let only_sql = match due {
            Due::All => String::new(),
            Due::LeavingFresh => {
                values.push((now - chrono_of(self.config.immediate_deadline)).into());
                format!(
                    " AND (o.attempts > 0 OR o.created_at <= {} OR o.ordering_key IS NOT NULL)",
                    p(4)
                )
            }
            Due::Ids(ids) if backend == DbBackend::Postgres => {
                let ids = ids.iter().map(|id| Value::BigInt(Some(*id))).collect();
                values.push(Value::Array(ArrayType::BigInt, Some(Box::new(ids))));
                format!(" AND o.id = ANY({}::bigint[])", p(4))
            }
            Due::Ids(ids) => {
                values.extend(ids.iter().map(|id| Value::BigInt(Some(*id))));
                format!(" AND o.id IN ({})", vec!["?"; ids.len()].join(", "))
            }
        };
        let due = format!(
            "SELECT o.id FROM outbox o \
             WHERE o.delivered_at IS NULL AND o.failed_at IS NULL AND o.next_attempt_at <= {} \
               AND (o.lease_until IS NULL OR o.lease_until < {}){only_sql} \
               AND (o.ordering_key IS NULL OR NOT EXISTS (\
                 SELECT 1 FROM outbox e WHERE e.ordering_key = o.ordering_key \
                   AND e.id < o.id AND e.delivered_at IS NULL)) \
             ORDER BY o.id LIMIT {}{lock}",
            p(2),
            p(3),
            self.config.batch_size
        );
        let sql = if backend == DbBackend::Postgres {
            // The due rows are chosen and locked once, whatever the plan: as a subquery of
            // the UPDATE, a plan made while the table looked empty (a generic plan cached by
            // the pool's prepared statement) ran the locking scan once per outbox row.
            format!(
                "WITH due AS MATERIALIZED ({due}) \
                 UPDATE outbox SET lease_until = {} FROM due WHERE outbox.id = due.id \
                 RETURNING outbox.id, outbox.topic, outbox.payload, outbox.attempts, \
                   outbox.traceparent, outbox.ordering_key IS NOT NULL AS ordered",
                p(1)
            )
        } else {
            // SQLite binds `?` in text order: the lease comes first here.
            format!(
                "UPDATE outbox SET lease_until = {} WHERE id IN ({due}) \
                 RETURNING id, topic, payload, attempts, traceparent, \
                   ordering_key IS NOT NULL AS ordered",
                p(1)
            )
        };
        let rows = crate::db::query_write(
            &self.db,
            Statement::from_sql_and_values(backend, sql, values),
        )
        .await?;
        let mut claimed = rows
            .iter()
            .map(|row| {
                Ok(Claimed {
                    id: row.try_get("", "id")?,
                    topic: row.try_get("", "topic")?,
                    payload: row.try_get("", "payload")?,
                    attempts: row.try_get("", "attempts")?,
                    traceparent: row.try_get("", "traceparent")?,
                    ordered: row.try_get("", "ordered")?,
                })
            })
            .collect::<Result<Vec<_>, DbErr>>()?;
        // RETURNING does not promise an order.
        claimed.sort_by_key(|row| row.id);
        Ok(claimed)
    }

    /// Delivers what a committed transaction enqueued: the rows written leased to this
    /// sender as they are, then the others as [`Courier::deliver_ids_within`] does, all within one
    /// immediate deadline; returns false when it leaves some of them to the relay.
    async fn deliver_enqueued(&self, enqueued: &Enqueued) -> bool {
        let deadline = tokio::time::Instant::now() + self.config.immediate_deadline;
        let mut all_done = true;
        if !enqueued.leased.is_empty() {
            all_done &= self
                .deliver_side_by_side(enqueued.leased.clone(), deadline)
                .await;
        }
        let others: Vec<i64> = enqueued
            .ids
            .iter()
            .copied()
            .filter(|id| !enqueued.leased.iter().any(|row| row.id == *id))
            .collect();
        all_done &= self.deliver_ids_within(&others, deadline).await;
        all_done
    }

    /// Delivers rows that wait for no other (leased, unordered: a transaction's few
    /// messages, each to its own receiver) all at once rather than one after the other, so
    /// that the caller waits for the slowest receiver, not for the sum of them; records
    /// what the receivers accepted in one statement, each failure as a try. Returns true
    /// when every one was accepted and recorded.
    async fn deliver_side_by_side(
        &self,
        rows: Vec<Claimed>,
        deadline: tokio::time::Instant,
    ) -> bool {
        debug_assert!(
            rows.iter().all(|row| !row.ordered),
            "an ordered row waits its turn"
        );
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        let timeout = remaining.min(self.config.delivery_timeout);
        let outcomes =
            futures::future::join_all(rows.iter().map(|row| self.attempt(row, timeout))).await;
        let mut all_done = true;
        let mut accepted = Vec::with_capacity(rows.len());
        for (row, outcome) in rows.iter().zip(outcomes) {
            match outcome {
                Ok(()) => accepted.push(row.id),
                Err(error) => {
                    self.record_failure(row, &error).await;
                    all_done = false;
                }
            }
        }
        if !accepted.is_empty() && !self.record_delivered(&accepted).await {
            all_done = false;
        }
        all_done
    }

    /// Delivers claimed rows in order until `deadline`: records what the receivers
    /// accepted in one statement, each failure as a try, and gives back unattempted what
    /// there was no time for.
    async fn deliver_claimed(&self, rows: Vec<Claimed>, deadline: tokio::time::Instant) -> Round {
        let mut round = Round {
            all_done: true,
            out_of_time: false,
            tried: Vec::with_capacity(rows.len()),
        };
        let mut accepted = Vec::new();
        let mut rows = rows.into_iter();
        while let Some(row) = rows.next() {
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            if remaining.is_zero() {
                let unattempted: Vec<i64> = std::iter::once(row.id)
                    .chain(rows.by_ref().map(|row| row.id))
                    .collect();
                self.release(&unattempted).await;
                round.out_of_time = true;
                break;
            }
            match self
                .attempt(&row, remaining.min(self.config.delivery_timeout))
                .await
            {
                Ok(()) => accepted.push(row.id),
                Err(error) => {
                    self.record_failure(&row, &error).await;
                    round.all_done = false;
                }
            }
            round.tried.push(row.id);
        }
        if !accepted.is_empty() && !self.record_delivered(&accepted).await {
            round.all_done = false;
        }
        round
    }

    /// Delivers the rows `ids` now, in order, within the immediate deadline; returns false
    /// when it leaves some of them to the relay.
    #[cfg(test)]
    async fn deliver_ids(&self, ids: &[i64]) -> bool {
        let deadline = tokio::time::Instant::now() + self.config.immediate_deadline;
        self.deliver_ids_within(ids, deadline).await
    }

    /// Claims and delivers the rows `ids`, in order, until `deadline`; returns false
    /// when it leaves some of them to the relay (a failed try or record, the deadline).
    /// Rows another relay leased are waited for; rows no longer due (delivered by another
    /// relay, or waiting behind an older message of their key) are not its to hurry.
    async fn deliver_ids_within(&self, ids: &[i64], deadline: tokio::time::Instant) -> bool {
        let mut all_done = true;
        for window in ids.chunks(IDS_PER_CLAIM) {
            let mut left: Vec<i64> = window.to_vec();
            // Claim again after each round: a delivery frees the next message of a key.
            loop {
                if tokio::time::Instant::now() >= deadline {
                    return false;
                }
                let rows = match self.claim(Due::Ids(&left)).await {
                    Ok(rows) => rows,
                    Err(error) => {
                        tracing::warn!(%error, "outbox claim for immediate delivery failed");
                        return false;
                    }
                };
                if rows.is_empty() {
                    // A relay may have leased them between the commit and this claim:
                    // wait for it (read your writes), not for their next attempt.
                    match self.leased_elsewhere(&left).await {
                        Ok(true) => {
                            tokio::time::sleep(Duration::from_millis(5)).await;
                            continue;
                        }
                        Ok(false) => break,
                        Err(error) => {
                            tracing::warn!(%error, "outbox lease check failed");
                            return false;
                        }
                    }
                }
                // What the receivers accepted is recorded in one statement per round, before
                // the next claim (which must see them delivered).
                let round = self.deliver_claimed(rows, deadline).await;
                all_done &= round.all_done;
                if round.out_of_time {
                    return false;
                }
                left.retain(|id| !round.tried.contains(id));
                if left.is_empty() {
                    break;
                }
            }
        }
        all_done
    }

    /// Whether one of `ids` is undelivered and leased now, by a relay of this or another
    /// process.
    async fn leased_elsewhere(&self, ids: &[i64]) -> Result<bool, DbErr> {
        let query = Query::select()
            .column(Outbox::Id)
            .from(Outbox::Table)
            .and_where(Expr::col(Outbox::Id).is_in(ids.iter().copied()))
            .and_where(Expr::col(Outbox::DeliveredAt).is_null())
            .and_where(Expr::col(Outbox::FailedAt).is_null())
            .and_where(Expr::col(Outbox::LeaseUntil).gt(Utc::now()))
            .limit(1)
            .to_owned();
        Ok(self.db.query_one(&query).await?.is_some())
    }

    /// Gives claimed rows back to the relay without counting a try.
    async fn release(&self, ids: &[i64]) {
        let update = Query::update()
            .table(Outbox::Table)
            .value(Outbox::LeaseUntil, Option::<DateTime<Utc>>::None)
            .and_where(Expr::col(Outbox::Id).is_in(ids.iter().copied()))
            .to_owned();
        if let Err(error) = crate::db::execute_write(&self.db, &update).await {
            // The leases expire on their own.
            tracing::warn!(%error, "outbox leases not released");
        }
    }

    /// Delivers one claimed row and records the outcome; returns true when the receiver
    /// accepted it.
    async fn deliver_one(&self, row: Claimed, timeout: Duration) -> bool {
        match self.attempt(&row, timeout).await {
            Ok(()) => self.record_delivered(&[row.id]).await,
            Err(error) => {
                self.record_failure(&row, &error).await;
                false
            }
        }
    }

    /// Hands one claimed row to its receiver inside a span whose parent is the trace that
    /// enqueued it.
    async fn attempt(&self, row: &Claimed, timeout: Duration) -> Result<(), DeliveryError> {
        let span = tracing::info_span!(
            "outbox.deliver",
            otel.name = %format!("outbox {}", row.topic),
            otel.kind = "producer",
            outbox.id = row.id,
            outbox.topic = %row.topic,
        );
        if let Some(traceparent) = &row.traceparent {
            let carrier =
                std::collections::HashMap::from([("traceparent".to_owned(), traceparent.clone())]);
            let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
                propagator.extract(&carrier)
            });
            let _ = span.set_parent(parent);
        }
        let outcome = tokio::time::timeout(timeout, self.deliver.deliver(&row.topic, &row.payload))
            .instrument(span)
            .await
            .unwrap_or_else(|_| Err(DeliveryError::Retry("delivery timed out".to_owned())));
        if outcome.is_ok() {
            tracing::debug!(outbox_id = row.id, topic = %row.topic, "outbox message delivered");
        }
        outcome
    }

    /// Records leased rows as delivered, together with what other senders delivered
    /// meanwhile (see [`DeliveryRecords`]); returns true when it was recorded. A sender
    /// dropped while it records leaves the others' outcome false: their leases expire and
    /// the rows are delivered again, which receivers take as the same message.
    async fn record_delivered(&self, ids: &[i64]) -> bool {
        let (told, outcome) = oneshot::channel();
        self.records.waiting().push((ids.to_vec(), told));
        {
            let _turn = self.records.turn.lock().await;
            let waiting = std::mem::take(&mut *self.records.waiting());
            if !waiting.is_empty() {
                let ids: Vec<i64> = waiting
                    .iter()
                    .flat_map(|(ids, _)| ids.iter().copied())
                    .collect();
                let recorded = self.write_delivered(&ids).await;
                for (_, told) in waiting {
                    let _ = told.send(recorded);
                }
            }
        }
        // Told by now: by this sender, or by one that took the turn before it.
        outcome.await.unwrap_or(false)
    }

    /// Writes leased rows as delivered, in one statement per
    /// [`IDS_PER_STATEMENT`](crate::db::IDS_PER_STATEMENT) (they are
    /// leased to us, so nobody else counts their attempts meanwhile); returns true when
    /// every one was written.
    async fn write_delivered(&self, ids: &[i64]) -> bool {
        let now = Utc::now();
        for ids in ids.chunks(crate::db::IDS_PER_STATEMENT) {
            let update = Query::update()
                .table(Outbox::Table)
                .value(Outbox::DeliveredAt, now)
                .value(Outbox::LeaseUntil, Option::<DateTime<Utc>>::None)
                .value(Outbox::Attempts, Expr::col(Outbox::Attempts).add(1))
                .and_where(Expr::col(Outbox::Id).is_in(ids.iter().copied()))
                .to_owned();
            if let Err(error) = crate::db::execute_write(&self.db, &update).await {
                // The leases expire and the rows are delivered again; receivers are
                // idempotent.
                tracing::warn!(outbox_ids = ?ids, error = %error, "outbox delivery not recorded");
                return false;
            }
        }
        true
    }

    /// Records a failed try: retried after a backoff, or kept as failed for good.
    async fn record_failure(&self, row: &Claimed, error: &DeliveryError) {
        let attempts = row.attempts.saturating_add(1);
        let now = Utc::now();
        let update = match error {
            DeliveryError::Retry(reason) => {
                // Documented saturation: attempts only count up from 0.
                let delay = self
                    .config
                    .backoff(u32::try_from(attempts).unwrap_or(u32::MAX));
                tracing::warn!(
                    outbox_id = row.id,
                    topic = %row.topic,
                    attempts,
                    retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    error = %reason,
                    "outbox delivery failed, will retry"
                );
                Query::update()
                    .table(Outbox::Table)
                    .value(Outbox::Attempts, attempts)
                    .value(Outbox::NextAttemptAt, now + chrono_of(delay))
                    .value(Outbox::LeaseUntil, Option::<DateTime<Utc>>::None)
                    .value(Outbox::LastError, reason.clone())
                    .and_where(Expr::col(Outbox::Id).eq(row.id))
                    .to_owned()
            }
            DeliveryError::Permanent(reason) => {
                tracing::error!(
                    outbox_id = row.id,
                    topic = %row.topic,
                    attempts,
                    error = %reason,
                    "outbox delivery failed permanently, kept as failed"
                );
                Query::update()
                    .table(Outbox::Table)
                    .value(Outbox::Attempts, attempts)
                    .value(Outbox::FailedAt, now)
                    .value(Outbox::LeaseUntil, Option::<DateTime<Utc>>::None)
                    .value(Outbox::LastError, reason.clone())
                    .and_where(Expr::col(Outbox::Id).eq(row.id))
                    .to_owned()
            }
        };
        if let Err(error) = crate::db::execute_write(&self.db, &update).await {
            // The lease expires and the row is tried again.
            tracing::warn!(outbox_id = row.id, error = %error, "outbox result not recorded");
        }
    }
}

/// One message of the outbox, as `tavana admin outbox` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxEntry {
    /// The row id.
    pub id: i64,
    /// The receiver's method.
    pub topic: String,
    /// The sender's id for the message.
    pub dedup_key: String,
    /// The ordering key, if any.
    pub ordering_key: Option<String>,
    /// The version the message carries, if any.
    pub version: Option<i64>,
    /// When it was written.
    pub created_at: DateTime<Utc>,
    /// Deliveries tried.
    pub attempts: i32,
    /// When the next try may happen.
    pub next_attempt_at: DateTime<Utc>,
    /// When delivery was given up (a dead letter), if it was.
    pub failed_at: Option<DateTime<Utc>>,
    /// The last delivery error.
    pub last_error: Option<String>,
}

/// Returns the undelivered messages, oldest first (only the failed ones with
/// `failed_only`), at most `limit`.
pub async fn undelivered<C: ConnectionTrait>(
    db: &C,
    failed_only: bool,
    limit: u64,
) -> Result<Vec<OutboxEntry>, DbErr> {
    let mut entries =
        undelivered_where(db, Expr::col(Outbox::FailedAt).is_not_null(), limit).await?;
    if !failed_only {
        // Two reads, each through the partial index of its kind (`ix_outbox_pending`,
        // `ix_outbox_failed`), then the oldest `limit` of both.
        entries.extend(undelivered_where(db, Expr::col(Outbox::FailedAt).is_null(), limit).await?);
        entries.sort_unstable_by_key(|entry| entry.id);
        // Documented saturation: a limit past the address space keeps every entry.
        entries.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    }
    Ok(entries)
}

/// The oldest `limit` undelivered messages that meet `condition`.
async fn undelivered_where<C: ConnectionTrait>(
    db: &C,
    condition: Expr,
    limit: u64,
) -> Result<Vec<OutboxEntry>, DbErr> {
    let query = Query::select()
        .columns([
            Outbox::Id,
            Outbox::Topic,
            Outbox::DedupKey,
            Outbox::OrderingKey,
            Outbox::Version,
            Outbox::CreatedAt,
            Outbox::Attempts,
            Outbox::NextAttemptAt,
            Outbox::FailedAt,
            Outbox::LastError,
        ])
        .from(Outbox::Table)
        .and_where(Expr::col(Outbox::DeliveredAt).is_null())
        .and_where(condition)
        .order_by(Outbox::Id, sea_orm::Order::Asc)
        .limit(limit)
        .to_owned();
    db.query_all(&query)
        .await?
        .iter()
        .map(|row| {
            Ok(OutboxEntry {
                id: row.try_get("", "id")?,
                topic: row.try_get("", "topic")?,
                dedup_key: row.try_get("", "dedup_key")?,
                ordering_key: row.try_get("", "ordering_key")?,
                version: row.try_get("", "version")?,
                created_at: row.try_get("", "created_at")?,
                attempts: row.try_get("", "attempts")?,
                next_attempt_at: row.try_get("", "next_attempt_at")?,
                failed_at: row.try_get("", "failed_at")?,
                last_error: row.try_get("", "last_error")?,
            })
        })
        .collect()
}

/// Makes an undelivered message due again at once (a dead letter loses its `failed_at`),
/// for an operator who fixed the cause; returns false when no undelivered message has
/// that id. The relay delivers it on its next round.
pub async fn retry<C: ConnectionTrait>(db: &C, id: i64) -> Result<bool, DbErr> {
    let update = Query::update()
        .table(Outbox::Table)
        .value(Outbox::FailedAt, Option::<DateTime<Utc>>::None)
        .value(Outbox::LeaseUntil, Option::<DateTime<Utc>>::None)
        .value(Outbox::NextAttemptAt, Utc::now())
        .and_where(Expr::col(Outbox::Id).eq(id))
        .and_where(Expr::col(Outbox::DeliveredAt).is_null())
        .to_owned();
    Ok(db.execute(&update).await?.rows_affected() == 1)
}

#[cfg(test)]
mod tests;
