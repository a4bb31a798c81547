//! R31's reconciliation: credit's purchases, page by page in id order, against the
//! instalments settlement holds for the same range of ids, compared by
//! [`crate::domain::reconcile::compare`]. Both sides are read a page at a time, so memory
//! stays bounded by the page (and the differences found) whatever the number of purchases.

use std::time::Duration;

use async_trait::async_trait;
use tavana_kit::caller::{Caller, attach};
use tavana_kit::grpc::Channel;
use tavana_kit::money::Rial;
use tavana_proto::credit::v1::credit_service_client::CreditServiceClient;
use tavana_proto::credit::v1::{ListPurchaseLedgerRequest, PurchaseLedgerEntry};

use crate::delivery::SERVICE_NAME;
use crate::domain::reconcile::{CreditSide, HeldInstalment, Report, compare};
use crate::error::SettlementError;
use crate::store::Store;

/// Purchases per page of credit's ledger (credit may end a page sooner, by size).
pub const PAGE_SIZE: u32 = 10_000;

/// Credit's side: its purchases in id order, a page at a time.
#[async_trait]
pub trait Ledger: Send + Sync {
    /// Returns up to `page_size` purchases with an id after `after` (empty: from the first),
    /// and whether none comes after them.
    async fn page(
        &self,
        after: &str,
        page_size: u32,
    ) -> Result<(Vec<PurchaseLedgerEntry>, bool), SettlementError>;
}

/// Credit's ledger read over gRPC (`ListPurchaseLedger`).
pub struct CreditLedger {
    client: CreditServiceClient<Channel>,
}

impl CreditLedger {
    /// Creates the reader over a lazily connecting channel.
    pub fn new(
        credit_url: &str,
        timeout: Duration,
        signer: &tavana_kit::trust::Signer,
    ) -> anyhow::Result<CreditLedger> {
        Ok(CreditLedger {
            client: CreditServiceClient::new(tavana_kit::grpc::channel(
                credit_url, timeout, signer,
            )?),
        })
    }
}

#[async_trait]
impl Ledger for CreditLedger {
    async fn page(
        &self,
        after: &str,
        page_size: u32,
    ) -> Result<(Vec<PurchaseLedgerEntry>, bool), SettlementError> {
        let request = ListPurchaseLedgerRequest {
            after_purchase_id: after.to_owned(),
            page_size,
        };
        let response = self
            .client
            .clone()
            .list_purchase_ledger(attach(request, &Caller::service(SERVICE_NAME)))
            .await
            .map_err(|status| SettlementError::Unavailable(status.message().to_owned()))?
            .into_inner();
        Ok((response.items, response.last_page))
    }
}

fn credit_side(entry: PurchaseLedgerEntry) -> CreditSide {
    CreditSide {
        due: Rial(entry.amount.saturating_sub(entry.refunded_amount)),
        schedule: entry
            .schedule
            .into_iter()
            .map(|instalment| (instalment.period, Rial(instalment.amount)))
            .collect(),
        purchase_id: entry.purchase_id,
        national_id: entry.national_id,
    }
}

/// Compares one page: credit's `entries` and the instalments settlement holds for the same
/// range of ids. Both sides come in purchase id order from their databases (each
/// purchase's instalments one run, in schedule order); each is sorted here only if it is not
/// already in the byte order this comparison walks, so a database collating otherwise still
/// compares right. One merged walk pairs them and reports the differences in id order.
fn compare_page(
    report: &mut Report,
    mut entries: Vec<PurchaseLedgerEntry>,
    mut held: Vec<HeldInstalment>,
) {
    if !entries.is_sorted_by(|a, b| a.purchase_id <= b.purchase_id) {
        entries.sort_by(|a, b| a.purchase_id.cmp(&b.purchase_id));
    }
    if !held.is_sorted_by(|a, b| a.purchase_id <= b.purchase_id) {
        // Stable: each purchase's instalments keep their schedule order.
        held.sort_by(|a, b| a.purchase_id.cmp(&b.purchase_id));
    }
    let mut runs = held
        .chunk_by(|a, b| a.purchase_id == b.purchase_id)
        .peekable();
    let mut checked = 0u64;
    for entry in entries {
        while let Some(orphan) = runs.next_if(|run| run[0].purchase_id < entry.purchase_id) {
            checked += 1;
            report.mismatches.extend(compare(None, orphan));
        }
        let instalments = runs
            .next_if(|run| run[0].purchase_id == entry.purchase_id)
            .unwrap_or_default();
        checked += 1;
        report
            .mismatches
            .extend(compare(Some(&credit_side(entry)), instalments));
    }
    for orphan in runs {
        checked += 1;
        report.mismatches.extend(compare(None, orphan));
    }
    report.checked_purchases += checked;
}

