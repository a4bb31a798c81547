//! Credit hears of a fully settled purchase exactly once (R18, R23), through the outbox.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tavana_kit::outbox::{OutboxRelay, RelayConfig};
use tavana_kit::testing::wait_until;
use tavana_settlement::delivery::NOTIFY_EMPLOYEES;

use crate::{PERIOD, RecordingDelivery, national_id, schedule, spawn_service};

#[tokio::test]
async fn r23_credit_is_told_once_when_the_last_instalment_is_settled_even_when_replayed() {
    let app = spawn_service().await;
    app.record(schedule("P1", 1, PERIOD, &[30, 30])).await;

    app.remit("BR-1", PERIOD, &[(national_id(1), 30)])
        .await
        .unwrap();
    app.wait_for(|d| d.notifications().len() == 1).await;
    assert!(app.delivery.settled_purchases().is_empty());

    app.remit("BR-2", "1405-10", &[(national_id(1), 30)])
        .await
        .unwrap();
    let replay = app
        .remit("BR-2", "1405-10", &[(national_id(1), 30)])
        .await
        .unwrap();
    assert!(replay.replayed);

    app.wait_for(|d| d.settled_purchases() == ["P1"] && d.notifications().len() == 2)
        .await;
    assert_eq!(app.delivery.count(NOTIFY_EMPLOYEES), 2);
    assert_eq!(app.settled_messages_naming("P1").await, 1);
    // A third remittance finds nothing due and tells credit nothing more.
    app.remit("BR-3", "1405-10", &[(national_id(1), 30)])
        .await
        .unwrap();
    assert_eq!(app.settled_messages_naming("P1").await, 1);
}

#[tokio::test]
async fn r23_a_message_committed_while_the_relay_was_down_is_delivered_by_the_next_relay() {
    let app = spawn_service().await;
    // The service's own relay "crashes": every delivery fails from the commit on.
    app.delivery.failing.store(true, Ordering::SeqCst);
    app.record(schedule("P1", 1, PERIOD, &[30])).await;

    app.remit("BR-1", PERIOD, &[(national_id(1), 30)])
        .await
        .unwrap();

    // A new relay (a restarted replica) takes over the committed message.
    let next = Arc::new(RecordingDelivery::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let config = RelayConfig {
        poll_interval: Duration::from_millis(20),
        min_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        ..RelayConfig::default()
    };
    let (_handle, relay) =
        OutboxRelay::spawn_with_config(app.db.db.clone(), next.clone(), config, async move {
            let _ = stopped.await;
        });
    wait_until(
        "the new relay delivers",
        Duration::from_secs(20),
        async || !next.settled_purchases().is_empty(),
    )
    .await;

    assert_eq!(next.settled_purchases(), ["P1"]);
    assert!(app.delivery.settled_purchases().is_empty());
    assert_eq!(app.settled_messages_naming("P1").await, 1);
    let _ = stop.send(());
    relay.await.unwrap();
}

/// The outbox's large payloads (a remittance's or a close's batches) are compressed with
/// LZ4 on PostgreSQL, where the server has it (it does here).
#[tokio::test]
async fn outbox_payloads_compress_with_lz4_on_postgres() {
    let db = tavana_kit::testing::test_db::<tavana_settlement_migration::Migrator>().await;
    let compression = tavana_kit::testing::outbox_payload_compression(&db.db).await;
    assert_eq!(compression, db.is_postgres().then_some("lz4"));
}
