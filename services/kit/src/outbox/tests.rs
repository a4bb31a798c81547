use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use sea_orm::TransactionTrait;
use sea_orm_migration::prelude::*;
use tokio::sync::oneshot;

use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use super::*;
use crate::testing::{TestDb, test_db};

struct CreateOutbox;

impl MigrationName for CreateOutbox {
    fn name(&self) -> &str {
        "m20250101_000000_create_outbox"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateOutbox {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.create_table(create_outbox_table()).await?;
        for index in create_outbox_indexes() {
            manager.create_index(index).await?;
        }
        Ok(())
    }
}

struct ExtendOutbox;

impl MigrationName for ExtendOutbox {
    fn name(&self) -> &str {
        "m20261203_170000_extend_outbox"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for ExtendOutbox {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        extend_outbox_table(manager).await?;
        index_pending_outbox(manager).await
    }
}

struct TestMigrator;

impl MigratorTrait for TestMigrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(CreateOutbox),
            Box::new(ExtendOutbox),
            Box::new(NarrowOutboxIndexes {
                purges_delivered: true,
            }),
            Box::new(OutboxIdsWithoutSequence),
        ]
    }
}

/// Records deliveries; fails the first `failures` tries of each message.
#[derive(Default)]
struct Recorder {
    delivered: Mutex<Vec<(String, Vec<u8>)>>,
    tries: Mutex<HashMap<Vec<u8>, u32>>,
    failures: u32,
    permanent: bool,
    total_tries: AtomicU32,
    /// The trace id of the span each delivery ran in.
    trace_ids: Mutex<Vec<String>>,
    /// While true, every try fails (the receiver is down).
    down: std::sync::atomic::AtomicBool,
    /// Payloads refused (retryably) while listed.
    refused: Mutex<Vec<Vec<u8>>>,
}

impl Recorder {
    fn failing(failures: u32) -> Arc<Recorder> {
        Arc::new(Recorder {
            failures,
            ..Recorder::default()
        })
    }

    fn delivered(&self) -> Vec<(String, Vec<u8>)> {
        self.delivered.lock().unwrap().clone()
    }
}

#[async_trait]
impl Deliver for Recorder {
    async fn deliver(&self, topic: &str, payload: &[u8]) -> Result<(), DeliveryError> {
        self.total_tries.fetch_add(1, Ordering::SeqCst);
        {
            use opentelemetry::trace::TraceContextExt as _;
            let context = tracing::Span::current().context();
            let trace_id = context.span().span_context().trace_id().to_string();
            self.trace_ids.lock().unwrap().push(trace_id);
        }
        if self.permanent {
            return Err(DeliveryError::Permanent("receiver refused".into()));
        }
        if self.down.load(Ordering::SeqCst)
            || self.refused.lock().unwrap().contains(&payload.to_vec())
        {
            return Err(DeliveryError::Retry("receiver down".into()));
        }
        let tries = {
            let mut tries = self.tries.lock().unwrap();
            let entry = tries.entry(payload.to_vec()).or_default();
            *entry += 1;
            *entry
        };
        if tries <= self.failures {
            return Err(DeliveryError::Retry(format!("try {tries} failed")));
        }
        self.delivered
            .lock()
            .unwrap()
            .push((topic.to_owned(), payload.to_vec()));
        Ok(())
    }
}

fn fast_config() -> RelayConfig {
    RelayConfig {
        poll_interval: Duration::from_millis(20),
        min_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
        ..RelayConfig::default()
    }
}

struct Running {
    handle: OutboxHandle,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap();
    }
}

fn start(test_db: &TestDb, deliver: Arc<dyn Deliver>) -> Running {
    let (stop, stopped) = oneshot::channel::<()>();
    let (handle, task) =
        OutboxRelay::spawn_with_config(test_db.db.clone(), deliver, fast_config(), async move {
            let _ = stopped.await;
        });
    Running { handle, stop, task }
}