/// Compares every purchase of `ledger` with the instalments `store` holds (R31). While one
/// page is compared, the next is already asked of the ledger, so that neither side waits
/// for the other.
pub async fn reconcile(
    ledger: &dyn Ledger,
    store: &Store,
    page_size: u32,
) -> Result<Report, SettlementError> {
    let mut report = Report::default();
    let mut after = String::new();
    let mut page = ledger.page(&after, page_size).await?;
    loop {
        let (entries, last_page) = page;
        // The range this page covers on both sides: (after, its last id], or to the end.
        let upto = match (last_page, entries.last()) {
            (false, Some(entry)) => Some(entry.purchase_id.clone()),
            _ => None,
        };
        let next = async {
            match &upto {
                Some(upto) => ledger.page(upto, page_size).await.map(Some),
                None => Ok(None),
            }
        };
        let this = async {
            let held = store.held_instalments(&after, upto.as_deref()).await?;
            compare_page(&mut report, entries, held);
            Ok::<_, SettlementError>(())
        };
        let (next, this) = tokio::join!(next, this);
        this?;
        match (next?, upto) {
            (Some(next), Some(upto)) => {
                page = next;
                after = upto;
            }
            _ => break,
        }
    }
    if !report.mismatches.is_empty() {
        tracing::warn!(
            checked = report.checked_purchases,
            mismatches = report.mismatches.len(),
            "credit and settlement disagree"
        );
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use tavana_proto::credit::v1::ScheduledInstalment;

    use super::*;

    fn entry(purchase_id: &str, amount: i64, periods: &[(&str, i64)]) -> PurchaseLedgerEntry {
        PurchaseLedgerEntry {
            purchase_id: purchase_id.to_owned(),
            national_id: "0010000011".to_owned(),
            amount,
            refunded_amount: 0,
            schedule: periods
                .iter()
                .zip(1..)
                .map(|((period, amount), seq)| ScheduledInstalment {
                    seq,
                    period: (*period).to_owned(),
                    amount: *amount,
                })
                .collect(),
            version: 1,
        }
    }

    fn held(purchase_id: &str, period: &str, amount: i64) -> HeldInstalment {
        HeldInstalment {
            purchase_id: purchase_id.to_owned(),
            national_id: "0010000011".to_owned(),
            period: period.to_owned(),
            due_period: period.to_owned(),
            amount: Rial(amount),
        }
    }

    /// Compares one page alone.
    fn compared(entries: Vec<PurchaseLedgerEntry>, held: Vec<HeldInstalment>) -> Report {
        let mut report = Report::default();
        compare_page(&mut report, entries, held);
        report
    }

    /// Each difference's (purchase, detail), in the report's order.
    fn differences(report: &Report) -> Vec<(&str, &str)> {
        report
            .mismatches
            .iter()
            .map(|m| (m.purchase_id.as_str(), m.detail.as_str()))
            .collect()
    }

    #[test]
    fn r31_sides_in_another_collation_order_still_pair_up() {
        // A database collating without regard to case returns `a2` before `B1`, bytes the
        // other way round; both sides come in that order.
        let entries = vec![
            entry("a2", 2, &[("1405-03", 1), ("1405-04", 1)]),
            entry("B1", 3, &[("1405-03", 3)]),
        ];
        let held = vec![
            held("a2", "1405-03", 1),
            held("a2", "1405-04", 1),
            held("b0", "1405-03", 9),
            held("B1", "1405-03", 2),
        ];

        let report = compared(entries, held);

        assert_eq!(report.checked_purchases, 3);
        assert_eq!(
            differences(&report),
            [
                ("B1", "period 1405-03: credit 3, settlement 2"),
                ("b0", "credit has no such purchase"),
            ]
        );
    }

    #[test]
    fn r31_a_page_checks_each_purchase_of_either_side_once_and_reports_in_id_order() {
        let entries = vec![
            entry("P1", 2, &[("1405-03", 1), ("1405-04", 1)]),
            entry("P3", 1, &[("1405-03", 1)]),
            entry("P4", 5, &[("1405-03", 5)]),
            entry("P5", 0, &[]),
        ];
        let held = vec![
            held("P1", "1405-03", 1),
            held("P1", "1405-04", 1),
            held("P2", "1405-03", 7),
            held("P4", "1405-03", 4),
        ];

        let report = compared(entries, held);

        assert_eq!(report.checked_purchases, 5);
        assert_eq!(
            differences(&report),
            [
                ("P2", "credit has no such purchase"),
                ("P3", "settlement holds no instalment"),
                ("P4", "period 1405-03: credit 5, settlement 4"),
            ]
        );
    }
}
