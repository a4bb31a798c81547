//! The use cases of the settlement service: authorize the verified caller, call the domain
//! and the store, and deliver what the store queued (R22-R24, R29, R31, R32).

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tavana_kit::audit::AuditEntry;
use tavana_kit::caller::{Caller, Role};
use tavana_kit::clock::SharedClock;
use tavana_kit::jalali::JalaliPeriod;
use tavana_kit::outbox::OutboxHandle;
use tokio::sync::mpsc;

use crate::delivery;
use crate::domain::arrears::ensure_started;
use crate::domain::deduction::{self, DeductionRow, DeductionTotals};
use crate::domain::instalment::{ScheduledInstalment, StateFilter};
use crate::domain::reconcile::Report;
use crate::domain::remittance::{CheckedLines, PartialSettlement, match_employees};
use crate::error::SettlementError;
use crate::reconcile::{Ledger, PAGE_SIZE as RECONCILE_PAGE_SIZE, reconcile};
use crate::store::{
    ClosedPeriod, InstalmentCursor, InstalmentView, LineId, NewRemittance, NewSchedule,
    OverdueFilter, OverdueView, QueueCursor, QueueFilter, QueuedLine, RecordedRemittance,
    RemittanceRecord, Resolution, SettledChunk, Store, region_key,
};

/// The audit action of a remittance recorded by support (R32); the subject is the
/// organization id.
pub const AUDIT_REMITTANCE: &str = "remittance.record";
/// The audit action of a period closed by support (R29, R32); the subject is
/// `<organization_id>/<period>`.
pub const AUDIT_PERIOD_CLOSE: &str = "period.close";
/// The audit action of an unmatched remittance line resolved by support (R23, R32); the
/// subject is the line's id, `<remittance_id>:<line>`.
pub const AUDIT_UNMATCHED_RESOLVE: &str = "unmatched_line.resolve";

/// How many instalments one deduction-list query reads (R22), in whole employees: the list is
/// never held whole.
pub const DEDUCTION_BATCH_ROWS: u64 = 5_000;
/// How many rows one stream message carries at most: a message per employee cost more in
/// framing and wake-ups than the rows themselves.
pub const DEDUCTION_MESSAGE_ROWS: usize = 1_000;
/// How many batches wait in the stream's buffer before the reader slows down.
const STREAM_BUFFER_BATCHES: usize = 2;

/// What credit asks to cancel after a refund (R20).
#[derive(Clone, Debug)]
pub struct CancelInstalments {
    /// The purchase.
    pub purchase_id: String,
    /// The refund, which makes the call idempotent.
    pub refund_id: String,
    /// The purchase's version after the refund.
    pub version: u32,
    /// The schedule that remains.
    pub remaining: Vec<ScheduledInstalment>,
}

/// A remittance as support records it (R23); the recorder is the caller.
#[derive(Clone, Debug)]
pub struct NewRemittanceInput {
    /// The organization, as HR stores it.
    pub organization_id: String,
    /// The period the remittance pays.
    pub period: JalaliPeriod,
    /// The bank's reference, trimmed.
    pub bank_reference: String,
    /// The checked lines.
    pub lines: CheckedLines,
}

/// One event of a deduction list stream (R22): rows of at most [`DEDUCTION_MESSAGE_ROWS`],
/// then the totals, or a failure that ends the stream.
#[derive(Debug)]
pub enum DeductionEvent {
    /// Rows of employees, in national-id order.
    Rows(Vec<DeductionRow>),
    /// The totals of the whole list, last.
    Totals(DeductionTotals),
    /// The list could not be read further.
    Failed(SettlementError),
}

/// The settlement service's use cases.
#[derive(Clone)]
pub struct SettlementFlows {
    store: Store,
    clock: SharedClock,
    outbox: OutboxHandle,
    partial: PartialSettlement,
    ledger: Option<Arc<dyn Ledger>>,
}

impl SettlementFlows {
    /// Creates the flows; `ledger` is credit's side of R31's reconciliation (without it
    /// `reconcile` answers unavailable).
    pub fn new(
        store: Store,
        clock: SharedClock,
        outbox: OutboxHandle,
        partial: PartialSettlement,
        ledger: Option<Arc<dyn Ledger>>,
    ) -> Self {
        SettlementFlows {
            store,
            clock,
            outbox,
            partial,
            ledger,
        }
    }

    fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Records a purchase's schedule, sent by credit.
    pub async fn record_schedule(
        &self,
        caller: &Caller,
        schedule: NewSchedule,
    ) -> Result<(), SettlementError> {
        caller.require_service(&[])?;
        self.store
            .record_schedules(std::slice::from_ref(&schedule), self.now())
            .await?;
        Ok(())
    }

