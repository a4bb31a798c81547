//! R31's reconciliation: credit's purchases, a range at a time in id order, against the
//! instalments settlement holds for the same range of ids. Each side first digests the
//! range ([`tavana_kit::ledger_digest`]); only a range whose digests differ (or that
//! credit cannot vouch for) is read entry by entry, page by page, and compared by
//! [`crate::domain::reconcile::compare`]. Memory stays bounded by a page (and the
//! differences found) whatever the number of purchases.

use async_trait::async_trait;
use tavana_kit::caller::{Caller, attach};
use tavana_kit::grpc::{Channel, Dialer};
use tavana_kit::ledger_digest::LedgerDigest;
use tavana_kit::money::Rial;
use tavana_proto::credit::v1::credit_service_client::CreditServiceClient;
use tavana_proto::credit::v1::{
    DigestPurchaseLedgerRequest, DigestPurchaseLedgerResponse, ListPurchaseLedgerRequest,
    PurchaseLedgerEntry,
};

use crate::delivery::SERVICE_NAME;
use crate::domain::reconcile::{CreditSide, HeldInstalment, Report, compare};
use crate::error::SettlementError;
use crate::store::Store;

/// Purchases per range and per page of credit's ledger (credit may end a page sooner, by
/// size).
pub const PAGE_SIZE: u32 = 10_000;

/// Credit's digest of a range of its purchases.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeDigest {
    /// The range's last purchase; `None` when it runs to the end.
    pub upto: Option<String>,
    /// Purchases in the range.
    pub purchases: u64,
    /// Purchases whose schedule does not add up to the amount less refunds: the range
    /// must be compared entry by entry.
    pub unbalanced: u64,
    /// The digest (`None`: none could be read, so the range is compared entry by entry).
    pub digest: Option<LedgerDigest>,
}

impl RangeDigest {
    /// Reads credit's answer.
    pub fn from_message(message: DigestPurchaseLedgerResponse) -> RangeDigest {
        RangeDigest {
            upto: Some(message.last_purchase_id).filter(|id| !id.is_empty()),
            purchases: message.purchases,
            unbalanced: message.unbalanced,
            digest: LedgerDigest::from_bytes(&message.digest),
        }
    }

    /// Digests one page of credit's ledger as credit digests a range (the range is the
    /// page): each entry's schedule, and whether it adds up to the amount less refunds.
    pub fn of_page(entries: Vec<PurchaseLedgerEntry>, last_page: bool) -> RangeDigest {
        let mut digest = LedgerDigest::default();
        let mut answer = RangeDigest {
            upto: None,
            purchases: 0,
            unbalanced: 0,
            digest: None,
        };
        for entry in entries {
            let balanced = digest.add_purchase(
                &entry.purchase_id,
                entry.amount.saturating_sub(entry.refunded_amount),
                entry
                    .schedule
                    .iter()
                    .map(|instalment| (instalment.period.as_str(), instalment.amount)),
            );
            if !balanced {
                answer.unbalanced += 1;
            }
            answer.purchases += 1;
            answer.upto = Some(entry.purchase_id);
        }
        if last_page {
            answer.upto = None;
        }
        answer.digest = Some(digest);
        answer
    }
}

/// Credit's side: its purchases in id order, a page or a range's digest at a time.
#[async_trait]
pub trait Ledger: Send + Sync {
    /// Returns up to `page_size` purchases with an id after `after` (empty: from the first),
    /// and whether none comes after them.
    async fn page(
        &self,
        after: &str,
        page_size: u32,
    ) -> Result<(Vec<PurchaseLedgerEntry>, bool), SettlementError>;

    /// Digests the range of up to `page_size` purchases after `after`. By default the
    /// range is one page, digested here; credit digests it in its own process.
    async fn digest(&self, after: &str, page_size: u32) -> Result<RangeDigest, SettlementError> {
        let (entries, last_page) = self.page(after, page_size).await?;
        Ok(RangeDigest::of_page(entries, last_page))
    }
}

