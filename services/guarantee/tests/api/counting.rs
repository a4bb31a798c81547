//! R8, R9, R13: the SQL conditions the store counts with agree with the domain rules
//! `holds_guarantee` and `blocks_new_request` for every status and release flag, on the
//! backend under test.

use chrono::Utc;
use sea_orm::{ActiveModelTrait, IntoActiveModel};
use tavana_guarantee::domain::RequestStatus;
use tavana_guarantee::domain::status::{blocks_new_request, holds_guarantee};
use tavana_guarantee::error::GuaranteeError;
use tavana_guarantee::store::{Store, credit_request};
use tavana_guarantee_migration::Migrator;
use tavana_kit::outbox::OutboxHandle;
use tavana_kit::testing::test_db;

/// Returns a request row of `status` with `released`, filed by `applicant` and
/// guaranteed by `guarantor`.
fn request_row(
    id: &str,
    applicant: &str,
    guarantor: &str,
    status: RequestStatus,
    released: bool,
) -> credit_request::Model {
    let now = Utc::now();
    credit_request::Model {
        id: id.to_owned(),
        applicant_employee_id: applicant.to_owned(),
        applicant_national_id: format!("N-{applicant}"),
        applicant_full_name: "متقاضی".to_owned(),
        applicant_organization_id: "org".to_owned(),
        region_code: "R1".to_owned(),
        guarantor_employee_id: format!("E-{guarantor}"),
        guarantor_national_id: guarantor.to_owned(),
        guarantor_full_name: "ضامن".to_owned(),
        monthly_credit: 1_000,
        instalment_months: 12,
        status: status.as_str().to_owned(),
        released,
        created_at: now,
        created_micros: now.timestamp_micros(),
        approved_at: None,
        activates_at: None,
        released_at: None,
        version: 0,
    }
}

#[tokio::test]
async fn r8_r9_sql_counts_agree_with_the_domain_rules_for_every_status() {
    // Arrange: one request per (status, released), each with its own applicant and
    // guarantor, so each count sees exactly one row.
    let db = test_db::<Migrator>().await;
    let store = Store::new(db.db.clone());
    let mut cases = Vec::new();
    for (index, status) in RequestStatus::ALL.into_iter().enumerate() {
        for released in [false, true] {
            let key = format!("{index}-{released}");
            let (applicant, guarantor) = (format!("A{key}"), format!("G{key}"));
            request_row(&format!("R{key}"), &applicant, &guarantor, status, released)
                .into_active_model()
                .reset_all()
                .insert(&db.db)
                .await
                .unwrap();
            cases.push((status, released, applicant, guarantor));
        }
    }

    for (status, released, applicant, guarantor) in cases {
        // Act: the guarantor's count (R8, S4) and a new filing by the applicant (R9),
        // stopped by `decide` before anything is written.
        let held = store.guarantees_held(&guarantor).await.unwrap();
        let filing = store
            .file(&OutboxHandle::default(), &applicant, "9999999999", |_| {
                Err(GuaranteeError::Internal(anyhow::anyhow!("decide reached")))
            })
            .await;

        // Assert
        assert_eq!(
            held == 1,
            holds_guarantee(status, released),
            "R8 count for {status} released={released}"
        );
        assert_eq!(
            matches!(filing, Err(GuaranteeError::OpenRequestExists)),
            blocks_new_request(status, released),
            "R9 open request for {status} released={released}: {:?}",
            filing.as_ref().err()
        );
    }
}
