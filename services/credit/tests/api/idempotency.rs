//! R19: idempotency and concurrency (per-facility serialisation).

use std::collections::HashSet;

use futures::future::join_all;
use tavana_proto::credit::v1::{self as pb, PurchaseKind};
use tonic::Status;

use crate::helpers::*;

/// Every answer names the same purchase, and only one of them is not a replay (R19).
fn assert_one_purchase_created_once(answers: &[Result<pb::CreatePurchaseResponse, Status>]) {
    let ids: HashSet<String> = answers
        .iter()
        .map(|answer| {
            answer
                .as_ref()
                .expect("every duplicate gets the first answer")
                .purchase
                .clone()
                .unwrap()
                .purchase_id
        })
        .collect();
    assert_eq!(ids.len(), 1);
    assert_eq!(
        answers
            .iter()
            .filter(|a| !a.as_ref().unwrap().replayed)
            .count(),
        1
    );
}

#[tokio::test]
async fn r19_same_key_and_body_replays_the_first_answer() {
    let app = spawn_service().await;
    app.open_facility("E1", 1_000, 3).await;

    let first = app
        .buy("E1", SHOP, PurchaseKind::Instalment, 300, 3, "key")
        .await
        .unwrap();
    let second = app
        .buy("E1", SHOP, PurchaseKind::Instalment, 300, 3, "key")
        .await
        .unwrap();

    assert!(!first.replayed);
    assert!(second.replayed);
    assert_eq!(first.purchase, second.purchase);
    assert_eq!(app.room("E1").await, (900, 2_700));
}

#[tokio::test]
async fn r19_same_key_other_body_is_refused() {
    let app = spawn_service().await;
    app.open_facility("E1", 1_000, 3).await;
    app.buy("E1", SHOP, PurchaseKind::Credit, 300, 0, "key")
        .await
        .unwrap();

    let other = app
        .buy("E1", SHOP, PurchaseKind::Credit, 301, 0, "key")
        .await;

    let problem = problem(other);
    assert_eq!(problem.code, "idempotency_key_reused");
    assert_eq!(problem.kind, tavana_kit::error::ErrorKind::RuleRefused);
}

#[tokio::test]
async fn r19_keys_are_per_caller() {
    let app = spawn_service().await;
    app.open_facility("E1", 1_000, 3).await;
    app.open_facility("E2", 1_000, 3).await;

    let first = app
        .buy("E1", SHOP, PurchaseKind::Credit, 300, 0, "key")
        .await
        .unwrap();
    let second = app
        .buy("E2", SHOP, PurchaseKind::Credit, 300, 0, "key")
        .await
        .unwrap();

    assert!(!second.replayed);
    assert_ne!(
        first.purchase.unwrap().purchase_id,
        second.purchase.unwrap().purchase_id
    );
}

#[tokio::test]
async fn r19_sixteen_concurrent_requests_with_one_key_create_one_purchase() {
    let app = spawn_service().await;
    app.open_facility("E1", 1_000_000, 3).await;

    let answers =
        join_all((0..16).map(|_| app.buy("E1", SHOP, PurchaseKind::Credit, 1_000, 0, "same-key")))
            .await;

    assert_one_purchase_created_once(&answers);
    assert_eq!(app.room("E1").await, (999_000, 2_999_000));
}

#[tokio::test]
async fn r19_r16_concurrent_requests_with_one_key_that_spend_the_whole_room_all_get_the_first_answer()
 {
    let app = spawn_service().await;
    app.open_facility("E1", 1_000_000, 3).await;

    // Under the facility's lock, every request after the first sees the first one's hold
    // and no room left: each must still answer the first answer, not "insufficient".
    let answers = join_all(
        (0..8).map(|_| app.buy("E1", SHOP, PurchaseKind::Credit, 1_000_000, 0, "whole-room")),
    )
    .await;

    assert_one_purchase_created_once(&answers);
    assert_eq!(app.room("E1").await, (0, 2_000_000));
}