/// Credit's ledger read over gRPC (`ListPurchaseLedger`).
pub struct CreditLedger {
    client: CreditServiceClient<Channel>,
}

impl CreditLedger {
    /// Creates the reader over a lazily connecting channel.
    pub fn new(credit_url: &str, dialer: &Dialer) -> anyhow::Result<CreditLedger> {
        Ok(CreditLedger {
            client: CreditServiceClient::new(dialer.channel(credit_url)?),
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

    async fn digest(&self, after: &str, page_size: u32) -> Result<RangeDigest, SettlementError> {
        let request = DigestPurchaseLedgerRequest {
            after_purchase_id: after.to_owned(),
            page_size,
        };
        let response = self
            .client
            .clone()
            .digest_purchase_ledger(attach(request, &Caller::service(SERVICE_NAME)))
            .await
            .map_err(|status| SettlementError::Unavailable(status.message().to_owned()))?
            .into_inner();
        Ok(RangeDigest::from_message(response))
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

/// Compares every purchase of `ledger` with the instalments `store` holds (R31), a range
/// at a time: both sides' digests of the range, and the range's entries only when the
/// digests differ. While one range is compared, credit is already asked for the next.
pub async fn reconcile(
    ledger: &dyn Ledger,
    store: &Store,
    page_size: u32,
) -> Result<Report, SettlementError> {
    let mut report = Report::default();
    let mut after = String::new();
    let mut range = ledger.digest(&after, page_size).await?;
    loop {
        let upto = range.upto.clone();
        let next = async {
            match &upto {
                Some(upto) => ledger.digest(upto, page_size).await.map(Some),
                None => Ok(None),
            }
        };
        let this = async {
            let held = store.held_digest(&after, upto.as_deref()).await?;
            if range.unbalanced == 0 && range.digest == Some(held) {
                report.checked_purchases += range.purchases;
            } else {
                report.ranges_read += 1;
                compare_range(
                    ledger,
                    store,
                    &mut report,
                    &after,
                    upto.as_deref(),
                    page_size,
                )
                .await?;
            }
            Ok::<_, SettlementError>(())
        };
        let (next, this) = tokio::join!(next, this);
        this?;
        match (next?, upto) {
            (Some(next), Some(upto)) => {
                range = next;
                after = upto;
            }
            _ => break,
        }
    }
    if !report.mismatches.is_empty() {
        tracing::warn!(
            checked = report.checked_purchases,
            mismatches = report.mismatches.len(),
            ranges_read = report.ranges_read,
            "credit and settlement disagree"
        );
    }
    Ok(report)
}

/// Compares the range `(after, upto]` (to the end when `upto` is `None`) entry by entry:
/// credit's pages from `after` until the one holding `upto`, each against the instalments
/// settlement holds for the same ids.
async fn compare_range(
    ledger: &dyn Ledger,
    store: &Store,
    report: &mut Report,
    after: &str,
    upto: Option<&str>,
    page_size: u32,
) -> Result<(), SettlementError> {
    let mut from = after.to_owned();
    loop {
        let (mut entries, last_page) = ledger.page(&from, page_size).await?;
        // Where this page ends on both sides: at `upto` when the page reaches it (or
        // nothing comes after it), else at its last entry, and the range goes on.
        let reached = upto.and_then(|upto| entries.iter().position(|e| e.purchase_id == upto));
        let page_upto = match (reached, entries.last()) {
            (Some(at), _) => {
                entries.truncate(at + 1);
                None
            }
            (None, Some(last)) if !last_page => Some(last.purchase_id.clone()),
            _ => None,
        };
        let held = store
            .held_instalments(&from, page_upto.as_deref().or(upto))
            .await?;
        compare_page(report, entries, held);
        match page_upto {
            Some(page_upto) => from = page_upto,
            None => return Ok(()),
        }
    }
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
