//! `tavana admin reconcile` (R31): credit's purchases, read page by page straight from its
//! database, against settlement's instalments, read from its own, with the same comparison
//! the `GET /v1/admin/reconciliation` route runs inside settlement.

use std::path::Path;

use anyhow::Context;
use async_trait::async_trait;
use tavana_credit::store::Store as CreditStore;
use tavana_proto::credit::v1::PurchaseLedgerEntry;
use tavana_settlement::SettlementError;
use tavana_settlement::domain::reconcile::Report;
use tavana_settlement::reconcile::{Ledger, PAGE_SIZE, RangeDigest, reconcile};
use tavana_settlement::store::Store as SettlementStore;

use crate::suite::{SuiteSettings, default_sqlite};

/// Credit's ledger read from its database.
struct DatabaseLedger(CreditStore);

#[async_trait]
impl Ledger for DatabaseLedger {
    async fn page(
        &self,
        after: &str,
        page_size: u32,
    ) -> Result<(Vec<PurchaseLedgerEntry>, bool), SettlementError> {
        tavana_credit::service::purchase_ledger(&self.0, after, page_size)
            .await
            .map_err(|error| SettlementError::Unavailable(format!("credit's database: {error}")))
    }

    async fn digest(&self, after: &str, page_size: u32) -> Result<RangeDigest, SettlementError> {
        tavana_credit::service::purchase_ledger_digest(&self.0, after, page_size)
            .await
            .map(RangeDigest::from_message)
            .map_err(|error| SettlementError::Unavailable(format!("credit's database: {error}")))
    }
}

/// Compares credit's and settlement's databases, as configured for `tavana up` with the
/// same data directory.
pub async fn run(settings: &SuiteSettings, data_dir: &Path) -> anyhow::Result<Report> {
    let mut credit = settings.credit.clone();
    default_sqlite(
        &mut credit.database,
        &tavana_credit::Settings::default().database,
        data_dir,
        "credit",
    );
    let mut settlement = settings.settlement.clone();
    default_sqlite(
        &mut settlement.database,
        &tavana_settlement::Settings::default().database,
        data_dir,
        "settlement",
    );
    let credit_db = tavana_credit::connect(&credit)
        .await
        .context("cannot open credit's database")?;
    let settlement_db = tavana_settlement::connect(&settlement)
        .await
        .context("cannot open settlement's database")?;
    let ledger = DatabaseLedger(CreditStore::new(credit_db, None));
    Ok(reconcile(&ledger, &SettlementStore::new(settlement_db), PAGE_SIZE).await?)
}

/// Prints a report: one line per difference, then the count.
pub fn print(report: &Report) {
    for mismatch in &report.mismatches {
        println!(
            "{}\t{}\tcredit {}\tsettlement {}\t{}",
            mismatch.purchase_id,
            mismatch.national_id,
            mismatch.credit_amount,
            mismatch.settlement_amount,
            mismatch.detail
        );
    }
    println!(
        "{} purchases checked, {} differences",
        report.checked_purchases,
        report.mismatches.len()
    );
}
