//! The settlement database: the only code that runs queries.
//!
//! Money paths (remittances and refunds) write the organization's ledger row first, which
//! holds a row lock on PostgreSQL and the write lock on SQLite until commit, so two of them
//! never interleave for one organization. Big batches are read and written set-based, in
//! chunks, never one query per line.

mod arrears;
mod remittance;
mod tables;
mod unmatched;

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{
    Alias, Condition, Expr, ExprTrait, InsertStatement, OnConflict, Order, Query, SelectStatement,
};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, QueryResult, SqlErr,
};
use tavana_kit::ids::NationalId;
use tavana_kit::jalali::JalaliPeriod;
use tavana_kit::ledger_digest::{self, LedgerDigest};
use tavana_kit::money::Rial;

pub use self::arrears::{ClosedPeriod, OverdueFilter, OverdueView, PeriodCloseRecord, region_key};
pub use self::remittance::{REMITTANCE_CHUNK_LINES, SettledChunk};
pub use self::tables::*;
pub use self::unmatched::{
    LineId, QueueCursor, QueueFilter, QueueStatus, QueuedLine, Resolution, ResolvedLine,
};
use crate::domain::deduction::DueEntry;
use crate::domain::instalment::{InstalmentState, ScheduledInstalment, StateFilter};
use crate::domain::reconcile::HeldInstalment;
use crate::domain::remittance::CheckedLines;
use crate::error::SettlementError;

/// Rows per multi-row insert (kept well under the bind-parameter limits of both backends).
const INSERT_CHUNK: usize = 500;

/// Who a schedule belongs to and where it was bought.
#[derive(Clone, Debug)]
pub struct NewSchedule {
    /// The purchase (credit's id).
    pub purchase_id: String,
    /// The buyer.
    pub employee_id: String,
    /// The buyer's national ID.
    pub national_id: NationalId,
    /// The buyer's name, for the deduction list.
    pub full_name: String,
    /// The buyer's organization, which deducts and remits.
    pub organization_id: String,
    /// The merchant.
    pub merchant_id: String,
    /// The merchant's name, for the employee's view.
    pub merchant_name: String,
    /// The instalments.
    pub instalments: Vec<ScheduledInstalment>,
    /// The schedule's version (R20): 1 for a purchase's first schedule.
    pub version: u32,
    /// The facility's monthly credit `M`, which bounds re-aged arrears (R29); zero when
    /// the sender did not say.
    pub monthly_credit: Rial,
    /// The guarantor told when an instalment becomes overdue (R29); empty when unknown.
    pub guarantor_employee_id: String,
    /// The buyer's region, normalised (see [`region_key`]); empty when unknown.
    pub region_code: String,
}

/// One instalment as an employee sees it (R24).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstalmentView {
    /// The instalment's id.
    pub id: String,
    /// Its purchase.
    pub purchase_id: String,
    /// The merchant's name.
    pub merchant_name: String,
    /// Position in the schedule.
    pub seq: u32,
    /// The period it is deducted from.
    pub period: String,
    /// The period it was first due in: earlier than `period` once re-aged (R29).
    pub due_period: String,
    /// Its amount.
    pub amount: Rial,
    /// Its state.
    pub state: InstalmentState,
    /// When a remittance settled it.
    pub settled_at: Option<DateTime<Utc>>,
}

/// Where a page of an employee's instalments starts: after this (period, id).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InstalmentCursor {
    /// The period of the last instalment shown.
    pub period: String,
    /// The id of the last instalment shown.
    pub id: String,
}

/// A remittance to record (R23).
#[derive(Clone, Debug)]
pub struct NewRemittance {
    /// The remitting organization.
    pub organization_id: String,
    /// The salary period the deductions were made from.
    pub period: JalaliPeriod,
    /// The bank's reference of the transfer; once per organization.
    pub bank_reference: String,
    /// The support user who records it.
    pub recorded_by: String,
    /// The lines, checked, in document order.
    pub lines: CheckedLines,
}

/// A stored unmatched line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredUnmatched {
    /// The line's number.
    pub line: u32,
    /// The national ID as written.
    pub national_id: String,
    /// The amount not used.
    pub amount: Rial,
    /// Why.
    pub code: String,
}