async fn eventually(what: &str, mut condition: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn rolled_back_message_is_never_delivered() {
    let test_db = test_db::<TestMigrator>().await;
    let recorder = Arc::new(Recorder::default());
    let relay = start(&test_db, recorder.clone());

    let txn = test_db.db.begin().await.unwrap();
    enqueue(&txn, "credit.open", "req-1", b"payload".to_vec())
        .await
        .unwrap();
    txn.rollback().await.unwrap();
    relay.handle.notify();
    // A relay sweeps once before it looks at its stop signal.
    relay.stop().await;

    assert!(recorder.delivered().is_empty());
    assert_eq!(pending_count(&test_db.db).await.unwrap(), 0);
}

#[tokio::test]
async fn committed_message_is_delivered_once() {
    let test_db = test_db::<TestMigrator>().await;
    let recorder = Arc::new(Recorder::default());
    let relay = start(&test_db, recorder.clone());

    let txn = test_db.db.begin().await.unwrap();
    enqueue(&txn, "credit.open", "req-1", b"payload".to_vec())
        .await
        .unwrap();
    txn.commit().await.unwrap();
    relay.handle.notify();

    eventually("delivery", async || !recorder.delivered().is_empty()).await;
    // Stopped, the relay delivers nothing more: what it delivered is all it ever will.
    relay.stop().await;
    assert_eq!(
        recorder.delivered(),
        [("credit.open".to_owned(), b"payload".to_vec())]
    );
    assert_eq!(pending_count(&test_db.db).await.unwrap(), 0);
}

#[tokio::test]
async fn retryable_failure_is_retried_until_it_succeeds() {
    let test_db = test_db::<TestMigrator>().await;
    let recorder = Recorder::failing(2);
    let relay = start(&test_db, recorder.clone());

    enqueue(&test_db.db, "settlement.schedule", "p-1", b"p1".to_vec())
        .await
        .unwrap();
    relay.handle.notify();

    // The receiver sees the message before the relay records it delivered.
    eventually("delivery recorded", async || {
        pending_count(&test_db.db).await.unwrap() == 0
    })
    .await;
    assert_eq!(recorder.total_tries.load(Ordering::SeqCst), 3);
    assert_eq!(recorder.delivered().len(), 1);
    relay.stop().await;
}

#[tokio::test]
async fn same_dedup_key_is_enqueued_once() {
    let test_db = test_db::<TestMigrator>().await;

    enqueue(&test_db.db, "credit.open", "req-1", b"first".to_vec())
        .await
        .unwrap();
    enqueue(&test_db.db, "credit.open", "req-1", b"second".to_vec())
        .await
        .unwrap();
    enqueue(&test_db.db, "credit.other", "req-1", b"third".to_vec())
        .await
        .unwrap();
    assert_eq!(pending_count(&test_db.db).await.unwrap(), 2);

    let recorder = Arc::new(Recorder::default());
    let relay = start(&test_db, recorder.clone());
    eventually("delivery", async || recorder.delivered().len() == 2).await;
    assert_eq!(
        recorder.delivered(),
        [
            ("credit.open".to_owned(), b"first".to_vec()),
            ("credit.other".to_owned(), b"third".to_vec()),
        ]
    );
    relay.stop().await;
}

#[tokio::test]
async fn permanent_failure_keeps_the_row_and_stops_retrying() {
    let test_db = test_db::<TestMigrator>().await;
    let recorder = Arc::new(Recorder {
        permanent: true,
        ..Recorder::default()
    });
    let relay = start(&test_db, recorder.clone());

    enqueue(&test_db.db, "identity.notify", "sms-1", b"x".to_vec())
        .await
        .unwrap();
    relay.handle.notify();
    eventually("a try", async || {
        recorder.total_tries.load(Ordering::SeqCst) > 0
    })
    .await;
    // The stop waits for the sweep under way, which records the failure.
    relay.stop().await;
    // A row given up is no longer due: a relay started now sweeps it by and stops.
    start(&test_db, recorder.clone()).stop().await;

    assert_eq!(recorder.total_tries.load(Ordering::SeqCst), 1);
    assert_eq!(pending_count(&test_db.db).await.unwrap(), 0);
    assert_eq!(failed_count(&test_db.db).await.unwrap(), 1);
    let row = test_db
        .db
        .query_one(
            &Query::select()
                .column(Outbox::LastError)
                .from(Outbox::Table)
                .to_owned(),
        )
        .await
        .unwrap()
        .unwrap();
    let last_error: String = row.try_get("", "last_error").unwrap();
    assert_eq!(last_error, "receiver refused");
}

#[tokio::test]
async fn leased_row_waits_until_the_lease_expires() {
    let test_db = test_db::<TestMigrator>().await;
    enqueue(&test_db.db, "credit.open", "req-1", b"x".to_vec())
        .await
        .unwrap();
    // A replica claimed the row and died mid-delivery.
    let lease_until = |at: DateTime<Utc>| {
        Query::update()
            .table(Outbox::Table)
            .value(Outbox::LeaseUntil, at)
            .to_owned()
    };
    let in_an_hour = Utc::now() + chrono::Duration::hours(1);
    test_db.db.execute(&lease_until(in_an_hour)).await.unwrap();
    let recorder = Arc::new(Recorder::default());

    // A relay sweeps once before it looks at its stop signal: the lease keeps it off.
    start(&test_db, recorder.clone()).stop().await;
    assert!(recorder.delivered().is_empty());
    assert_eq!(pending_count(&test_db.db).await.unwrap(), 1);

    // The lease has run out: the next relay delivers the row.
    let a_second_ago = Utc::now() - chrono::Duration::seconds(1);
    test_db
        .db
        .execute(&lease_until(a_second_ago))
        .await
        .unwrap();
    let relay = start(&test_db, recorder.clone());
    eventually("delivery after the lease", async || {
        recorder.delivered().len() == 1
    })
    .await;
    relay.stop().await;
    assert_eq!(recorder.delivered().len(), 1);
    assert_eq!(pending_count(&test_db.db).await.unwrap(), 0);
}

#[tokio::test]
async fn two_relays_deliver_each_message_exactly_once() {
    let test_db = test_db::<TestMigrator>().await;
    for n in 0..200 {
        enqueue(&test_db.db, "t", &n.to_string(), n.to_string().into_bytes())
            .await
            .unwrap();
    }
    let recorder = Arc::new(Recorder::default());
    let first = start(&test_db, recorder.clone());
    let second = start(&test_db, recorder.clone());

    eventually("all deliveries", async || {
        pending_count(&test_db.db).await.unwrap() == 0
    })
    .await;
    // Stopped, the relays deliver nothing more: what they delivered is all they ever will.
    first.stop().await;
    second.stop().await;

    let mut payloads: Vec<Vec<u8>> = recorder.delivered().into_iter().map(|(_, p)| p).collect();
    payloads.sort();
    let mut expected: Vec<Vec<u8>> = (0..200).map(|n: i32| n.to_string().into_bytes()).collect();
    expected.sort();
    assert_eq!(payloads, expected);
}

#[test]
fn backoff_grows_and_is_capped() {
    let config = RelayConfig::default();
    assert_eq!(config.backoff(1), Duration::from_secs(1));
    assert_eq!(config.backoff(2), Duration::from_secs(2));
    assert_eq!(config.backoff(3), Duration::from_secs(4));
    assert_eq!(config.backoff(20), Duration::from_secs(300));
    assert_eq!(config.backoff(u32::MAX), Duration::from_secs(300));
}

struct EmptyMigrator;

impl MigratorTrait for EmptyMigrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        Vec::new()
    }
}

#[tokio::test]
async fn schema_newer_than_the_binary_is_refused() {
    let test_db = test_db::<TestMigrator>().await;

    crate::db::check_schema_not_newer::<TestMigrator>(&test_db.db)
        .await
        .unwrap();
    let error = crate::db::check_schema_not_newer::<EmptyMigrator>(&test_db.db)
        .await
        .unwrap_err();

    assert!(error.to_string().contains("m20261203_170000_extend_outbox"));
}

/// Reads a message's payload as stored, and on PostgreSQL the method that compressed it.
async fn stored_payload(db: &DatabaseConnection, dedup_key: &str) -> (Vec<u8>, Option<String>) {
    let backend = db.get_database_backend();
    let method = if backend == DbBackend::Postgres {
        "pg_column_compression(payload)"
    } else {
        "NULL"
    };
    let row = db
        .query_one_raw(Statement::from_string(
            backend,
            format!(
                "SELECT payload, {method} AS method FROM outbox WHERE dedup_key = '{dedup_key}'"
            ),
        ))
        .await
        .unwrap()
        .unwrap();
    (
        row.try_get("", "payload").unwrap(),
        row.try_get("", "method").unwrap(),
    )
}

#[tokio::test]
async fn payloads_compress_with_lz4_and_read_back_as_written() {
    let test_db = test_db::<TestMigrator>().await;
    let manager = SchemaManager::new(&test_db.db);
    let on_postgres = |method: &str| test_db.is_postgres().then(|| method.to_owned());
    // A batch's payload: large and repetitive, so PostgreSQL compresses it out of line.
    let batch: Vec<u8> = (0..50_000u32)
        .flat_map(|n| format!("emp-{:05};", n % 5_000).into_bytes())
        .collect();

    enqueue(&test_db.db, "t", "before", batch.clone())
        .await
        .unwrap();
    CompressOutboxWithLz4.up(&manager).await.unwrap();
    assert_eq!(
        crate::testing::outbox_payload_compression(&test_db.db).await,
        test_db.is_postgres().then_some("lz4")
    );
    enqueue(&test_db.db, "t", "lz4", batch.clone())
        .await
        .unwrap();
    enqueue(&test_db.db, "t", "one byte", vec![7])
        .await
        .unwrap();

    // Rows written before keep their compression; every payload reads back as written.
    assert_eq!(
        stored_payload(&test_db.db, "before").await,
        (batch.clone(), on_postgres("pglz"))
    );
    assert_eq!(
        stored_payload(&test_db.db, "lz4").await,
        (batch.clone(), on_postgres("lz4"))
    );
    assert_eq!(
        stored_payload(&test_db.db, "one byte").await,
        (vec![7], None)
    );

    CompressOutboxWithLz4.down(&manager).await.unwrap();
    assert_eq!(
        crate::testing::outbox_payload_compression(&test_db.db).await,
        None
    );
    assert_eq!(
        stored_payload(&test_db.db, "lz4").await,
        (batch, on_postgres("lz4"))
    );
}

