use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use sea_orm::TransactionTrait;
use sea_orm_migration::prelude::*;
use tokio::sync::oneshot;

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

struct TestMigrator;

impl MigratorTrait for TestMigrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(CreateOutbox)]
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
        if self.permanent {
            return Err(DeliveryError::Permanent("receiver refused".into()));
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
    tokio::time::sleep(Duration::from_millis(300)).await;

    assert!(recorder.delivered().is_empty());
    assert_eq!(pending_count(&test_db.db).await.unwrap(), 0);
    relay.stop().await;
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
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        recorder.delivered(),
        [("credit.open".to_owned(), b"payload".to_vec())]
    );
    assert_eq!(pending_count(&test_db.db).await.unwrap(), 0);
    relay.stop().await;
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

    eventually("delivery", async || !recorder.delivered().is_empty()).await;
    assert_eq!(recorder.total_tries.load(Ordering::SeqCst), 3);
    assert_eq!(recorder.delivered().len(), 1);
    assert_eq!(pending_count(&test_db.db).await.unwrap(), 0);
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
    tokio::time::sleep(Duration::from_millis(300)).await;

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
    relay.stop().await;
}

#[tokio::test]
async fn leased_row_waits_until_the_lease_expires() {
    let test_db = test_db::<TestMigrator>().await;
    enqueue(&test_db.db, "credit.open", "req-1", b"x".to_vec())
        .await
        .unwrap();
    // A replica claimed the row and died mid-delivery.
    let lease_until = Utc::now() + chrono::Duration::milliseconds(700);
    test_db
        .db
        .execute(
            &Query::update()
                .table(Outbox::Table)
                .value(Outbox::LeaseUntil, lease_until)
                .to_owned(),
        )
        .await
        .unwrap();
    let recorder = Arc::new(Recorder::default());
    let relay = start(&test_db, recorder.clone());

    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(recorder.delivered().is_empty());
    eventually("delivery after the lease", async || {
        recorder.delivered().len() == 1
    })
    .await;
    assert!(Utc::now() >= lease_until);
    relay.stop().await;
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
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut payloads: Vec<Vec<u8>> = recorder.delivered().into_iter().map(|(_, p)| p).collect();
    payloads.sort();
    let mut expected: Vec<Vec<u8>> = (0..200).map(|n: i32| n.to_string().into_bytes()).collect();
    expected.sort();
    assert_eq!(payloads, expected);
    first.stop().await;
    second.stop().await;
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

    assert!(error.to_string().contains("m20250101_000000_create_outbox"));
}

#[tokio::test]
async fn connect_and_migrate_is_repeatable() {
    let test_db = test_db::<TestMigrator>().await;

    let db = crate::db::connect_and_migrate::<TestMigrator>(&test_db.url, 2)
        .await
        .unwrap();

    assert_eq!(pending_count(&db).await.unwrap(), 0);
}