    /// Cancels the instalments a refund removed (R20), sent by credit.
    pub async fn cancel_instalments(
        &self,
        caller: &Caller,
        cancel: CancelInstalments,
    ) -> Result<(), SettlementError> {
        caller.require_service(&[])?;
        self.store
            .cancel_instalments(
                &cancel.purchase_id,
                &cancel.refund_id,
                cancel.version,
                cancel.remaining,
                self.now(),
            )
            .await
    }

    /// Compares settlement's instalments with credit's purchases (R31), for support.
    pub async fn reconcile(&self, caller: &Caller) -> Result<Report, SettlementError> {
        caller.require_any_role(&[Role::Support])?;
        let ledger = self
            .ledger
            .as_ref()
            .ok_or_else(|| SettlementError::Unavailable("credit is not configured".into()))?;
        reconcile(ledger.as_ref(), &self.store, RECONCILE_PAGE_SIZE).await
    }

    /// Lists the calling employee's instalments, a page at a time.
    pub async fn list_my_instalments(
        &self,
        caller: &Caller,
        filter: StateFilter,
        page_size: u64,
        after: Option<InstalmentCursor>,
    ) -> Result<(Vec<InstalmentView>, Option<InstalmentCursor>), SettlementError> {
        let employee_id = caller.require_user()?;
        self.store
            .list_employee_instalments(employee_id, filter, page_size, after)
            .await
    }

    /// Starts reading an organization's deduction list for a period (R22), for support
    /// and contracts: events arrive batch by batch, a channel send per batch.
    pub fn deduction_list(
        &self,
        caller: &Caller,
        organization_id: String,
        period: JalaliPeriod,
    ) -> Result<mpsc::Receiver<Vec<DeductionEvent>>, SettlementError> {
        caller.require_any_role(&[Role::Support, Role::Contracts])?;
        let (sender, receiver) = mpsc::channel(STREAM_BUFFER_BATCHES);
        tokio::spawn(stream_deductions(
            self.store.clone(),
            organization_id,
            period,
            sender,
        ));
        Ok(receiver)
    }

    /// Records a remittance and settles what it pays (R23), for support; delivers at once
    /// what it queued.
    pub async fn record_remittance(
        &self,
        caller: &Caller,
        input: NewRemittanceInput,
    ) -> Result<RecordedRemittance, SettlementError> {
        caller.require_any_role(&[Role::Support])?;
        let remittance = NewRemittance {
            organization_id: input.organization_id,
            period: input.period,
            bank_reference: input.bank_reference,
            recorded_by: caller.employee_id().unwrap_or_default().to_owned(),
            lines: input.lines,
        };
        let audit = AuditEntry::new(
            caller,
            AUDIT_REMITTANCE,
            remittance.organization_id.as_str(),
            serde_json::Value::Null,
        );
        let partial = self.partial;
        let recorded = self
            .store
            .record_remittance(
                remittance,
                self.now(),
                audit,
                |lines, ledger| match_employees(lines, ledger, partial),
                announce_settlement,
            )
            .await?;
        self.outbox.deliver_now(&recorded.enqueued).await;
        Ok(recorded)
    }

    /// Reads a remittance, for support.
    pub async fn get_remittance(
        &self,
        caller: &Caller,
        remittance_id: &str,
    ) -> Result<RemittanceRecord, SettlementError> {
        caller.require_any_role(&[Role::Support])?;
        self.store.get_remittance(remittance_id).await
    }

    /// Closes an organization's period (R29), for support: what is still unsettled turns
    /// overdue.
    pub async fn close_period(
        &self,
        caller: &Caller,
        organization_id: &str,
        period: JalaliPeriod,
    ) -> Result<ClosedPeriod, SettlementError> {
        caller.require_any_role(&[Role::Support])?;
        let now = self.now();
        ensure_started(period, now).map_err(|_| SettlementError::PeriodNotStarted)?;
        let organization_id = organization_id.trim();
        let audit = AuditEntry::new(
            caller,
            AUDIT_PERIOD_CLOSE,
            format!("{organization_id}/{period}"),
            serde_json::json!({}),
        );
        let closed = self
            .store
            .close_period(
                organization_id,
                period,
                caller.employee_id().unwrap_or_default(),
                now,
                audit,
            )
            .await?;
        if closed.enqueued {
            self.outbox.notify();
        }
        Ok(closed)
    }