/// A recorded remittance with its unmatched lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemittanceRecord {
    /// Its id.
    pub id: String,
    /// The organization.
    pub organization_id: String,
    /// The period.
    pub period: String,
    /// The bank reference.
    pub bank_reference: String,
    /// How many instalments it settled.
    pub settled_instalments: u64,
    /// How much it settled.
    pub settled_amount: Rial,
    /// The lines kept for review, in line order.
    pub unmatched: Vec<StoredUnmatched>,
    /// When it was recorded.
    pub recorded_at: DateTime<Utc>,
}

/// The result of recording a remittance.
#[derive(Clone, Debug)]
pub struct RecordedRemittance {
    /// The remittance (the first one, for a replayed bank reference).
    pub record: RemittanceRecord,
    /// True when the bank reference was recorded before and nothing was settled now.
    pub replayed: bool,
    /// The outbox messages written, to deliver once committed.
    pub enqueued: tavana_kit::outbox::Enqueued,
}

/// The settlement database.
#[derive(Clone, Debug)]
pub struct Store {
    db: DatabaseConnection,
}

fn get<T: sea_orm::TryGetable>(row: &QueryResult, column: &str) -> Result<T, DbErr> {
    row.try_get("", column)
}

fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

fn is_unique_violation(error: &DbErr) -> bool {
    matches!(error.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
}

/// Reads a stored seq, line number or count, which the service never writes negative: a
/// negative one is corruption, reported (an internal error with the value), never read as 0.
fn to_u32(value: i32) -> Result<u32, DbErr> {
    u32::try_from(value).map_err(|_| DbErr::Type(format!("stored {value} is negative")))
}

/// Reads a stored count (see [`to_u32`]).
fn to_u64(value: i64) -> Result<u64, DbErr> {
    u64::try_from(value).map_err(|_| DbErr::Type(format!("stored count {value} is negative")))
}

/// Writes a seq or a line number into its INTEGER column; one past `i32::MAX` cannot be
/// stored and is an internal error naming it (a line id's parse refuses such numbers, so
/// only a remittance line or a schedule seq that large gets here).
fn to_i32(value: u32) -> Result<i32, DbErr> {
    i32::try_from(value).map_err(|_| DbErr::Type(format!("{value} does not fit an INTEGER column")))
}

/// Writes a count into its BIGINT column; a count of rows held in memory is far below
/// `i64::MAX`, and one that is not is an internal error naming it.
fn to_i64<T: TryInto<i64> + Copy + std::fmt::Display>(value: T) -> Result<i64, DbErr> {
    value
        .try_into()
        .map_err(|_| DbErr::Type(format!("count {value} does not fit a BIGINT column")))
}

/// Writes the organization's ledger row: the first statement of every money path.
async fn lock_organization(txn: &DatabaseTransaction, organization_id: &str) -> Result<(), DbErr> {
    tavana_kit::db::lock_row(
        txn,
        "organization_ledger",
        "organization_id",
        organization_id,
    )
    .await
}

/// Inserts the instalments of schedules, in chunks.
async fn insert_instalments<C: ConnectionTrait>(
    conn: &C,
    schedules: &[&NewSchedule],
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    for insert in instalment_inserts(schedules, now)? {
        conn.execute(&insert).await?;
    }
    Ok(())
}

/// The statements that insert the instalments of `schedules`, [`INSERT_CHUNK`] rows each.
fn instalment_inserts(
    schedules: &[&NewSchedule],
    now: DateTime<Utc>,
) -> Result<Vec<InsertStatement>, DbErr> {
    let rows: Vec<(&NewSchedule, &ScheduledInstalment)> = schedules
        .iter()
        .flat_map(|schedule| schedule.instalments.iter().map(move |i| (*schedule, i)))
        .collect();
    let mut inserts = Vec::with_capacity(rows.len().div_ceil(INSERT_CHUNK));
    for chunk in rows.chunks(INSERT_CHUNK) {
        let mut insert = Query::insert();
        insert.into_table(Instalment::Table).columns([
            Instalment::Id,
            Instalment::PurchaseId,
            Instalment::EmployeeId,
            Instalment::NationalId,
            Instalment::FullName,
            Instalment::OrganizationId,
            Instalment::MerchantId,
            Instalment::MerchantName,
            Instalment::Seq,
            Instalment::Period,
            Instalment::Amount,
            Instalment::State,
            Instalment::CreatedAt,
            Instalment::LedgerTerm,
        ]);
        for (schedule, instalment) in chunk {
            let period = instalment.period.to_string();
            let amount = instalment.amount.as_i64();
            let term = ledger_digest::term(&schedule.purchase_id, &period, amount);
            insert.values_panic([
                new_id().into(),
                schedule.purchase_id.clone().into(),
                schedule.employee_id.clone().into(),
                schedule.national_id.as_str().into(),
                schedule.full_name.clone().into(),
                schedule.organization_id.clone().into(),
                schedule.merchant_id.clone().into(),
                schedule.merchant_name.clone().into(),
                to_i32(instalment.seq)?.into(),
                period.into(),
                amount.into(),
                InstalmentState::Unsettled.as_str().into(),
                now.into(),
                term.into(),
            ]);
        }
        inserts.push(insert);
    }
    Ok(inserts)
}

impl Store {
    /// Wraps a connection to a migrated database.
    pub fn new(db: DatabaseConnection) -> Store {
        Store { db }
    }

    /// Returns the connection (for the outbox relay).
    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Records schedules; a purchase recorded before is left as it is (idempotent).
    ///
    /// Returns how many schedules were new.
    #[tracing::instrument(skip_all, fields(schedules = schedules.len()))]
    pub async fn record_schedules(
        &self,
        schedules: &[NewSchedule],
        now: DateTime<Utc>,
    ) -> Result<u64, SettlementError> {
        let txn = tavana_kit::db::begin_write(&self.db).await?;
        let mut fresh = Vec::with_capacity(schedules.len());
        let mut seen = BTreeSet::new();
        for chunk in schedules.chunks(INSERT_CHUNK) {
            let ids: Vec<&str> = chunk.iter().map(|s| s.purchase_id.as_str()).collect();
            let existing: BTreeSet<String> = self
                .purchase_ids_in(&txn, &ids)
                .await?
                .into_iter()
                .collect();
            for schedule in chunk {
                if !existing.contains(&schedule.purchase_id)
                    && seen.insert(schedule.purchase_id.clone())
                {
                    fresh.push(schedule);
                }
            }
        }
        // The schedules and their instalments go as one batch: on SQLite one hand-off to the
        // file's writer, on the turn every schedule recorded waits for.
        let backend = txn.get_database_backend();
        let mut statements = Vec::new();
        for chunk in fresh.chunks(INSERT_CHUNK) {
            let mut insert = Query::insert();
            insert.into_table(PurchaseSchedule::Table).columns([
                PurchaseSchedule::PurchaseId,
                PurchaseSchedule::EmployeeId,
                PurchaseSchedule::OrganizationId,
                PurchaseSchedule::Version,
                PurchaseSchedule::CreatedAt,
                PurchaseSchedule::MonthlyCredit,
                PurchaseSchedule::GuarantorEmployeeId,
                PurchaseSchedule::RegionCode,
            ]);
            for schedule in chunk {
                insert.values_panic([
                    schedule.purchase_id.clone().into(),
                    schedule.employee_id.clone().into(),
                    schedule.organization_id.clone().into(),
                    i64::from(Ord::max(schedule.version, 1)).into(),
                    now.into(),
                    schedule.monthly_credit.as_i64().into(),
                    schedule.guarantor_employee_id.clone().into(),
                    schedule.region_code.clone().into(),
                ]);
            }
            statements.push(backend.build(&insert));
        }
        statements.extend(
            instalment_inserts(&fresh, now)?
                .iter()
                .map(|insert| backend.build(insert)),
        );
        match tavana_kit::db::batch(&txn, statements).await {
            Ok(_) => {}
            // A concurrent call recorded the same purchase first: that one wins.
            Err(error) if is_unique_violation(&error) => {
                txn.rollback().await?;
                return Err(SettlementError::ConcurrentChange);
            }
            Err(error) => return Err(error.into()),
        }
        txn.commit().await?;
        Ok(fresh.len() as u64)
    }

    async fn purchase_ids_in<C: ConnectionTrait>(
        &self,
        conn: &C,
        ids: &[&str],
    ) -> Result<Vec<String>, DbErr> {
        let query = Query::select()
            .column(PurchaseSchedule::PurchaseId)
            .from(PurchaseSchedule::Table)
            .and_where(Expr::col(PurchaseSchedule::PurchaseId).is_in(ids.iter().copied()))
            .to_owned();
        conn.query_all(&query)
            .await?
            .iter()
            .map(|row| get(row, "purchase_id"))
            .collect()
    }

    /// Replaces a purchase's unsettled instalments by the schedule that stays due after a
    /// refund (R20), when `version` is newer than the stored one.
    ///
    /// Idempotent by `refund_id`. Versions make the order of delivery irrelevant: an older
    /// version arriving after a newer one is recorded and changes nothing, so settlement
    /// always ends on credit's latest schedule (`version` 0, from an older sender, is
    /// applied over whatever is stored). A purchase not recorded yet answers
    /// `purchase_not_found`, and the sender retries once its schedule has arrived.
    ///
    /// Never refused for the state of the instalments: credit refunds only purchases of
    /// which no instalment is settled (it is told of every settlement). Should a refund
    /// cross a remittance in flight, the settled instalments stay as they are and the new
    /// schedule replaces the others; R31's reconciliation then lists the purchase.
    #[tracing::instrument(skip_all, fields(purchase_id = %purchase_id, refund_id = %refund_id, version))]
    pub async fn cancel_instalments(
        &self,
        purchase_id: &str,
        refund_id: &str,
        version: u32,
        remaining: Vec<ScheduledInstalment>,
        now: DateTime<Utc>,
    ) -> Result<(), SettlementError> {
        // The purchase's owner and organization never change: read them before the lock.
        let query = Query::select()
            .columns([
                Instalment::EmployeeId,
                Instalment::NationalId,
                Instalment::FullName,
                Instalment::OrganizationId,
                Instalment::MerchantId,
                Instalment::MerchantName,
            ])
            .from(Instalment::Table)
            .and_where(Expr::col(Instalment::PurchaseId).eq(purchase_id))
            .order_by(Instalment::Seq, Order::Asc)
            .limit(1)
            .to_owned();
        let Some(row) = self.db.query_one(&query).await? else {
            return Err(SettlementError::PurchaseNotFound);
        };
        let organization_id: String = get(&row, "organization_id")?;
        let national_id: String = get(&row, "national_id")?;
        let mut schedule = NewSchedule {
            purchase_id: purchase_id.to_owned(),
            employee_id: get(&row, "employee_id")?,
            national_id: NationalId::parse(&national_id)
                .map_err(|_| DbErr::Custom("stored national ID is invalid".into()))?,
            full_name: get(&row, "full_name")?,
            organization_id: organization_id.clone(),
            merchant_id: get(&row, "merchant_id")?,
            merchant_name: get(&row, "merchant_name")?,
            instalments: remaining,
            version,
            // Only the instalments are inserted: the purchase's schedule row stays.
            monthly_credit: Rial::ZERO,
            guarantor_employee_id: String::new(),
            region_code: String::new(),
        };

        let txn = tavana_kit::db::begin_write(&self.db).await?;
        lock_organization(&txn, &organization_id).await?;
        let insert = Query::insert()
            .into_table(Refund::Table)
            .columns([Refund::RefundId, Refund::PurchaseId, Refund::CreatedAt])
            .values_panic([refund_id.into(), purchase_id.into(), now.into()])
            .on_conflict(OnConflict::column(Refund::RefundId).do_nothing().to_owned())
            .to_owned();
        if txn.execute(&insert).await?.rows_affected() == 0 {
            // This refund was applied before.
            txn.commit().await?;
            return Ok(());
        }
        let stored = Query::select()
            .column(PurchaseSchedule::Version)
            .from(PurchaseSchedule::Table)
            .and_where(Expr::col(PurchaseSchedule::PurchaseId).eq(purchase_id))
            .to_owned();
        let stored: i64 = match txn.query_one(&stored).await? {
            Some(row) => get(&row, "version")?,
            None => 0,
        };
        let applied = if version == 0 {
            stored.saturating_add(1)
        } else {
            i64::from(version)
        };
        if applied <= stored {
            // An older schedule than the one held: recorded, and nothing changes.
            tracing::info!(stored, "older schedule version ignored");
            txn.commit().await?;
            return Ok(());
        }
        let settled = Query::select()
            .column(Instalment::Seq)
            .from(Instalment::Table)
            .and_where(Expr::col(Instalment::PurchaseId).eq(purchase_id))
            .and_where(Expr::col(Instalment::State).eq(InstalmentState::Settled.as_str()))
            .to_owned();
        let settled: BTreeSet<u32> = txn
            .query_all(&settled)
            .await?
            .iter()
            .map(|row| get::<i32>(row, "seq").and_then(to_u32))
            .collect::<Result<_, DbErr>>()?;
        if !settled.is_empty() {
            tracing::warn!(
                settled = settled.len(),
                "refund crossed a remittance: settled instalments kept"
            );
            schedule
                .instalments
                .retain(|instalment| !settled.contains(&instalment.seq));
        }
        let cancel = Query::update()
            .table(Instalment::Table)
            .value(Instalment::State, InstalmentState::Cancelled.as_str())
            // A cancelled instalment holds nothing (R31's sums read no state).
            .value(Instalment::LedgerTerm, 0)
            .and_where(Expr::col(Instalment::PurchaseId).eq(purchase_id))
            .and_where(Expr::col(Instalment::State).eq(InstalmentState::Unsettled.as_str()))
            .to_owned();
        txn.execute(&cancel).await?;
        insert_instalments(&txn, &[&schedule], now).await?;
        let bump = Query::update()
            .table(PurchaseSchedule::Table)
            .value(PurchaseSchedule::Version, applied)
            .and_where(Expr::col(PurchaseSchedule::PurchaseId).eq(purchase_id))
            .to_owned();
        txn.execute(&bump).await?;
        txn.commit().await?;
        Ok(())
    }

    /// Returns the instalments (all but the cancelled) of the purchases with an id after
    /// `after` and, when given, up to `upto`, in purchase id order: settlement's side of
    /// R31's reconciliation for one page of credit's purchases (a range scan of
    /// `ix_instalment_purchase_seq_term`).
    pub async fn held_instalments(
        &self,
        after: &str,
        upto: Option<&str>,
    ) -> Result<Vec<HeldInstalment>, SettlementError> {
        let mut query = Query::select();
        query
            .columns([
                Instalment::PurchaseId,
                Instalment::NationalId,
                Instalment::Period,
                Instalment::Amount,
            ])
            .expr_as(
                Expr::cust("COALESCE(due_period, period)"),
                Alias::new("scheduled_period"),
            )
            .from(Instalment::Table);
        held_in_range(&mut query, after, upto);
        query
            .order_by(Instalment::PurchaseId, Order::Asc)
            .order_by(Instalment::Seq, Order::Asc);
        Ok(self
            .db
            .query_all(&query)
            .await?
            .iter()
            .map(|row| {
                // By position, in the order selected: a page is thousands of rows.
                let (purchase_id, national_id, period, amount, due_period) =
                    row.try_get_many_by_index::<(String, String, String, i64, String)>()?;
                Ok(HeldInstalment {
                    purchase_id,
                    national_id,
                    period,
                    due_period,
                    amount: Rial(amount),
                })
            })
            .collect::<Result<Vec<_>, DbErr>>()?)
    }

    /// Digests the instalments (all but the cancelled) of the purchases with an id after
    /// `after` and, when given, up to `upto`, as credit digests its side of the same range
    /// (R31): each instalment's amount in the period credit scheduled it in (a re-aged
    /// instalment in the period it was first due in, R29). The database sums the terms
    /// stored with the instalments (a cancelled one's is 0) from that range of
    /// `ix_instalment_purchase_seq_term` alone, and no row leaves it; a range with an
    /// instalment older than the stored terms is digested from its rows.
    pub async fn held_digest(
        &self,
        after: &str,
        upto: Option<&str>,
    ) -> Result<LedgerDigest, SettlementError> {
        let mut sums = Query::select();
        sums.exprs(ledger_digest::sum_columns().map(Expr::cust))
            .from(Instalment::Table)
            .and_where(Expr::col(Instalment::PurchaseId).gt(after));
        if let Some(upto) = upto {
            sums.and_where(Expr::col(Instalment::PurchaseId).lte(upto));
        }
        let row = self
            .db
            .query_one(&sums)
            .await?
            .ok_or_else(|| DbErr::Custom("an aggregate returned no row".to_owned()))?;
        let (instalments, termed, high, low) =
            row.try_get_many_by_index::<(i64, i64, i64, i64)>()?;
        if let Some(digest) = LedgerDigest::from_sums(instalments, termed, high, low) {
            return Ok(digest);
        }
        let mut digest = LedgerDigest::default();
        let mut rows = Query::select();
        rows.column(Instalment::PurchaseId)
            .expr(Expr::cust("COALESCE(due_period, period)"))
            .column(Instalment::Amount)
            .from(Instalment::Table);
        held_in_range(&mut rows, after, upto);
        for row in self.db.query_all(&rows).await? {
            let (purchase_id, period, amount) =
                row.try_get_many_by_index::<(String, String, i64)>()?;
            digest.add(&purchase_id, &period, amount);
        }
        Ok(digest)
    }

    /// Lists an employee's instalments by state, oldest period first (R24).
    #[tracing::instrument(skip_all, fields(filter = ?filter, page_size))]
    pub async fn list_employee_instalments(
        &self,
        employee_id: &str,
        filter: StateFilter,
        page_size: u64,
        after: Option<InstalmentCursor>,
    ) -> Result<(Vec<InstalmentView>, Option<InstalmentCursor>), SettlementError> {
        let mut query = Query::select();
        query
            .columns([
                Instalment::Id,
                Instalment::PurchaseId,
                Instalment::MerchantName,
                Instalment::Seq,
                Instalment::Period,
                Instalment::Amount,
                Instalment::State,
                Instalment::SettledAt,
            ])
            .expr_as(Expr::cust("COALESCE(due_period, period)"), "first_period")
            .from(Instalment::Table)
            .and_where(Expr::col(Instalment::EmployeeId).eq(employee_id));
        let state = |state: InstalmentState| Expr::col(Instalment::State).eq(state.as_str());
        match filter {
            StateFilter::All => {
                query.and_where(
                    Expr::col(Instalment::State).ne(InstalmentState::Cancelled.as_str()),
                );
            }
            StateFilter::Unsettled => {
                // Overdue instalments are unsettled too (R24, R29).
                query.and_where(
                    Expr::col(Instalment::State)
                        .is_in(InstalmentState::OPEN.map(InstalmentState::as_str)),
                );
            }
            StateFilter::Overdue => {
                query.and_where(state(InstalmentState::Overdue));
            }
            StateFilter::Settled => {
                query.and_where(state(InstalmentState::Settled));
            }
            StateFilter::Cancelled => {
                query.and_where(state(InstalmentState::Cancelled));
            }
            StateFilter::Finished => {
                let finished: SelectStatement = Query::select()
                    .column(PurchaseSchedule::PurchaseId)
                    .from(PurchaseSchedule::Table)
                    .and_where(Expr::col(PurchaseSchedule::EmployeeId).eq(employee_id))
                    .and_where(Expr::col(PurchaseSchedule::CompletedAt).is_not_null())
                    .to_owned();
                query
                    .and_where(state(InstalmentState::Settled))
                    .and_where(Expr::col(Instalment::PurchaseId).in_subquery(finished));
            }
        }
        if let Some(after) = after {
            query.cond_where(
                Condition::any()
                    .add(Expr::col(Instalment::Period).gt(after.period.clone()))
                    .add(
                        Condition::all()
                            .add(Expr::col(Instalment::Period).eq(after.period))
                            .add(Expr::col(Instalment::Id).gt(after.id)),
                    ),
            );
        }
        query
            .order_by(Instalment::Period, Order::Asc)
            .order_by(Instalment::Id, Order::Asc)
            .limit(page_size + 1);
        let rows = self.db.query_all(&query).await?;
        let mut items = rows
            .iter()
            .map(|row| {
                let state: String = get(row, "state")?;
                Ok(InstalmentView {
                    id: get(row, "id")?,
                    purchase_id: get(row, "purchase_id")?,
                    merchant_name: get(row, "merchant_name")?,
                    seq: to_u32(get::<i32>(row, "seq")?)?,
                    period: get(row, "period")?,
                    due_period: get(row, "first_period")?,
                    amount: Rial(get(row, "amount")?),
                    state: InstalmentState::parse(&state)
                        .ok_or_else(|| DbErr::Custom(format!("unknown state {state}")))?,
                    settled_at: get(row, "settled_at")?,
                })
            })
            .collect::<Result<Vec<_>, DbErr>>()?;
        let next = if items.len() as u64 > page_size {
            // Saturating is exact: a page size is at most paging's maximum, and no
            // longer than the rows read, so it fits a usize wherever it is truncated.
            items.truncate(usize::try_from(page_size).unwrap_or(usize::MAX));
            items.last().map(|last| InstalmentCursor {
                period: last.period.clone(),
                id: last.id.clone(),
            })
        } else {
            None
        };
        Ok((items, next))
    }

    /// Loads the next batch of a deduction list (R22): the instalments due in `period` of the
    /// employees whose national ID comes after `after`, ordered by national ID, at most about
    /// `rows` of them and always whole employees (an employee with more instalments than
    /// `rows` comes alone). An empty batch ends the list.
    ///
    /// One range read per batch, with a limit; the employee the limit cut is left for the
    /// next batch. On SQLite the batch comes back as one JSON array: every row read through
    /// the driver costs a hand-off between threads, which made reading the rows one by one
    /// several times slower than the query itself.
    #[tracing::instrument(skip_all, fields(organization_id = %organization_id, period = %period))]
    pub async fn deduction_batch(
        &self,
        organization_id: &str,
        period: JalaliPeriod,
        after: Option<&str>,
        rows: u64,
    ) -> Result<Vec<DueEntry>, SettlementError> {
        let period = period.to_string();
        let due = |employees: Condition, limit: Option<u64>| {
            let mut query = Query::select();
            query
                .columns([
                    Instalment::NationalId,
                    Instalment::FullName,
                    Instalment::Id,
                    Instalment::PurchaseId,
                    Instalment::Amount,
                    Instalment::Seq,
                ])
                .expr_as(Expr::cust("COALESCE(due_period, period)"), "first_period")
                .from(Instalment::Table)
                .and_where(Expr::col(Instalment::OrganizationId).eq(organization_id))
                .and_where(Expr::col(Instalment::Period).eq(period.as_str()))
                .and_where(Expr::col(Instalment::State).ne(InstalmentState::Cancelled.as_str()))
                .cond_where(employees)
                .order_by(Instalment::NationalId, Order::Asc)
                .order_by(Instalment::PurchaseId, Order::Asc)
                .order_by(Instalment::Seq, Order::Asc);
            if let Some(limit) = limit {
                query.limit(limit);
            }
            query
        };
        let mut after_condition = Condition::all();
        if let Some(after) = after {
            after_condition = after_condition.add(Expr::col(Instalment::NationalId).gt(after));
        }
        let limit = Ord::max(rows, 1);
        let mut entries = self.due_entries(due(after_condition, Some(limit))).await?;
        if (entries.len() as u64) < limit {
            return Ok(entries);
        }
        // The limit may have cut the last employee: leave them to the next batch.
        let last = entries
            .last()
            .map(|entry| entry.national_id.clone())
            .unwrap_or_default();
        entries.retain(|entry| entry.national_id != last);
        if !entries.is_empty() {
            return Ok(entries);
        }
        // One employee has more instalments than a batch holds: they come alone.
        let employee = Condition::all().add(Expr::col(Instalment::NationalId).eq(last));
        Ok(self.due_entries(due(employee, None)).await?)
    }

    /// Runs a query of [`Store::deduction_batch`] (columns national ID, name, id, purchase,
    /// amount, seq; ordered).
    async fn due_entries(&self, query: SelectStatement) -> Result<Vec<DueEntry>, DbErr> {
        if self.db.get_database_backend() == DbBackend::Postgres {
            return self
                .db
                .query_all(&query)
                .await?
                .iter()
                .map(|row| {
                    Ok(DueEntry {
                        national_id: get(row, "national_id")?,
                        full_name: get(row, "full_name")?,
                        instalment_id: get(row, "id")?,
                        purchase_id: get(row, "purchase_id")?,
                        amount: Rial(get(row, "amount")?),
                        due_period: get(row, "first_period")?,
                    })
                })
                .collect();
        }
        let as_json = Query::select()
            .expr_as(
                Expr::cust(
                    "json_group_array(json_array(national_id, full_name, id, purchase_id, amount, first_period) \
                     ORDER BY national_id, purchase_id, seq)",
                ),
                "entries",
            )
            .from_subquery(query, "due")
            .to_owned();
        let Some(row) = self.db.query_one(&as_json).await? else {
            return Ok(Vec::new());
        };
        let text: String = get(&row, "entries")?;
        let entries: Vec<(String, String, String, String, i64, String)> =
            serde_json::from_str(&text)
                .map_err(|error| DbErr::Custom(format!("deduction batch is not JSON: {error}")))?;
        Ok(entries
            .into_iter()
            .map(
                |(national_id, full_name, instalment_id, purchase_id, amount, due_period)| {
                    DueEntry {
                        national_id,
                        full_name,
                        instalment_id,
                        purchase_id,
                        amount: Rial(amount),
                        due_period,
                    }
                },
            )
            .collect())
    }

    /// Returns a remittance by id.
    pub async fn get_remittance(&self, id: &str) -> Result<RemittanceRecord, SettlementError> {
        self.load_remittance(&self.db, Expr::col(Remittance::Id).eq(id))
            .await?
            .ok_or(SettlementError::RemittanceNotFound)
    }

    async fn find_by_bank_reference<C: ConnectionTrait>(
        &self,
        conn: &C,
        organization_id: &str,
        bank_reference: &str,
    ) -> Result<Option<RemittanceRecord>, DbErr> {
        let condition = Expr::col(Remittance::OrganizationId)
            .eq(organization_id)
            .and(Expr::col(Remittance::BankReference).eq(bank_reference));
        self.load_remittance(conn, condition).await
    }

    async fn load_remittance<C: ConnectionTrait>(
        &self,
        conn: &C,
        condition: Expr,
    ) -> Result<Option<RemittanceRecord>, DbErr> {
        let query = Query::select()
            .columns([
                Remittance::Id,
                Remittance::OrganizationId,
                Remittance::Period,
                Remittance::BankReference,
                Remittance::SettledInstalments,
                Remittance::SettledAmount,
                Remittance::RecordedAt,
            ])
            .from(Remittance::Table)
            .and_where(condition)
            .to_owned();
        let Some(row) = conn.query_one(&query).await? else {
            return Ok(None);
        };
        let id: String = get(&row, "id")?;
        let lines = Query::select()
            .columns([
                UnmatchedLine::Line,
                UnmatchedLine::NationalId,
                UnmatchedLine::Amount,
                UnmatchedLine::Code,
            ])
            .from(UnmatchedLine::Table)
            .and_where(Expr::col(UnmatchedLine::RemittanceId).eq(id.clone()))
            .order_by(UnmatchedLine::Line, Order::Asc)
            .to_owned();
        let unmatched = conn
            .query_all(&lines)
            .await?
            .iter()
            .map(|line| {
                Ok(StoredUnmatched {
                    line: to_u32(get::<i32>(line, "line")?)?,
                    national_id: get(line, "national_id")?,
                    amount: Rial(get(line, "amount")?),
                    code: get(line, "code")?,
                })
            })
            .collect::<Result<Vec<_>, DbErr>>()?;
        Ok(Some(RemittanceRecord {
            id,
            organization_id: get(&row, "organization_id")?,
            period: get(&row, "period")?,
            bank_reference: get(&row, "bank_reference")?,
            settled_instalments: to_u64(get(&row, "settled_instalments")?)?,
            settled_amount: Rial(get(&row, "settled_amount")?),
            unmatched,
            recorded_at: get(&row, "recorded_at")?,
        }))
    }
}

/// Narrows `query` to the instalments R31 compares in a range of purchases: those of the
/// purchases with an id after `after` and, when given, up to `upto`, all but the cancelled.
fn held_in_range(query: &mut SelectStatement, after: &str, upto: Option<&str>) {
    query
        .and_where(Expr::col(Instalment::PurchaseId).gt(after))
        .and_where(Expr::col(Instalment::State).ne(InstalmentState::Cancelled.as_str()));
    if let Some(upto) = upto {
        query.and_where(Expr::col(Instalment::PurchaseId).lte(upto));
    }
}