#[tokio::test]
async fn connect_and_migrate_is_repeatable() {
    let test_db = test_db::<TestMigrator>().await;

    let db = crate::db::connect_and_migrate::<TestMigrator>(&test_db.url, 2)
        .await
        .unwrap();

    assert_eq!(pending_count(&db).await.unwrap(), 0);
}

/// Answers nothing, ever: a receiver that hangs.
struct Hanging;

#[async_trait]
impl Deliver for Hanging {
    async fn deliver(&self, _topic: &str, _payload: &[u8]) -> Result<(), DeliveryError> {
        std::future::pending().await
    }
}

/// A handle whose relay has stopped, so that what a test sees delivered was delivered by
/// `deliver_now` alone.
async fn handle_only(
    test_db: &TestDb,
    deliver: Arc<dyn Deliver>,
    config: RelayConfig,
) -> OutboxHandle {
    let (stop, stopped) = oneshot::channel::<()>();
    let (handle, task) =
        OutboxRelay::spawn_with_config(test_db.db.clone(), deliver, config, async move {
            let _ = stopped.await;
        });
    stop.send(()).unwrap();
    task.await.unwrap();
    handle
}

async fn commit_messages(test_db: &TestDb, messages: Vec<Message>) -> Enqueued {
    let txn = test_db.db.begin().await.unwrap();
    let enqueued = enqueue_many(&txn, messages).await.unwrap();
    txn.commit().await.unwrap();
    enqueued
}

#[tokio::test]
async fn read_your_writes_deliver_now_delivers_before_it_returns() {
    // Arrange
    let test_db = test_db::<TestMigrator>().await;
    let recorder = Arc::new(Recorder::default());
    let handle = handle_only(&test_db, recorder.clone(), fast_config()).await;
    let enqueued = commit_messages(
        &test_db,
        vec![
            Message::new("credit.open_facility", "req-1", b"open".to_vec()),
            Message::new("identity.notify_employee", "sms-1", b"sms".to_vec()),
        ],
    )
    .await;

    // Act
    handle.deliver_now(&enqueued).await;

    // Assert: delivered when the call returns, not later.
    assert_eq!(
        recorder.delivered(),
        [
            ("credit.open_facility".to_owned(), b"open".to_vec()),
            ("identity.notify_employee".to_owned(), b"sms".to_vec()),
        ]
    );
    assert_eq!(pending_count(&test_db.db).await.unwrap(), 0);
}

/// While it delivers its first message, commits a second one as a sender does; records
/// which task delivered each message (`None`: the test's own, through `deliver_now`).
struct CommitsWhileDelivered {
    db: DatabaseConnection,
    second: Mutex<Option<oneshot::Sender<Enqueued>>>,
    delivered_by: Mutex<Vec<(String, Option<tokio::task::Id>)>>,
}

#[async_trait]
impl Deliver for CommitsWhileDelivered {
    async fn deliver(&self, topic: &str, _payload: &[u8]) -> Result<(), DeliveryError> {
        self.delivered_by
            .lock()
            .unwrap()
            .push((topic.to_owned(), tokio::task::try_id()));
        let sender = self.second.lock().unwrap().take();
        if let Some(sender) = sender {
            let txn = self.db.begin().await.unwrap();
            let enqueued = enqueue(&txn, "identity.notify_employee", "sms-2", b"2".to_vec())
                .await
                .unwrap();
            txn.commit().await.unwrap();
            sender.send(enqueued).unwrap();
        }
        Ok(())
    }
}

#[tokio::test]
async fn read_your_writes_the_relay_leaves_a_sender_its_just_committed_messages() {
    // Arrange: a relay that polls once an hour delivers a first message in its first
    // sweep; while it does, a sender commits a second one.
    let test_db = test_db::<TestMigrator>().await;
    let (second, committed) = oneshot::channel();
    let receiver = Arc::new(CommitsWhileDelivered {
        db: test_db.db.clone(),
        second: Mutex::new(Some(second)),
        delivered_by: Mutex::new(Vec::new()),
    });
    let config = RelayConfig {
        poll_interval: Duration::from_secs(3600),
        ..fast_config()
    };
    let first = commit_messages(
        &test_db,
        vec![Message::new("credit.open_facility", "req-1", b"1".to_vec())],
    )
    .await;
    let (stop, stopped) = oneshot::channel::<()>();
    let (handle, task) =
        OutboxRelay::spawn_with_config(test_db.db.clone(), receiver.clone(), config, async move {
            let _ = stopped.await;
        });
    let enqueued = committed.await.unwrap();
    // The relay's own effect, which no contract times: its record of the first message.
    eventually("the first message recorded", async || {
        let query = Query::select()
            .column(Outbox::Id)
            .from(Outbox::Table)
            .and_where(Expr::col(Outbox::Id).eq(first.ids()[0]))
            .and_where(Expr::col(Outbox::DeliveredAt).is_not_null())
            .to_owned();
        test_db.db.query_one(&query).await.unwrap().is_some()
    })
    .await;

    // Act: the sender delivers what it committed.
    handle.deliver_now(&enqueued).await;

    // Assert: the relay, having delivered an unordered message, did not claim again at
    // once and race the sender for the second one: the sender delivered it.
    assert_eq!(pending_count(&test_db.db).await.unwrap(), 0);
    let delivered_by = receiver.delivered_by.lock().unwrap().clone();
    assert_eq!(delivered_by.len(), 2, "{delivered_by:?}");
    assert_eq!(delivered_by[0].0, "credit.open_facility");
    assert!(delivered_by[0].1.is_some(), "the relay delivers the first");
    assert_eq!(
        delivered_by[1],
        ("identity.notify_employee".to_owned(), None),
        "the sender delivers the second"
    );
    stop.send(()).unwrap();
    task.await.unwrap();
}

#[tokio::test]
async fn read_your_writes_messages_another_relay_delivered_leave_nothing_to_hurry() {
    // Arrange: two messages committed; another replica's relay delivers the first before
    // the sender's immediate delivery claims it.
    let test_db = test_db::<TestMigrator>().await;
    let recorder = Arc::new(Recorder::default());
    let courier = Courier::new(test_db.db.clone(), recorder.clone(), fast_config());
    let enqueued = commit_messages(
        &test_db,
        vec![
            Message::new("credit.open_facility", "req-1", b"1".to_vec()),
            Message::new("identity.notify_employee", "sms-1", b"2".to_vec()),
        ],
    )
    .await;
    assert!(courier.record_delivered(&enqueued.ids()[..1]).await);

    // Act
    let all_done = courier.deliver_ids(enqueued.ids()).await;

    // Assert: the sender delivered the second, and leaves its relay asleep (waking it for
    // rows others delivered had relays chase each other's fresh rows under load).
    assert!(all_done);
    assert_eq!(
        recorder.delivered(),
        [("identity.notify_employee".to_owned(), b"2".to_vec())]
    );
    assert_eq!(pending_count(&test_db.db).await.unwrap(), 0);

    // A receiver that refuses leaves the message to the relay: it is woken.
    recorder.down.store(true, Ordering::SeqCst);
    let refused = commit_messages(
        &test_db,
        vec![Message::new("credit.open_facility", "req-2", b"3".to_vec())],
    )
    .await;
    assert!(!courier.deliver_ids(refused.ids()).await);
    assert_eq!(pending_count(&test_db.db).await.unwrap(), 1);
}