    /// Lists overdue instalments (R29): support sees every region, a finance office only
    /// its own (R6).
    pub async fn list_overdue(
        &self,
        caller: &Caller,
        region_code: Option<String>,
        organization_id: Option<String>,
        page_size: u64,
        after: Option<String>,
    ) -> Result<(Vec<OverdueView>, Option<String>), SettlementError> {
        caller.require_any_role(&[Role::Support, Role::RegionFinance])?;
        let asked = region_code.map(|code| region_key(&code));
        let regions = if caller.has_role(Role::Support) {
            asked.map(|code| vec![code])
        } else {
            let own: Vec<String> = caller
                .regions_of(Role::RegionFinance)
                .into_iter()
                .map(region_key)
                .collect();
            Some(match asked {
                Some(code) if own.contains(&code) => vec![code],
                Some(_) => return Err(SettlementError::PermissionDenied),
                None => own,
            })
        };
        let filter = OverdueFilter {
            organization_id,
            regions,
        };
        self.store.list_overdue(&filter, page_size, after).await
    }

    /// Lists the queue of unmatched remittance lines (R23), for support.
    pub async fn list_unmatched_lines(
        &self,
        caller: &Caller,
        filter: QueueFilter,
        page_size: u64,
        after: Option<QueueCursor>,
    ) -> Result<(Vec<QueuedLine>, Option<QueueCursor>), SettlementError> {
        caller.require_any_role(&[Role::Support])?;
        self.store.list_unmatched(&filter, page_size, after).await
    }

    /// Resolves an unmatched line (R23), for support.
    pub async fn resolve_unmatched_line(
        &self,
        caller: &Caller,
        id: &LineId,
        resolution: Resolution,
        note: &str,
    ) -> Result<QueuedLine, SettlementError> {
        caller.require_any_role(&[Role::Support])?;
        let audit = AuditEntry::new(
            caller,
            AUDIT_UNMATCHED_RESOLVE,
            id.to_string(),
            serde_json::json!({}),
        );
        let resolved = self
            .store
            .resolve_unmatched(
                id,
                resolution,
                note.trim(),
                caller.employee_id().unwrap_or_default(),
                self.now(),
                audit,
            )
            .await?;
        if resolved.enqueued {
            self.outbox.notify();
        }
        Ok(resolved.line)
    }
}

/// The SMS a settled chunk of a remittance sends (R28): one per employee whose instalments
/// it settled, per remittance. An employee's instalments are all in one chunk (chunks never
/// split a national ID), so the SMS counts all of them.
pub fn announce_settlement(chunk: &SettledChunk<'_>) -> Vec<delivery::Outgoing> {
    let mut per_employee: BTreeMap<&str, (u64, i64)> = BTreeMap::new();
    for instalment in chunk.settled {
        let entry = per_employee.entry(&instalment.employee_id).or_default();
        entry.0 += 1;
        // Saturating cannot bite: the chunk's settled amount was summed with overflow
        // checked (R23), and one employee's share is at most that sum.
        entry.1 = entry.1.saturating_add(instalment.amount.as_i64());
    }
    let notifications = per_employee
        .into_iter()
        .map(|(employee_id, (count, amount))| {
            delivery::settlement_notification(
                chunk.remittance_id,
                employee_id,
                chunk.period,
                count,
                amount,
            )
        })
        .collect();
    delivery::settlement_sms(chunk.remittance_id, chunk.chunk, notifications)
}

/// Reads the deduction list batch by batch into `sender`, then the totals (R22).
async fn stream_deductions(
    store: Store,
    organization_id: String,
    period: JalaliPeriod,
    sender: mpsc::Sender<Vec<DeductionEvent>>,
) {
    let mut totals = DeductionTotals::default();
    let mut after: Option<String> = None;
    loop {
        let batch = store
            .deduction_batch(
                &organization_id,
                period,
                after.as_deref(),
                DEDUCTION_BATCH_ROWS,
            )
            .await;
        let rows = match batch.map(deduction::group_rows) {
            Ok(Ok(rows)) => rows,
            Ok(Err(overflow)) => {
                let _ = sender
                    .send(vec![DeductionEvent::Failed(overflow.into())])
                    .await;
                return;
            }
            Err(error) => {
                let _ = sender.send(vec![DeductionEvent::Failed(error)]).await;
                return;
            }
        };
        let Some(last) = rows.last() else {
            break;
        };
        after = Some(last.national_id.clone());
        let mut events = Vec::new();
        let mut message_rows = Vec::with_capacity(DEDUCTION_MESSAGE_ROWS.min(rows.len()));
        for row in rows {
            if let Err(overflow) = totals.add(&row) {
                events.push(DeductionEvent::Failed(overflow.into()));
                let _ = sender.send(events).await;
                return;
            }
            message_rows.push(row);
            if message_rows.len() == DEDUCTION_MESSAGE_ROWS {
                events.push(DeductionEvent::Rows(std::mem::take(&mut message_rows)));
            }
        }
        if !message_rows.is_empty() {
            events.push(DeductionEvent::Rows(message_rows));
        }
        if sender.send(events).await.is_err() {
            // The reader went away.
            return;
        }
    }
    let _ = sender.send(vec![DeductionEvent::Totals(totals)]).await;
}
