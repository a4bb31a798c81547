//! R31's reconciliation over several pages: credit's ledger (held in memory here) against
//! the instalments the service recorded, whatever the page size, and a ledger that fails
//! half-way.

use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use sea_orm::{ConnectionTrait, Statement};
use tavana_proto::credit::v1::{PurchaseLedgerEntry, ScheduledInstalment};
use tavana_settlement::SettlementError;
use tavana_settlement::domain::reconcile::Report;
use tavana_settlement::reconcile::{Ledger, RangeDigest, reconcile};

use tavana_kit::caller::attach;
use tavana_proto::settlement::v1 as pb;

use crate::{PERIOD, TestApp, schedule, service, spawn_service};

/// Credit's purchases in id order, paged as `ListPurchaseLedger` pages them and digested
/// as `DigestPurchaseLedger` digests them; the page or range after `fails_after` is
/// refused, as when credit is down.
struct MemoryLedger {
    entries: Vec<PurchaseLedgerEntry>,
    fails_after: Option<&'static str>,
    /// Entries a page holds at most, as credit ends a page sooner by size (`None`: as
    /// many as asked).
    page_limit: Option<usize>,
    /// Pages read entry by entry.
    pages_read: AtomicUsize,
}

impl MemoryLedger {
    fn new(entries: Vec<PurchaseLedgerEntry>) -> MemoryLedger {
        MemoryLedger {
            entries,
            fails_after: None,
            page_limit: None,
            pages_read: AtomicUsize::new(0),
        }
    }

    /// Up to `size` entries after `after`, and whether none comes after them.
    fn after(
        &self,
        after: &str,
        size: usize,
    ) -> Result<(Vec<PurchaseLedgerEntry>, bool), SettlementError> {
        if self.fails_after == Some(after) {
            return Err(SettlementError::Unavailable("credit is down".into()));
        }
        let rest: Vec<&PurchaseLedgerEntry> = self
            .entries
            .iter()
            .filter(|entry| entry.purchase_id.as_str() > after)
            .collect();
        let page = rest
            .iter()
            .take(size)
            .map(|entry| (*entry).clone())
            .collect();
        Ok((page, rest.len() <= size))
    }