#[tokio::test]
async fn read_your_writes_the_relay_poll_leaves_fresh_messages_to_their_senders() {
    // Arrange: a fresh message, one a sender tried and failed, one older than the
    // immediate deadline whose sender died before delivering it, and a fresh ordered one.
    let test_db = test_db::<TestMigrator>().await;
    let courier = Courier::new(
        test_db.db.clone(),
        Arc::new(Recorder::default()),
        RelayConfig {
            immediate_deadline: Duration::from_secs(60),
            ..fast_config()
        },
    );
    let fresh = commit_messages(&test_db, vec![Message::new("t", "fresh", b"1".to_vec())]).await;
    let tried = commit_messages(&test_db, vec![Message::new("t", "tried", b"2".to_vec())]).await;
    let orphan = commit_messages(&test_db, vec![Message::new("t", "orphan", b"3".to_vec())]).await;
    // A fresh message with an ordering key: its sender may have found it waiting behind an
    // older one of its key, which another sender delivered.
    let ordered = commit_messages(
        &test_db,
        vec![Message::new("t", "ordered", b"4".to_vec()).ordered("key-1", 1)],
    )
    .await;
    let update = |id: i64, column: Outbox, value: Value| {
        Query::update()
            .table(Outbox::Table)
            .value(column, value)
            .and_where(Expr::col(Outbox::Id).eq(id))
            .to_owned()
    };
    test_db
        .db
        .execute(&update(tried.ids()[0], Outbox::Attempts, 1.into()))
        .await
        .unwrap();
    let before_deadline = Utc::now() - chrono::Duration::seconds(61);
    test_db
        .db
        .execute(&update(
            orphan.ids()[0],
            Outbox::CreatedAt,
            before_deadline.into(),
        ))
        .await
        .unwrap();

    // Act: the poll's claim.
    let polled: Vec<i64> = courier
        .claim(Due::LeavingFresh)
        .await
        .unwrap()
        .iter()
        .map(|row| row.id)
        .collect();

    // Assert: the fresh one stays for its sender; a sender's own claim, or a sweep on a
    // sender's call, still takes it.
    assert_eq!(polled, [tried.ids()[0], orphan.ids()[0], ordered.ids()[0]]);
    let swept = courier.claim(Due::All).await.unwrap();
    assert_eq!(swept.len(), 1);
    assert_eq!(swept[0].id, fresh.ids()[0]);
    courier.release(fresh.ids()).await;
    let own = courier.claim(Due::Ids(fresh.ids())).await.unwrap();
    assert_eq!(own.len(), 1);
}

/// Retries at once when woken: what a test sees retried was retried by the relay.
fn no_backoff() -> RelayConfig {
    RelayConfig {
        min_backoff: Duration::ZERO,
        max_backoff: Duration::ZERO,
        ..fast_config()
    }
}

#[tokio::test]
async fn read_your_writes_receiver_down_the_answer_goes_on_and_the_relay_catches_up() {
    // Arrange
    let test_db = test_db::<TestMigrator>().await;
    let recorder = Arc::new(Recorder::default());
    recorder.down.store(true, Ordering::SeqCst);
    let handle = handle_only(&test_db, recorder.clone(), no_backoff()).await;
    let enqueued = commit_messages(
        &test_db,
        vec![Message::new(
            "settlement.record_schedule",
            "p-1",
            b"p1".to_vec(),
        )],
    )
    .await;

    // Act
    handle.deliver_now(&enqueued).await;

    // Assert: the sender's answer is not held up; once the receiver is back, the relay
    // delivers on its own.
    assert!(recorder.delivered().is_empty());
    assert_eq!(pending_count(&test_db.db).await.unwrap(), 1);
    recorder.down.store(false, Ordering::SeqCst);
    let relay = start(&test_db, recorder.clone());
    eventually("the relay's retry", async || {
        recorder.delivered().len() == 1
    })
    .await;
    relay.stop().await;
}

#[tokio::test]
async fn read_your_writes_a_hanging_receiver_holds_the_answer_only_until_the_deadline() {
    // Arrange
    let test_db = test_db::<TestMigrator>().await;
    let config = RelayConfig {
        immediate_deadline: Duration::from_millis(100),
        ..fast_config()
    };
    let handle = handle_only(&test_db, Arc::new(Hanging), config).await;
    let enqueued = commit_messages(
        &test_db,
        vec![
            Message::new("t", "1", b"1".to_vec()),
            Message::new("t", "2", b"2".to_vec()),
        ],
    )
    .await;

    // Act
    handle.deliver_now(&enqueued).await;

    // Assert: both are still the relay's to deliver; the second was never leased away.
    assert_eq!(pending_count(&test_db.db).await.unwrap(), 2);
    let entries = undelivered(&test_db.db, false, 10).await.unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[1].attempts, 0);
}

#[tokio::test]
async fn ordering_key_one_transaction_delivers_its_messages_in_order_at_once() {
    // Arrange: a schedule (version 1) and its refund (version 2), one ordering key.
    let test_db = test_db::<TestMigrator>().await;
    let recorder = Arc::new(Recorder::default());
    let handle = handle_only(&test_db, recorder.clone(), fast_config()).await;
    let enqueued = commit_messages(
        &test_db,
        vec![
            Message::new("settlement.record_schedule", "p-1", b"v1".to_vec()).ordered("p-1", 1),
            Message::new("settlement.cancel_instalments", "r-1", b"v2".to_vec()).ordered("p-1", 2),
        ],
    )
    .await;

    // Act
    handle.deliver_now(&enqueued).await;

    // Assert
    let payloads: Vec<Vec<u8>> = recorder.delivered().into_iter().map(|(_, p)| p).collect();
    assert_eq!(payloads, [b"v1".to_vec(), b"v2".to_vec()]);
}

#[tokio::test]
async fn ordering_key_a_newer_message_waits_behind_an_undelivered_older_one() {
    // Arrange: the receiver refuses the older message of key p-1 for now.
    let test_db = test_db::<TestMigrator>().await;
    let recorder = Arc::new(Recorder::default());
    recorder.refused.lock().unwrap().push(b"v1".to_vec());
    let handle = handle_only(&test_db, recorder.clone(), no_backoff()).await;
    let older = commit_messages(
        &test_db,
        vec![Message::new("settlement.record_schedule", "p-1", b"v1".to_vec()).ordered("p-1", 1)],
    )
    .await;
    handle.deliver_now(&older).await;
    let newer = commit_messages(
        &test_db,
        vec![
            Message::new("settlement.cancel_instalments", "r-1", b"v2".to_vec()).ordered("p-1", 2),
            Message::new("identity.notify_employee", "sms-1", b"other".to_vec()),
        ],
    )
    .await;

    // Act
    handle.deliver_now(&newer).await;

    // Assert: the unordered message went; v2 waits for v1, then both go in order.
    assert_eq!(
        recorder.delivered(),
        [("identity.notify_employee".to_owned(), b"other".to_vec())]
    );
    recorder.refused.lock().unwrap().clear();
    let relay = start(&test_db, recorder.clone());
    eventually("the relay delivers the key in order", async || {
        recorder.delivered().len() == 3
    })
    .await;
    let payloads: Vec<Vec<u8>> = recorder.delivered().into_iter().map(|(_, p)| p).collect();
    assert_eq!(payloads[1..], [b"v1".to_vec(), b"v2".to_vec()]);
    relay.stop().await;
}

