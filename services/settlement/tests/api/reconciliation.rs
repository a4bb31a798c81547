//! R31's reconciliation over several pages: credit's ledger (held in memory here) against
//! the instalments the service recorded, whatever the page size, and a ledger that fails
//! half-way.

use async_trait::async_trait;
use tavana_proto::credit::v1::{PurchaseLedgerEntry, ScheduledInstalment};
use tavana_settlement::SettlementError;
use tavana_settlement::domain::reconcile::Report;
use tavana_settlement::reconcile::{Ledger, reconcile};

use crate::{PERIOD, TestApp, schedule, spawn_service};

/// Credit's purchases in id order, paged as `ListPurchaseLedger` pages them; the page after
/// `fails_after` is refused, as when credit is down.
struct MemoryLedger {
    entries: Vec<PurchaseLedgerEntry>,
    fails_after: Option<&'static str>,
}

#[async_trait]
impl Ledger for MemoryLedger {
    async fn page(
        &self,
        after: &str,
        page_size: u32,
    ) -> Result<(Vec<PurchaseLedgerEntry>, bool), SettlementError> {
        if self.fails_after == Some(after) {
            return Err(SettlementError::Unavailable("credit is down".into()));
        }
        let rest: Vec<&PurchaseLedgerEntry> = self
            .entries
            .iter()
            .filter(|entry| entry.purchase_id.as_str() > after)
            .collect();
        let size = usize::try_from(page_size).unwrap();
        let page = rest
            .iter()
            .take(size)
            .map(|entry| (*entry).clone())
            .collect();
        Ok((page, rest.len() <= size))
    }
}

/// Credit's side of a purchase of employee 1: its amount, refunds and schedule from
/// [`PERIOD`] on, scheduled as [`schedule`] records it in settlement.
fn purchase(purchase_id: &str, amount: i64, refunded: i64, amounts: &[i64]) -> PurchaseLedgerEntry {
    let recorded = schedule(purchase_id, 1, PERIOD, amounts);
    PurchaseLedgerEntry {
        purchase_id: recorded.purchase_id,
        national_id: recorded.national_id,
        amount,
        refunded_amount: refunded,
        schedule: recorded
            .instalments
            .into_iter()
            .map(|instalment| ScheduledInstalment {
                seq: instalment.seq,
                period: instalment.period,
                amount: instalment.amount,
            })
            .collect(),
        version: recorded.version,
    }
}

/// Settlement holds P01, P02, P04, P05, P07 and P09; credit knows P01, P02, P03, P05, P06
/// and P07. Differences: P03 (no instalment), P04 and P09 (unknown to credit; P09 after
/// credit's last purchase), P07 (a refund settlement did not apply, R20).
async fn both_sides() -> (TestApp, Vec<PurchaseLedgerEntry>) {
    let app = spawn_service().await;
    for (purchase_id, amounts) in [
        ("P01", &[1][..]),
        ("P02", &[34, 33, 33]),
        ("P04", &[7]),
        ("P05", &[1, 1]),
        ("P07", &[1, 1]),
        ("P09", &[2]),
    ] {
        app.record(schedule(purchase_id, 1, PERIOD, amounts)).await;
    }
    let ledger = vec![
        purchase("P01", 1, 0, &[1]),
        purchase("P02", 100, 0, &[34, 33, 33]),
        purchase("P03", 5, 0, &[5]),
        purchase("P05", 2, 0, &[1, 1]),
        purchase("P06", 3, 3, &[]),
        purchase("P07", 2, 1, &[1]),
    ];
    (app, ledger)
}

fn found(report: &Report) -> Vec<(&str, &str, i64, i64)> {
    report
        .mismatches
        .iter()
        .map(|m| {
            (
                m.purchase_id.as_str(),
                m.detail.as_str(),
                m.credit_amount.as_i64(),
                m.settlement_amount.as_i64(),
            )
        })
        .collect()
}

#[tokio::test]
async fn r31_every_page_size_pairs_both_sides_and_reports_the_differences_in_id_order() {
    let (app, entries) = both_sides().await;
    let ledger = MemoryLedger {
        entries,
        fails_after: None,
    };
    // 1 and 2 split the orphans P04 and P09 from their neighbours; 100 is one page.
    for page_size in [1, 2, 3, 100] {
        let report = reconcile(&ledger, &app.store, page_size).await.unwrap();

        assert_eq!(report.checked_purchases, 8, "page size {page_size}");
        assert_eq!(
            found(&report),
            [
                ("P03", "settlement holds no instalment", 5, 0),
                ("P04", "credit has no such purchase", 0, 7),
                ("P07", "period 1405-10: credit 0, settlement 1", 1, 2),
                ("P09", "credit has no such purchase", 0, 2),
            ],
            "page size {page_size}"
        );
    }
}

#[tokio::test]
async fn r31_a_ledger_that_fails_half_way_fails_the_reconciliation() {
    let (app, entries) = both_sides().await;
    let ledger = MemoryLedger {
        entries,
        fails_after: Some("P03"),
    };

    let error = reconcile(&ledger, &app.store, 1).await.unwrap_err();

    assert!(
        matches!(&error, SettlementError::Unavailable(message) if message == "credit is down"),
        "{error:?}"
    );
}