    fn pages_read(&self) -> usize {
        self.pages_read.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl Ledger for MemoryLedger {
    async fn page(
        &self,
        after: &str,
        page_size: u32,
    ) -> Result<(Vec<PurchaseLedgerEntry>, bool), SettlementError> {
        self.pages_read.fetch_add(1, Ordering::Relaxed);
        let size = usize::try_from(page_size).unwrap();
        self.after(after, self.page_limit.map_or(size, |limit| limit.min(size)))
    }

    async fn digest(&self, after: &str, page_size: u32) -> Result<RangeDigest, SettlementError> {
        let (entries, last) = self.after(after, usize::try_from(page_size).unwrap())?;
        Ok(RangeDigest::of_page(entries, last))
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

/// Settlement holds P01, P02 and P05 as credit scheduled them.
async fn agreeing_sides() -> (TestApp, Vec<PurchaseLedgerEntry>) {
    let app = spawn_service().await;
    for (purchase_id, amounts) in [("P01", &[1][..]), ("P02", &[34, 33, 33]), ("P05", &[1, 1])] {
        app.record(schedule(purchase_id, 1, PERIOD, amounts)).await;
    }
    let ledger = vec![
        purchase("P01", 1, 0, &[1]),
        purchase("P02", 100, 0, &[34, 33, 33]),
        purchase("P05", 2, 0, &[1, 1]),
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
    let mut ledger = MemoryLedger::new(entries);
    // 1 and 2 split the orphans P04 and P09 from their neighbours; 100 is one range; a
    // page limit of 1 reads a differing range of 3 or 100 in pages shorter than the range.
    for (page_size, page_limit) in [
        (1, None),
        (2, None),
        (3, None),
        (100, None),
        (3, Some(1)),
        (100, Some(1)),
    ] {
        ledger.page_limit = page_limit;
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
    let mut ledger = MemoryLedger::new(entries);
    ledger.fails_after = Some("P03");

    let error = reconcile(&ledger, &app.store, 1).await.unwrap_err();

    assert!(
        matches!(&error, SettlementError::Unavailable(message) if message == "credit is down"),
        "{error:?}"
    );
}

#[tokio::test]
async fn r31_ranges_whose_digests_agree_are_not_read_and_only_a_differing_range_is() {
    let (app, entries) = both_sides().await;
    let ledger = MemoryLedger::new(entries);

    // Ranges of two of credit's purchases: (, P02] agrees (a 1-rial purchase and a
    // 34 + 33 + 33 split); (P02, P05] holds P03 and the orphan P04; (P05, end) the
    // whole refund P06, the refund P07 settlement did not apply and the orphan P09.
    let report = reconcile(&ledger, &app.store, 2).await.unwrap();

    assert_eq!(report.checked_purchases, 8);
    assert_eq!(found(&report).len(), 4);
    // One page for each of the two differing ranges; none for the one that agrees.
    assert_eq!(ledger.pages_read(), 2);
}

#[tokio::test]
async fn r31_sides_that_agree_are_checked_by_their_digests_alone() {
    let (app, mut entries) = agreeing_sides().await;
    // Wholly refunded: nothing due, nothing held (R20).
    entries.push(purchase("P06", 3, 3, &[]));
    let ledger = MemoryLedger::new(entries);

    for page_size in [1, 3, 100] {
        let report = reconcile(&ledger, &app.store, page_size).await.unwrap();

        assert_eq!(report.checked_purchases, 4, "page size {page_size}");
        assert_eq!(found(&report), [], "page size {page_size}");
    }
    assert_eq!(ledger.pages_read(), 0);
}

#[tokio::test]
async fn r31_a_schedule_that_does_not_add_up_is_read_even_when_the_digests_agree() {
    let app = spawn_service().await;
    app.record(schedule("P01", 1, PERIOD, &[1])).await;
    // Credit scheduled 1 rial of 5 due; settlement holds that 1 rial, so the digests agree.
    let ledger = MemoryLedger::new(vec![purchase("P01", 5, 0, &[1])]);

    let report = reconcile(&ledger, &app.store, 100).await.unwrap();

    assert_eq!(report.checked_purchases, 1);
    assert_eq!(
        found(&report),
        [(
            "P01",
            "credit's schedule adds up to 1, not to the amount less refunds",
            5,
            1
        )]
    );
    assert_eq!(ledger.pages_read(), 1);
}

/// R31 with R29: settlement sums the terms stored with its instalments, and a re-aged
/// instalment still counts in the period credit scheduled it in; instalments older than
/// the stored terms are digested from their rows to the same digest.
#[tokio::test]
async fn r31_stored_terms_and_rows_digest_alike_after_a_re_age() {
    let (app, entries) = agreeing_sides().await;
    let ledger = MemoryLedger::new(entries);
    let digest = async || app.store.held_digest("", None).await.unwrap();
    let scheduled = digest().await;

    // Nothing of the first period is remitted: its instalments are re-aged (R29).
    let closed = app.close(PERIOD).await.unwrap();
    let re_aged = digest().await;
    let report = reconcile(&ledger, &app.store, 2).await.unwrap();
    // P02's instalments as if written before the stored terms.
    app.db
        .db
        .execute_unprepared("UPDATE instalment SET ledger_term = NULL WHERE purchase_id = 'P02'")
        .await
        .unwrap();
    let from_rows = digest().await;
    let again = reconcile(&ledger, &app.store, 2).await.unwrap();

    assert!(closed.overdue_instalments > 0, "{closed:?}");
    assert_eq!(re_aged, scheduled);
    assert_eq!(from_rows, scheduled);
    assert_ne!(scheduled, Default::default());
    for report in [&report, &again] {
        assert_eq!(report.checked_purchases, 3);
        assert_eq!(found(report), []);
    }
    assert_eq!(ledger.pages_read(), 0);
}

/// R31 with R20: a refund's new schedule replaces the instalments not yet settled, and the
/// cancelled ones keep a stored term of 0, so the range sums the new schedule alone.
#[tokio::test]
async fn r31_a_refunds_cancelled_instalments_count_for_nothing() {
    let app = spawn_service().await;
    app.record(schedule("P01", 1, PERIOD, &[34, 33, 33])).await;
    let remaining = schedule("P01", 1, PERIOD, &[24, 23, 23]).instalments;
    app.client
        .clone()
        .cancel_instalments(attach(
            pb::CancelInstalmentsRequest {
                purchase_id: "P01".into(),
                refund_id: "R1".into(),
                remaining,
                version: 2,
            },
            &service(),
        ))
        .await
        .unwrap();
    let ledger = MemoryLedger::new(vec![purchase("P01", 100, 30, &[24, 23, 23])]);

    let report = reconcile(&ledger, &app.store, 100).await.unwrap();
    let held = app.store.held_digest("", None).await.unwrap();
    let cancelled = app
        .db
        .db
        .query_all_raw(Statement::from_string(
            app.db.db.get_database_backend(),
            "SELECT ledger_term FROM instalment WHERE state = 'cancelled'",
        ))
        .await
        .unwrap()
        .iter()
        .map(|row| row.try_get_by_index::<Option<i64>>(0).unwrap())
        .collect::<Vec<_>>();

    assert_eq!(cancelled, [Some(0); 3]);
    assert_eq!(report.checked_purchases, 1);
    assert_eq!(found(&report), []);
    assert_eq!(ledger.pages_read(), 0);
    let scheduled = ledger.digest("", 100).await.unwrap().digest;
    assert_eq!(Some(held), scheduled);
}