#[tokio::test]
async fn dead_letter_r31_is_kept_listed_and_delivered_once_retried() {
    // Arrange: the receiver refuses for good, then the cause is fixed.
    let test_db = test_db::<TestMigrator>().await;
    let refusing = Arc::new(Recorder {
        permanent: true,
        ..Recorder::default()
    });
    let handle = handle_only(&test_db, refusing.clone(), fast_config()).await;
    let enqueued = commit_messages(
        &test_db,
        vec![
            Message::new("settlement.record_schedule", "p-1", b"v1".to_vec()).ordered("p-1", 1),
            Message::new("settlement.cancel_instalments", "r-1", b"v2".to_vec()).ordered("p-1", 2),
        ],
    )
    .await;
    handle.deliver_now(&enqueued).await;

    // Act
    let failed = undelivered(&test_db.db, true, 10).await.unwrap();
    let all = undelivered(&test_db.db, false, 10).await.unwrap();

    // Assert: the refused message is kept with its error; the next of its key waits.
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].dedup_key, "p-1");
    assert_eq!(failed[0].ordering_key.as_deref(), Some("p-1"));
    assert_eq!(failed[0].version, Some(1));
    assert!(failed[0].failed_at.is_some());
    assert_eq!(failed[0].last_error.as_deref(), Some("receiver refused"));
    assert_eq!(all.len(), 2);
    assert_eq!(all[1].attempts, 0);

    // Act: the operator retries once the receiver accepts.
    assert!(retry(&test_db.db, failed[0].id).await.unwrap());
    assert!(!retry(&test_db.db, 9_999).await.unwrap());
    let recorder = Arc::new(Recorder::default());
    let relay = start(&test_db, recorder.clone());

    // Assert: the relay delivers both, in order.
    eventually("delivery after the retry", async || {
        recorder.delivered().len() == 2
    })
    .await;
    let payloads: Vec<Vec<u8>> = recorder.delivered().into_iter().map(|(_, p)| p).collect();
    assert_eq!(payloads, [b"v1".to_vec(), b"v2".to_vec()]);
    assert_eq!(failed_count(&test_db.db).await.unwrap(), 0);
    relay.stop().await;
}

#[tokio::test]
async fn repeated_message_enqueues_nothing_to_deliver() {
    let test_db = test_db::<TestMigrator>().await;

    let first = enqueue(&test_db.db, "credit.open", "req-1", b"x".to_vec())
        .await
        .unwrap();
    let second = enqueue(&test_db.db, "credit.open", "req-1", b"y".to_vec())
        .await
        .unwrap();

    assert_eq!(first.ids().len(), 1);
    assert!(second.is_empty());
}

#[tokio::test]
async fn trace_context_is_stored_at_enqueue_and_parents_the_delivery() {
    use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
    // Arrange: a subscriber that exports spans to OpenTelemetry, on this test's thread.
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let subscriber = tracing_subscriber::layer::SubscriberExt::with(
        tracing_subscriber::registry(),
        tracing_opentelemetry::layer().with_tracer(provider.tracer("test")),
    );
    let _default = tracing::subscriber::set_default(subscriber);
    let test_db = test_db::<TestMigrator>().await;
    let recorder = Arc::new(Recorder::default());
    let handle = handle_only(&test_db, recorder.clone(), fast_config()).await;
    let request_span = tracing::info_span!("finance approval");
    let trace_id = request_span
        .context()
        .span()
        .span_context()
        .trace_id()
        .to_string();
    let enqueued = commit_messages(
        &test_db,
        vec![Message::new("credit.open_facility", "req-1", b"x".to_vec())],
    )
    .instrument(request_span)
    .await;

    // Act: delivered from another trace altogether.
    handle
        .deliver_now(&enqueued)
        .instrument(tracing::info_span!("elsewhere"))
        .await;

    // Assert
    let row = test_db
        .db
        .query_one(
            &Query::select()
                .column(Outbox::Traceparent)
                .from(Outbox::Table)
                .to_owned(),
        )
        .await
        .unwrap()
        .unwrap();
    let traceparent: String = row.try_get("", "traceparent").unwrap();
    assert!(
        traceparent.starts_with(&format!("00-{trace_id}-")),
        "{traceparent}"
    );
    assert_eq!(*recorder.trace_ids.lock().unwrap(), [trace_id]);
}

#[tokio::test]
async fn pending_count_of_counts_one_topic_until_it_is_delivered() {
    // Arrange
    let test_db = test_db::<TestMigrator>().await;
    let recorder = Arc::new(Recorder::default());
    let handle = handle_only(&test_db, recorder.clone(), fast_config()).await;
    let enqueued = commit_messages(
        &test_db,
        vec![
            Message::new("credit.mark_purchases_settled", "settled-1", b"a".to_vec()),
            Message::new("credit.mark_purchases_settled", "settled-2", b"b".to_vec()),
            Message::new("identity.notify_employees", "sms-1", b"c".to_vec()),
        ],
    )
    .await;
    let pending = async |topic: &str| pending_count_of(&test_db.db, topic).await.unwrap();
    assert_eq!(pending("credit.mark_purchases_settled").await, 2);
    assert_eq!(pending("identity.notify_employees").await, 1);

    // Act
    handle.deliver_now(&enqueued).await;

    // Assert: the three deliveries were recorded (in one statement) before it returned.
    assert_eq!(recorder.delivered().len(), 3);
    assert_eq!(pending("credit.mark_purchases_settled").await, 0);
    assert_eq!(pending("identity.notify_employees").await, 0);
}

/// Reads a row's lease, as the relay's claim sees it.
async fn lease_of(test_db: &TestDb, id: i64) -> Option<DateTime<Utc>> {
    let query = Query::select()
        .column(Outbox::LeaseUntil)
        .from(Outbox::Table)
        .and_where(Expr::col(Outbox::Id).eq(id))
        .to_owned();
    let row = test_db.db.query_one(&query).await.unwrap().unwrap();
    row.try_get("", "lease_until").unwrap()
}

