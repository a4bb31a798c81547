//! R12: the facility is opened exactly once even when the process dies between the
//! commit of the approval and the delivery of its message.

use sea_orm::{ConnectionTrait, Statement};

use crate::spawn_app_with_credit;

async fn open_facility_attempts(app: &crate::TestApp) -> i64 {
    let backend = app.db.db.get_database_backend();
    let row = app
        .db
        .db
        .query_one_raw(Statement::from_string(
            backend,
            "SELECT attempts FROM outbox WHERE topic = 'credit.open_facility'",
        ))
        .await
        .unwrap();
    match row {
        Some(row) => {
            let attempts: i32 = row.try_get("", "attempts").unwrap();
            i64::from(attempts)
        }
        None => -1,
    }
}

#[tokio::test]
async fn r12_approval_committed_while_credit_is_down_opens_the_facility_once_after_restart() {
    // Credit is unreachable: the approval commits with its outbox row, delivery fails.
    let mut app = spawn_app_with_credit(false).await;
    let applicant = app.employee();
    let guarantor = app.employee();
    let approved = app.approved_request(&applicant, &guarantor).await;
    let id = approved.request_id.clone();
    app.wait_until(async || open_facility_attempts(&app).await >= 1)
        .await;
    assert_eq!(app.credit.calls_for(&id), 0);

    // The process "dies" and comes back with credit reachable: the new relay delivers.
    app.restart_with_credit_up().await;
    app.wait_until(async || app.outbox_pending().await == 0)
        .await;

    assert_eq!(app.credit.calls_for(&id), 1);
    assert_eq!(app.credit.facility_count(), 1);
    let facility = app.credit.facility(&id).unwrap();
    assert_eq!(facility.credit_request_id, id);
    assert_eq!(
        facility.activates_at.unwrap().seconds,
        approved.activates_at.unwrap().seconds
    );
}

/// The outbox's large payloads (a remittance's or a close's batches) are compressed with
/// LZ4 on PostgreSQL, where the server has it (it does here).
#[tokio::test]
async fn outbox_payloads_compress_with_lz4_on_postgres() {
    let db = tavana_kit::testing::test_db::<tavana_guarantee_migration::Migrator>().await;
    let compression = tavana_kit::testing::outbox_payload_compression(&db.db).await;
    assert_eq!(compression, db.is_postgres().then_some("lz4"));
}