#[tokio::test]
async fn r19_sixty_four_parallel_purchases_never_overdraw_either_budget() {
    let app = spawn_service().await;
    // M = 1_000, N = 2: P = 2_000. Credit purchases of 70 fit 14 times in M; instalment
    // purchases of 100 over 2 hold 50 in M and 100 in P.
    app.open_facility("E1", 1_000, 2).await;

    let answers = join_all((0..64).map(|index| {
        let (kind, amount, months) = if index % 2 == 0 {
            (PurchaseKind::Credit, 70, 0)
        } else {
            (PurchaseKind::Instalment, 100, 2)
        };
        let key = format!("key-{index}");
        let app = &app;
        async move { app.buy("E1", SHOP, kind, amount, months, &key).await }
    }))
    .await;

    let mut held_monthly = 0;
    let mut held_total = 0;
    for answer in &answers {
        match answer {
            Ok(answer) => {
                let purchase = answer.purchase.as_ref().unwrap();
                if purchase.kind == PurchaseKind::Credit as i32 {
                    held_monthly += purchase.amount;
                } else {
                    held_monthly += (purchase.amount + 1) / 2;
                }
                held_total += purchase.amount;
            }
            Err(status) => {
                assert_eq!(
                    tavana_kit::error::Problem::from_status(status).code,
                    "insufficient_credit"
                );
            }
        }
    }
    assert!(held_monthly <= 1_000, "monthly overdrawn: {held_monthly}");
    assert!(held_total <= 2_000, "total overdrawn: {held_total}");
    let (monthly, total) = app.room("E1").await;
    assert_eq!(monthly, 1_000 - held_monthly);
    assert_eq!(total, 2_000 - held_total);
    assert!(
        answers.iter().any(Result::is_err),
        "64 purchases cannot all fit"
    );
}

#[tokio::test]
async fn r19_the_upkeep_purges_keys_past_twice_their_retention_and_keeps_the_rest() {
    let app = spawn_service().await;
    app.open_facility("E1", 1_000, 3).await;
    let started = app.clock_now();
    let retention = chrono::Duration::hours(2 * tavana_credit::domain::idempotency::KEEP_HOURS);
    app.buy("E1", SHOP, PurchaseKind::Credit, 1, 0, "old")
        .await
        .unwrap();
    app.advance(chrono::Duration::minutes(1));
    app.buy("E1", SHOP, PurchaseKind::Credit, 2, 0, "edge")
        .await
        .unwrap();
    let edge_at = app.clock_now();
    app.advance(retention - chrono::Duration::minutes(2));
    app.buy("E1", SHOP, PurchaseKind::Credit, 3, 0, "fresh")
        .await
        .unwrap();

    // A purge exactly at the edge key's retention: older goes, the edge key stays.
    let purged = app
        .store
        .purge_idempotency_records(edge_at + retention)
        .await
        .unwrap();

    assert_eq!(purged, 1, "only the key made before {started} + 1 min");
    // The purged key is free again: another body under it is a new purchase, not refused.
    let reused = app
        .buy("E1", SHOP, PurchaseKind::Credit, 4, 0, "old")
        .await
        .unwrap();
    assert!(!reused.replayed);
    for (key, amount) in [("edge", 2), ("fresh", 3)] {
        let again = app
            .buy("E1", SHOP, PurchaseKind::Credit, amount, 0, key)
            .await
            .unwrap();
        assert!(again.replayed, "{key} is still replayed");
    }
    assert_eq!(
        app.store
            .purge_idempotency_records(edge_at + retention)
            .await
            .unwrap(),
        0,
        "a second purge finds nothing"
    );
}

/// The names of the indexes of the idempotency records.
async fn idempotency_indexes(db: &sea_orm::DatabaseConnection) -> Vec<String> {
    tavana_kit::testing::table_indexes(db, "idempotency_record")
        .await
        .into_iter()
        .map(|(name, _)| name)
        .filter(|name| name.starts_with("idx_"))
        .collect()
}