#[tokio::test]
async fn read_your_writes_a_sender_delivers_what_it_wrote_leased_without_claiming_it() {
    // Arrange: a sender writes two unordered messages (one already there) and an ordered
    // one through its handle, in one transaction.
    let test_db = test_db::<TestMigrator>().await;
    let recorder = Arc::new(Recorder::default());
    let handle = handle_only(&test_db, recorder.clone(), fast_config()).await;
    let before = commit_messages(
        &test_db,
        vec![Message::new(
            "identity.notify_employee",
            "sms-0",
            b"old".to_vec(),
        )],
    )
    .await;
    let txn = test_db.db.begin().await.unwrap();
    let enqueued = handle
        .enqueue(
            &txn,
            vec![
                Message::new("settlement.record_schedule", "p-1", b"schedule".to_vec()),
                Message::new("identity.notify_employee", "sms-0", b"again".to_vec()),
                Message::new("settlement.cancel_instalments", "r-1", b"cancel".to_vec())
                    .ordered("p-0", 2),
                Message::new("identity.notify_employee", "sms-1", b"receipt".to_vec()),
            ],
        )
        .await
        .unwrap();
    txn.commit().await.unwrap();

    // The new unordered rows are leased to the sender, so that no relay claims them; the
    // ordered one waits its turn as any other; the repeated one is not new.
    assert_eq!(enqueued.ids().len(), 3);
    assert!(!enqueued.ids().contains(&before.ids()[0]));
    let leased: Vec<i64> = enqueued.leased.iter().map(|row| row.id).collect();
    assert_eq!(leased.len(), 2);
    for id in enqueued.ids() {
        let lease = lease_of(&test_db, *id).await;
        assert_eq!(lease.is_some(), leased.contains(id), "row {id}: {lease:?}");
        if let Some(lease) = lease {
            assert!(
                lease > Utc::now(),
                "a lease the relay leaves alone: {lease}"
            );
        }
    }
    let relay = Courier::new(test_db.db.clone(), recorder.clone(), fast_config());
    let claimable = relay.claim(Due::Ids(enqueued.ids())).await.unwrap();
    let claimable: Vec<String> = claimable.into_iter().map(|row| row.topic).collect();
    assert_eq!(claimable, ["settlement.cancel_instalments"]);
    relay.release(enqueued.ids()).await;

    // Act
    handle.deliver_now(&enqueued).await;

    // Assert: all three delivered before the call returns, the leased ones first (side by
    // side, in no promised order), and recorded: nothing is left to the relay, and no
    // lease is left behind.
    let delivered = recorder.delivered();
    assert_eq!(delivered.len(), 3, "{delivered:?}");
    let mut leased_first = delivered[..2].to_vec();
    leased_first.sort();
    assert_eq!(
        leased_first,
        [
            ("identity.notify_employee".to_owned(), b"receipt".to_vec()),
            (
                "settlement.record_schedule".to_owned(),
                b"schedule".to_vec()
            ),
        ]
    );
    assert_eq!(
        delivered[2],
        (
            "settlement.cancel_instalments".to_owned(),
            b"cancel".to_vec()
        )
    );
    assert_eq!(pending_count(&test_db.db).await.unwrap(), 1, "only sms-0");
    for id in enqueued.ids() {
        assert_eq!(lease_of(&test_db, *id).await, None);
    }
}

#[tokio::test]
async fn read_your_writes_messages_written_alone_are_leased_to_their_sender_and_delivered_at_once()
{
    // Arrange: a sender writes two SMS outside any transaction of its own (identity's login
    // code and notifications), one of them already there.
    let test_db = test_db::<TestMigrator>().await;
    let recorder = Arc::new(Recorder::default());
    let sender = handle_only(&test_db, recorder.clone(), fast_config()).await;
    let before = sender
        .enqueue_alone(
            &test_db.db,
            vec![Message::new("identity.send_sms", "sms-0", b"old".to_vec())],
        )
        .await
        .unwrap();

    // Act
    let enqueued = sender
        .enqueue_alone(
            &test_db.db,
            vec![
                Message::new("identity.send_sms", "sms-0", b"again".to_vec()),
                Message::new("identity.send_sms", "sms-1", b"code".to_vec()),
            ],
        )
        .await
        .unwrap();

    // Assert: only the new one, written leased (no relay claims it), delivered before
    // deliver_now returns.
    assert_eq!(enqueued.ids().len(), 1);
    assert_eq!(enqueued.leased.len(), 1);
    assert!(lease_of(&test_db, enqueued.ids()[0]).await.is_some());
    sender.deliver_now(&enqueued).await;
    assert_eq!(
        recorder.delivered(),
        [("identity.send_sms".to_owned(), b"code".to_vec())]
    );
    assert_eq!(lease_of(&test_db, enqueued.ids()[0]).await, None);
    assert_eq!(
        pending_count(&test_db.db).await.unwrap(),
        before.ids().len() as u64
    );
}

