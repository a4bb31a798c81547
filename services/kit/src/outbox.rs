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
    InsertStatement, OnConflict, Query, Table, TableCreateStatement,
};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

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

/// A message to write to the outbox, in the transaction of the change it announces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The receiver's method, `<receiver>.<method>`, e.g. `credit.open_facility`.
    pub topic: &'static str,
    /// The sender's id for the message: unique per topic, a second one is dropped.
    pub dedup_key: String,
    /// The protobuf-encoded request.
    pub payload: Vec<u8>,
}

/// Rows per statement on SQLite: five parameters each, under its limit of 32,766. Plain
/// `?` placeholders: numbered ones (`?NNN`) make preparing the statement grow with the
/// square of the parameter count.
const SQLITE_ROWS: usize = 6_000;

/// Writes a message to the outbox; call it inside the transaction that makes the change.
///
/// A second message with the same `(topic, dedup_key)` is ignored.
pub async fn enqueue<C: ConnectionTrait>(
    conn: &C,
    topic: &str,
    dedup_key: &str,
    payload: Vec<u8>,
) -> Result<(), DbErr> {
    let now = Utc::now();
    let mut insert = insert_statement();
    insert.values_panic(row_values(topic, dedup_key, payload, now));
    conn.execute(&insert).await?;
    Ok(())
}

/// Writes messages to the outbox; a message already there (same topic and key) is left
/// alone. Call it inside the transaction that makes the change.
///
/// Built for batches of a million (a remittance): one statement binding three arrays
/// (`unnest`) on PostgreSQL, statements of [`SQLITE_ROWS`] rows on SQLite, the timestamp
/// bound once. The relay schedules by the wall clock, not an injected one, so rows are due
/// at once.
pub async fn enqueue_many<C: ConnectionTrait>(
    conn: &C,
    messages: Vec<Message>,
) -> Result<(), DbErr> {
    if messages.is_empty() {
        return Ok(());
    }
    let now = Utc::now();
    if conn.get_database_backend() == DbBackend::Postgres {
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
        conn.execute_raw(statement).await?;
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
        conn.execute_raw(Statement::from_sql_and_values(
            DbBackend::Sqlite,
            sql,
            values,
        ))
        .await?;
    }
    Ok(())
}

fn insert_statement() -> InsertStatement {
    Query::insert()
        .into_table(Outbox::Table)
        .columns([
            Outbox::Topic,
            Outbox::DedupKey,
            Outbox::Payload,
            Outbox::CreatedAt,
            Outbox::Attempts,
            Outbox::NextAttemptAt,
        ])
        .on_conflict(
            OnConflict::columns([Outbox::Topic, Outbox::DedupKey])
                .do_nothing()
                .to_owned(),
        )
        .to_owned()
}

fn row_values(topic: &str, dedup_key: &str, payload: Vec<u8>, now: DateTime<Utc>) -> [Expr; 6] {
    [
        topic.into(),
        dedup_key.into(),
        payload.into(),
        now.into(),
        0i32.into(),
        now.into(),
    ]
}

/// Returns the number of messages not yet delivered (and not given up).
pub async fn pending_count<C: ConnectionTrait>(db: &C) -> Result<u64, DbErr> {
    count_where(db, Expr::col(Outbox::FailedAt).is_null()).await
}