#[tokio::test]
async fn r19_the_index_on_the_records_age_replaces_the_one_on_caller_and_age_both_ways() {
    let app = spawn_service().await;
    assert_eq!(
        idempotency_indexes(app.db()).await,
        ["idx_idempotency_created"]
    );

    app.migrate_down_to_before("m20261205_120000_index_idempotency_age")
        .await;
    assert_eq!(
        idempotency_indexes(app.db()).await,
        ["idx_idempotency_caller_created"]
    );
    app.migrate_up().await;
    assert_eq!(
        idempotency_indexes(app.db()).await,
        ["idx_idempotency_created"]
    );
}

#[tokio::test]
async fn r19_a_retry_answers_the_first_answer_after_its_room_and_the_contract_are_gone() {
    let app = spawn_service().await;
    app.open_facility("E1", 1_000, 3).await;
    let first = app
        .buy("E1", SHOP, PurchaseKind::Credit, 1_000, 0, "whole-room")
        .await
        .unwrap();

    // The first purchase took the whole monthly room, then the contract lapsed: a retry is
    // refused on either count as a new purchase, and answers the first answer instead.
    let retry_without_room = app
        .buy("E1", SHOP, PurchaseKind::Credit, 1_000, 0, "whole-room")
        .await
        .unwrap();
    app.set_contract_in_force(false);
    let retry_without_contract = app
        .buy("E1", SHOP, PurchaseKind::Credit, 1_000, 0, "whole-room")
        .await
        .unwrap();
    let reused = app
        .buy("E1", SHOP, PurchaseKind::Credit, 999, 0, "whole-room")
        .await;
    let fresh = app
        .buy("E1", SHOP, PurchaseKind::Credit, 1, 0, "fresh")
        .await;

    for retry in [&retry_without_room, &retry_without_contract] {
        assert!(retry.replayed);
        assert_eq!(retry.purchase, first.purchase);
    }
    assert_eq!(problem(reused).code, "idempotency_key_reused");
    assert_eq!(problem(fresh).code, "organization_contract_not_in_force");
    assert_eq!(app.room("E1").await, (0, 2_000));
}

/// Whether SQLite stores the records in their key's order (`None` on PostgreSQL).
async fn records_without_rowid(db: &sea_orm::DatabaseConnection) -> Option<bool> {
    tavana_kit::testing::sqlite_table_without_rowid(db, "idempotency_record").await
}

#[tokio::test]
async fn r19_a_record_answers_the_retry_whichever_way_sqlite_stores_it() {
    let app = spawn_service().await;
    app.open_facility("E1", 1_000, 3).await;
    let first = app
        .buy("E1", SHOP, PurchaseKind::Credit, 1, 0, "k")
        .await
        .unwrap();
    let sqlite = app.db().get_database_backend() == sea_orm::DbBackend::Sqlite;
    assert_eq!(
        records_without_rowid(app.db()).await,
        sqlite.then_some(true)
    );

    app.migrate_down_to_before("m20261207_230100_idempotency_records_without_rowid")
        .await;
    assert_eq!(
        records_without_rowid(app.db()).await,
        sqlite.then_some(false)
    );
    let down = app
        .buy("E1", SHOP, PurchaseKind::Credit, 1, 0, "k")
        .await
        .unwrap();
    app.migrate_up().await;
    let up = app
        .buy("E1", SHOP, PurchaseKind::Credit, 1, 0, "k")
        .await
        .unwrap();

    assert_eq!(
        records_without_rowid(app.db()).await,
        sqlite.then_some(true)
    );
    assert!(down.replayed && up.replayed);
    assert_eq!(down.purchase, first.purchase);
    assert_eq!(up.purchase, first.purchase);
    assert_eq!(app.room("E1").await, (999, 2_999), "one rial held, once");
    assert_eq!(
        idempotency_indexes(app.db()).await,
        ["idx_idempotency_created"]
    );
}