/// A receiver that answers only once `expected` deliveries are in flight at once; a
/// delivery waiting alone longer than its timeout fails (to be retried).
struct Rendezvous {
    barrier: tokio::sync::Barrier,
    delivered: Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl Deliver for Rendezvous {
    async fn deliver(&self, topic: &str, _payload: &[u8]) -> Result<(), DeliveryError> {
        self.barrier.wait().await;
        self.delivered.lock().unwrap().push(topic.to_owned());
        Ok(())
    }
}

#[tokio::test]
async fn read_your_writes_a_transactions_unordered_messages_go_to_their_receivers_side_by_side() {
    // Arrange: two unordered messages of one transaction, to a receiver that answers only
    // when both are in flight: delivered one after the other, the first would wait alone
    // until its timeout and fail.
    let test_db = test_db::<TestMigrator>().await;
    let receiver = Arc::new(Rendezvous {
        barrier: tokio::sync::Barrier::new(2),
        delivered: Mutex::new(Vec::new()),
    });
    let config = RelayConfig {
        delivery_timeout: Duration::from_secs(5),
        immediate_deadline: Duration::from_secs(5),
        ..fast_config()
    };
    let sender = handle_only(&test_db, receiver.clone(), config).await;
    let txn = test_db.db.begin().await.unwrap();
    let enqueued = sender
        .enqueue(
            &txn,
            vec![
                Message::new("settlement.record_schedule", "p-1", b"schedule".to_vec()),
                Message::new("identity.notify_employee", "sms-1", b"receipt".to_vec()),
            ],
        )
        .await
        .unwrap();
    txn.commit().await.unwrap();

    // Act
    sender.deliver_now(&enqueued).await;

    // Assert: both accepted and recorded before the call returns, none left to the relay.
    let mut delivered = receiver.delivered.lock().unwrap().clone();
    delivered.sort();
    assert_eq!(
        delivered,
        ["identity.notify_employee", "settlement.record_schedule"]
    );
    assert_eq!(pending_count(&test_db.db).await.unwrap(), 0);
    assert_eq!(failed_count(&test_db.db).await.unwrap(), 0);
}

/// Creates a table of a transaction's own rows, for batches; returns the backend.
async fn batch_rows(test_db: &TestDb) -> DbBackend {
    test_db
        .db
        .execute_unprepared("CREATE TABLE batch_row (k TEXT PRIMARY KEY, v BIGINT NOT NULL)")
        .await
        .unwrap();
    test_db.db.get_database_backend()
}

/// The statement that inserts the row `k` with `v` into [`batch_rows`]' table.
fn batch_row(backend: DbBackend, k: &str, v: i64) -> Statement {
    let sql = match backend {
        DbBackend::Postgres => "INSERT INTO batch_row (k, v) VALUES ($1, $2)",
        _ => "INSERT INTO batch_row (k, v) VALUES (?, ?)",
    };
    Statement::from_sql_and_values(backend, sql, [k.into(), v.into()])
}

#[tokio::test]
async fn a_batch_writes_messages_with_the_transactions_own_statements_and_reads_their_ids() {
    // Arrange: a table of the transaction's own, and one message already there.
    let test_db = test_db::<TestMigrator>().await;
    let backend = batch_rows(&test_db).await;
    let before = commit_messages(
        &test_db,
        vec![Message::new(
            "identity.notify_employee",
            "sms-0",
            b"old".to_vec(),
        )],
    )
    .await;
    let row = |k: &str, v: i64| batch_row(backend, k, v);

    // Act: a row, two new messages and a repeated one, another row; one batch.
    let txn = crate::db::begin_write(&test_db.db).await.unwrap();
    let (messages, written) = enqueue_statements(
        backend,
        vec![
            Message::new("settlement.record_schedule", "p-1", b"schedule".to_vec()),
            Message::new("identity.notify_employee", "sms-0", b"again".to_vec()),
            Message::new("identity.notify_employee", "sms-1", b"receipt".to_vec()),
        ],
    );
    let mut statements = vec![row("a", 1)];
    statements.extend(messages);
    statements.push(row("b", -1));
    let rows = crate::db::batch(&txn, statements).await.unwrap();
    let enqueued = written.enqueued(rows).unwrap();
    txn.commit().await.unwrap();

    // Assert: every statement ran with its own values; the ids are the new messages'.
    let stored = test_db
        .db
        .query_all_raw(Statement::from_string(
            backend,
            "SELECT k, v FROM batch_row ORDER BY k",
        ))
        .await
        .unwrap()
        .iter()
        .map(|row| {
            (
                row.try_get::<String>("", "k").unwrap(),
                row.try_get::<i64>("", "v").unwrap(),
            )
        })
        .collect::<Vec<_>>();
    assert_eq!(stored, [("a".to_owned(), 1), ("b".to_owned(), -1)]);
    assert_eq!(enqueued.ids().len(), 2, "the repeated message is not new");
    assert!(enqueued.ids().iter().all(|id| *id > before.ids()[0]));
    let pending = undelivered(&test_db.db, false, 10).await.unwrap();
    let mut keys: Vec<String> = pending.iter().map(|m| m.dedup_key.clone()).collect();
    keys.sort();
    assert_eq!(keys, ["p-1", "sms-0", "sms-1"]);
}

#[tokio::test]
async fn a_batch_that_fails_on_a_statement_writes_nothing_once_rolled_back() {
    // Arrange: a row already there, which the batch's last statement repeats.
    let test_db = test_db::<TestMigrator>().await;
    let backend = batch_rows(&test_db).await;
    test_db
        .db
        .execute_raw(batch_row(backend, "taken", 0))
        .await
        .unwrap();
    let insert = |k: &str| batch_row(backend, k, 1);

    // Act
    let txn = crate::db::begin_write(&test_db.db).await.unwrap();
    let (messages, _) = enqueue_statements(
        backend,
        vec![Message::new(
            "settlement.record_schedule",
            "p-1",
            b"s".to_vec(),
        )],
    );
    let mut statements = vec![insert("new")];
    statements.extend(messages);
    statements.push(insert("taken"));
    let error = crate::db::batch(&txn, statements).await.unwrap_err();
    drop(txn);

    // Assert: the unique key's error, as a lone statement would give it; nothing kept.
    assert!(
        matches!(
            error.sql_err(),
            Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
        ),
        "{error}"
    );
    let rows = test_db
        .db
        .query_all_raw(Statement::from_string(backend, "SELECT k FROM batch_row"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "only the row that was there");
    assert_eq!(pending_count(&test_db.db).await.unwrap(), 0);
}

#[tokio::test]
async fn a_batch_refuses_a_statement_that_binds_by_number_on_sqlite() {
    let test_db = test_db::<TestMigrator>().await;
    if test_db.is_postgres() {
        return; // PostgreSQL sends each statement on its own, numbered as it is.
    }
    let txn = crate::db::begin_write(&test_db.db).await.unwrap();
    let numbered = |sql: &str| Statement::from_sql_and_values(DbBackend::Sqlite, sql, [1.into()]);
    let error = crate::db::batch(&txn, vec![numbered("SELECT ?"), numbered("SELECT ?1")])
        .await
        .unwrap_err();
    assert!(error.to_string().contains("binds by number"), "{error}");
}

#[tokio::test]
async fn a_leased_message_whose_receiver_fails_is_retried_by_the_relay() {
    // Arrange: the receiver refuses the sender's immediate delivery once.
    let test_db = test_db::<TestMigrator>().await;
    let recorder = Recorder::failing(1);
    let sender = handle_only(&test_db, recorder.clone(), fast_config()).await;
    let txn = test_db.db.begin().await.unwrap();
    let enqueued = sender
        .enqueue(
            &txn,
            vec![Message::new(
                "credit.open_facility",
                "req-1",
                b"open".to_vec(),
            )],
        )
        .await
        .unwrap();
    txn.commit().await.unwrap();

    // Act
    sender.deliver_now(&enqueued).await;

    // Assert: the failed try is counted and its lease given up, so a relay retries it
    // after its backoff rather than after the lease.
    let id = enqueued.ids()[0];
    assert_eq!(lease_of(&test_db, id).await, None);
    assert_eq!(recorder.total_tries.load(Ordering::SeqCst), 1);
    assert_eq!(pending_count(&test_db.db).await.unwrap(), 1);
    let relay = start(&test_db, recorder.clone());
    eventually("the relay's retry", async || {
        pending_count(&test_db.db).await.unwrap() == 0
    })
    .await;
    assert_eq!(
        recorder.delivered(),
        [("credit.open_facility".to_owned(), b"open".to_vec())]
    );
    relay.stop().await;
}

#[tokio::test]
async fn a_sender_that_dies_before_delivering_leaves_its_leased_messages_to_the_relay() {
    // Arrange: a sender whose leases end at once writes a message and never delivers it.
    let test_db = test_db::<TestMigrator>().await;
    let recorder = Arc::new(Recorder::default());
    let config = RelayConfig {
        lease: Duration::ZERO,
        ..fast_config()
    };
    let sender = handle_only(&test_db, recorder.clone(), config).await;
    let txn = test_db.db.begin().await.unwrap();
    sender
        .enqueue(
            &txn,
            vec![Message::new(
                "identity.notify_employee",
                "sms-1",
                b"sms".to_vec(),
            )],
        )
        .await
        .unwrap();
    txn.commit().await.unwrap();
    drop(sender);

    // Act: another process's relay sweeps.
    let relay = start(&test_db, recorder.clone());

    // Assert
    eventually("the relay's delivery", async || {
        pending_count(&test_db.db).await.unwrap() == 0
    })
    .await;
    assert_eq!(
        recorder.delivered(),
        [("identity.notify_employee".to_owned(), b"sms".to_vec())]
    );
    relay.stop().await;
}

#[tokio::test]
async fn deliveries_of_concurrent_senders_are_recorded_in_one_write() {
    // Arrange: five senders' messages, leased to them; the turn to record is taken, as by
    // a sender whose write waits for the database.
    let test_db = test_db::<TestMigrator>().await;
    let courier = Arc::new(Courier::new(
        test_db.db.clone(),
        Arc::new(Recorder::default()),
        fast_config(),
    ));
    let mut ids = Vec::new();
    for n in 0..5 {
        let enqueued =
            commit_messages(&test_db, vec![Message::new("t", format!("m-{n}"), vec![n])]).await;
        ids.push(enqueued.ids()[0]);
    }
    let turn = courier.records.turn.lock().await;

    // Act: each sender records its own delivery while the turn is taken, then it is free.
    let senders: Vec<_> = ids
        .iter()
        .map(|id| {
            let courier = courier.clone();
            let id = *id;
            tokio::spawn(async move { courier.record_delivered(&[id]).await })
        })
        .collect();
    while courier.records.waiting().len() < ids.len() {
        tokio::task::yield_now().await;
    }
    drop(turn);
    let mut recorded = Vec::new();
    for sender in senders {
        recorded.push(sender.await.unwrap());
    }

    // Assert: every sender was told its delivery is recorded, and one write recorded them
    // all (one delivery time for all five).
    assert_eq!(recorded, [true; 5]);
    assert_eq!(pending_count(&test_db.db).await.unwrap(), 0);
    let times = test_db
        .db
        .query_one(
            &Query::select()
                .expr(Expr::cust("COUNT(DISTINCT delivered_at)"))
                .expr(Expr::cust("COUNT(delivered_at)"))
                .from(Outbox::Table)
                .to_owned(),
        )
        .await
        .unwrap()
        .unwrap()
        .try_get_many_by_index::<(i64, i64)>()
        .unwrap();
    assert_eq!(times, (1, 5));
    assert!(courier.records.waiting().is_empty());
}

/// The plan SQLite makes for `sql` (its `EXPLAIN QUERY PLAN` lines).
async fn sqlite_plan(db: &DatabaseConnection, sql: &str) -> String {
    db.query_all_raw(Statement::from_string(
        DbBackend::Sqlite,
        format!("EXPLAIN QUERY PLAN {sql}"),
    ))
    .await
    .unwrap()
    .iter()
    .map(|row| row.try_get::<String>("", "detail").unwrap())
    .collect::<Vec<_>>()
    .join("; ")
}

#[tokio::test]
async fn each_outbox_read_has_its_narrow_index_and_the_old_ones_come_back_down() {
    // Arrange
    let test_db = test_db::<TestMigrator>().await;
    let db = &test_db.db;
    let names = |indexes: Vec<(String, String)>| {
        indexes
            .into_iter()
            .map(|(name, _)| name)
            .filter(|name| name.starts_with("ix_"))
            .collect::<Vec<_>>()
    };

    // Assert: the narrow indexes, each the one its read takes.
    assert_eq!(
        names(crate::testing::table_indexes(db, "outbox").await),
        [
            "ix_outbox_delivered",
            "ix_outbox_failed",
            "ix_outbox_ordered",
            "ix_outbox_pending"
        ]
    );
    if !test_db.is_postgres() {
        let plans = [
            (
                "SELECT 1 FROM outbox e WHERE e.ordering_key = 'k' AND e.id < 9 \
                 AND e.delivered_at IS NULL",
                "ix_outbox_ordered",
            ),
            (
                "SELECT id FROM outbox WHERE delivered_at IS NULL AND failed_at IS NOT NULL \
                 ORDER BY id LIMIT 10",
                "ix_outbox_failed",
            ),
            (
                "SELECT id FROM outbox WHERE delivered_at IS NULL AND failed_at IS NULL \
                 AND next_attempt_at <= 0 ORDER BY id LIMIT 10",
                "ix_outbox_pending",
            ),
            (
                "DELETE FROM outbox WHERE topic = 't' AND delivered_at < 0",
                "ix_outbox_delivered",
            ),
        ];
        for (sql, index) in plans {
            let plan = sqlite_plan(db, sql).await;
            assert!(plan.contains(index), "{sql}: {plan}");
        }
    }

    // Act: the migrations rolled back.
    TestMigrator::down(db, Some(2)).await.unwrap();

    // Assert
    assert_eq!(
        names(crate::testing::table_indexes(db, "outbox").await),
        [
            "ix_outbox_next_attempt_at",
            "ix_outbox_ordering_key",
            "ix_outbox_pending"
        ]
    );
    TestMigrator::up(db, None).await.unwrap();
}

#[tokio::test]
async fn undelivered_lists_the_oldest_of_pending_and_failed_together() {
    // Arrange: failed, pending, delivered and pending again, in id order.
    let test_db = test_db::<TestMigrator>().await;
    let db = &test_db.db;
    for key in ["1", "2", "3", "4"] {
        enqueue(db, "t", key, key.as_bytes().to_vec())
            .await
            .unwrap();
    }
    db.execute_unprepared("UPDATE outbox SET failed_at = created_at WHERE dedup_key = '1'")
        .await
        .unwrap();
    db.execute_unprepared("UPDATE outbox SET delivered_at = created_at WHERE dedup_key = '3'")
        .await
        .unwrap();

    // Act
    let keys = |entries: Vec<OutboxEntry>| {
        entries
            .into_iter()
            .map(|entry| entry.dedup_key)
            .collect::<Vec<_>>()
    };
    let two = keys(undelivered(db, false, 2).await.unwrap());
    let all = keys(undelivered(db, false, 10).await.unwrap());
    let failed = keys(undelivered(db, true, 10).await.unwrap());

    // Assert
    assert_eq!(two, ["1", "2"]);
    assert_eq!(all, ["1", "2", "4"]);
    assert_eq!(failed, ["1"]);
}

#[tokio::test]
async fn outbox_rows_keep_their_ids_through_the_rebuild_without_a_sequence_both_ways() {
    // Arrange: three messages.
    let test_db = test_db::<TestMigrator>().await;
    let db = &test_db.db;
    for key in ["1", "2", "3"] {
        enqueue(db, "t", key, key.as_bytes().to_vec())
            .await
            .unwrap();
    }
    let ids = |db: &DatabaseConnection| {
        let db = db.clone();
        async move {
            db.query_all_raw(Statement::from_string(
                db.get_database_backend(),
                "SELECT id, dedup_key FROM outbox ORDER BY id",
            ))
            .await
            .unwrap()
            .iter()
            .map(|row| {
                (
                    row.try_get::<i64>("", "id").unwrap(),
                    row.try_get::<String>("", "dedup_key").unwrap(),
                )
            })
            .collect::<Vec<_>>()
        }
    };
    let before = ids(db).await;
    let sequenced = |db: &DatabaseConnection| {
        let db = db.clone();
        async move {
            db.query_one_raw(Statement::from_string(
                DbBackend::Sqlite,
                "SELECT sql FROM sqlite_master WHERE name = 'outbox'",
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get::<String>("", "sql")
            .unwrap()
            .contains("AUTOINCREMENT")
        }
    };

    // Act: rolled back and applied again.
    TestMigrator::down(db, Some(1)).await.unwrap();
    let down = ids(db).await;
    let down_sequenced = !test_db.is_postgres() && sequenced(db).await;
    TestMigrator::up(db, None).await.unwrap();
    enqueue(db, "t", "4", b"4".to_vec()).await.unwrap();

    // Assert: every row with its id both ways, SQLite's ids without a sequence after it,
    // still rising, and the narrow indexes made again.
    assert_eq!(down, before);
    let after = ids(db).await;
    assert_eq!(after[..3], before[..]);
    assert!(after[3].0 > before[2].0, "{after:?}");
    if !test_db.is_postgres() {
        assert!(down_sequenced);
        assert!(!sequenced(db).await);
        let plan = sqlite_plan(
            db,
            "SELECT id FROM outbox WHERE delivered_at IS NULL AND failed_at IS NOT NULL \
             ORDER BY id",
        )
        .await;
        assert!(plan.contains("ix_outbox_failed"), "{plan}");
    }
    assert_eq!(
        crate::testing::table_indexes(db, "outbox").await.len(),
        if test_db.is_postgres() { 6 } else { 5 },
        "the dedup key's index, the four narrow ones and PostgreSQL's of the key"
    );
}