/// Returns the number of messages given up after a permanent failure.
pub async fn failed_count<C: ConnectionTrait>(db: &C) -> Result<u64, DbErr> {
    count_where(db, Expr::col(Outbox::FailedAt).is_not_null()).await
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

/// Wakes a running relay.
#[derive(Clone, Debug, Default)]
pub struct OutboxHandle {
    notify: Arc<Notify>,
}

impl OutboxHandle {
    /// Wakes the relay at once; call it after committing a transaction that enqueued.
    pub fn notify(&self) {
        self.notify.notify_one();
    }
}

/// The task that delivers outbox messages.
pub struct OutboxRelay {
    db: DatabaseConnection,
    deliver: Arc<dyn Deliver>,
    config: RelayConfig,
    notify: Arc<Notify>,
}

struct Claimed {
    id: i64,
    topic: String,
    payload: Vec<u8>,
    attempts: i32,
}

fn chrono_of(duration: Duration) -> chrono::Duration {
    chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::MAX)
}

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
    ) -> (OutboxHandle, RunningRelay) {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (handle, task) = OutboxRelay::spawn(db, deliver, async move {
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
        let relay = OutboxRelay {
            db,
            deliver,
            config,
            notify: notify.clone(),
        };
        let task = tokio::spawn(relay.run(shutdown));
        (OutboxHandle { notify }, task)
    }

    async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        tokio::pin!(shutdown);
        loop {
            let full_batch = match self.claim().await {
                Ok(rows) => {
                    let full = rows.len() >= self.config.batch_size as usize;
                    for row in rows {
                        self.deliver_one(row).await;
                    }
                    full
                }
                Err(error) => {
                    tracing::warn!(error = %error, "outbox claim failed");
                    false
                }
            };
            if full_batch {
                // More may be due: go on at once unless asked to stop.
                if futures::FutureExt::now_or_never(&mut shutdown).is_some() {
                    break;
                }
                continue;
            }
            tokio::select! {
                () = &mut shutdown => break,
                () = self.notify.notified() => {}
                () = tokio::time::sleep(self.config.poll_interval) => {}
            }
        }
        tracing::debug!("outbox relay stopped");
    }

    /// Leases a batch of due messages in one statement.
    async fn claim(&self) -> Result<Vec<Claimed>, DbErr> {
        let backend = self.db.get_database_backend();
        let now = Utc::now();
        let lease_until = now + chrono_of(self.config.lease);
        let sql = match backend {
            DbBackend::Postgres => format!(
                "UPDATE outbox SET lease_until = $1 WHERE id IN (\
                   SELECT id FROM outbox \
                   WHERE delivered_at IS NULL AND failed_at IS NULL AND next_attempt_at <= $2 \
                     AND (lease_until IS NULL OR lease_until < $3) \
                   ORDER BY id LIMIT {} FOR UPDATE SKIP LOCKED) \
                 RETURNING id, topic, payload, attempts",
                self.config.batch_size
            ),
            _ => format!(
                "UPDATE outbox SET lease_until = ? WHERE id IN (\
                   SELECT id FROM outbox \
                   WHERE delivered_at IS NULL AND failed_at IS NULL AND next_attempt_at <= ? \
                     AND (lease_until IS NULL OR lease_until < ?) \
                   ORDER BY id LIMIT {}) \
                 RETURNING id, topic, payload, attempts",
                self.config.batch_size
            ),
        };
        let values: [Value; 3] = [lease_until.into(), now.into(), now.into()];
        let rows = self
            .db
            .query_all_raw(Statement::from_sql_and_values(backend, sql, values))
            .await?;
        let mut claimed = rows
            .iter()
            .map(|row| {
                Ok(Claimed {
                    id: row.try_get("", "id")?,
                    topic: row.try_get("", "topic")?,
                    payload: row.try_get("", "payload")?,
                    attempts: row.try_get("", "attempts")?,
                })
            })
            .collect::<Result<Vec<_>, DbErr>>()?;
        // RETURNING does not promise an order.
        claimed.sort_by_key(|row| row.id);
        Ok(claimed)
    }

    async fn deliver_one(&self, row: Claimed) {
        let outcome = tokio::time::timeout(
            self.config.delivery_timeout,
            self.deliver.deliver(&row.topic, &row.payload),
        )
        .await
        .unwrap_or_else(|_| Err(DeliveryError::Retry("delivery timed out".to_owned())));
        let attempts = row.attempts.saturating_add(1);
        let now = Utc::now();
        let update = match &outcome {
            Ok(()) => Query::update()
                .table(Outbox::Table)
                .value(Outbox::DeliveredAt, now)
                .value(Outbox::LeaseUntil, Option::<DateTime<Utc>>::None)
                .value(Outbox::Attempts, attempts)
                .and_where(Expr::col(Outbox::Id).eq(row.id))
                .to_owned(),
            Err(DeliveryError::Retry(reason)) => {
                let delay = self.config.backoff(u32::try_from(attempts).unwrap_or(0));
                tracing::warn!(
                    outbox_id = row.id,
                    topic = %row.topic,
                    attempts,
                    retry_in_ms = delay.as_millis() as u64,
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
            Err(DeliveryError::Permanent(reason)) => {
                tracing::error!(
                    outbox_id = row.id,
                    topic = %row.topic,
                    attempts,
                    error = %reason,
                    "outbox delivery failed permanently, giving up"
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
        if let Err(error) = self.db.execute(&update).await {
            // The lease expires and the row is delivered again; receivers are idempotent.
            tracing::warn!(outbox_id = row.id, error = %error, "outbox result not recorded");
        } else if outcome.is_ok() {
            tracing::debug!(outbox_id = row.id, topic = %row.topic, "outbox message delivered");
        }
    }
}

#[cfg(test)]
mod tests;
