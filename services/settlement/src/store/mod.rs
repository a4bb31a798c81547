//! The settlement database: the only code that runs queries.
//!
//! Money paths (remittances and refunds) write the organization's ledger row first, which
//! holds a row lock on PostgreSQL and the write lock on SQLite until commit, so two of them
//! never interleave for one organization. Big batches are read and written set-based, in
//! chunks, never one query per line.

mod tables;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{
    Asterisk, Condition, Expr, ExprTrait, Func, OnConflict, Order, Query, SelectStatement,
};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbErr, QueryResult, SqlErr,
};
use tavana_kit::ids::NationalId;
use tavana_kit::jalali::JalaliPeriod;
use tavana_kit::money::Rial;
use tavana_kit::outbox::Outbox;

pub use self::tables::*;
use crate::domain::deduction::DueEntry;
use crate::domain::instalment::{InstalmentState, ScheduledInstalment, StateFilter};
use crate::domain::remittance::{self, CheckedLine, DueInstalment, Ledger, PartialSettlement};
use crate::error::SettlementError;
use crate::messages::{self, Outgoing};

/// How many values one `IN (...)` list or multi-row insert carries.
const CHUNK: usize = 1_000;
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
    pub lines: Vec<CheckedLine>,
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
    /// True when outbox messages were written (the relay may be woken).
    pub enqueued: bool,
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

fn to_u32(value: i32) -> u32 {
    u32::try_from(value).unwrap_or_default()
}

fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or_default()
}

/// Writes the organization's ledger row: the first statement of every money path.
async fn lock_organization(txn: &DatabaseTransaction, organization_id: &str) -> Result<(), DbErr> {
    let upsert = Query::insert()
        .into_table(OrganizationLedger::Table)
        .columns([
            OrganizationLedger::OrganizationId,
            OrganizationLedger::Version,
        ])
        .values_panic([organization_id.into(), 0i64.into()])
        .on_conflict(
            OnConflict::column(OrganizationLedger::OrganizationId)
                .value(
                    OrganizationLedger::Version,
                    Expr::col((OrganizationLedger::Table, OrganizationLedger::Version)).add(1),
                )
                .to_owned(),
        )
        .to_owned();
    txn.execute(&upsert).await?;
    Ok(())
}

/// Inserts the instalments of schedules, in chunks.
async fn insert_instalments<C: ConnectionTrait>(
    conn: &C,
    schedules: &[&NewSchedule],
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let rows: Vec<(&NewSchedule, &ScheduledInstalment)> = schedules
        .iter()
        .flat_map(|schedule| schedule.instalments.iter().map(move |i| (*schedule, i)))
        .collect();
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
        ]);
        for (schedule, instalment) in chunk {
            insert.values_panic([
                new_id().into(),
                schedule.purchase_id.clone().into(),
                schedule.employee_id.clone().into(),
                schedule.national_id.as_str().into(),
                schedule.full_name.clone().into(),
                schedule.organization_id.clone().into(),
                schedule.merchant_id.clone().into(),
                schedule.merchant_name.clone().into(),
                i32::try_from(instalment.seq).unwrap_or(i32::MAX).into(),
                instalment.period.to_string().into(),
                instalment.amount.as_i64().into(),
                InstalmentState::Unsettled.as_str().into(),
                now.into(),
            ]);
        }
        conn.execute(&insert).await?;
    }
    Ok(())
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
        for chunk in fresh.chunks(INSERT_CHUNK) {
            let mut insert = Query::insert();
            insert.into_table(PurchaseSchedule::Table).columns([
                PurchaseSchedule::PurchaseId,
                PurchaseSchedule::EmployeeId,
                PurchaseSchedule::OrganizationId,
                PurchaseSchedule::Version,
                PurchaseSchedule::CreatedAt,
            ]);
            for schedule in chunk {
                insert.values_panic([
                    schedule.purchase_id.clone().into(),
                    schedule.employee_id.clone().into(),
                    schedule.organization_id.clone().into(),
                    0i64.into(),
                    now.into(),
                ]);
            }
            match txn.execute(&insert).await {
                Ok(_) => {}
                // A concurrent call recorded the same purchase first: that one wins.
                Err(error) if is_unique_violation(&error) => {
                    txn.rollback().await?;
                    return Err(SettlementError::ConcurrentChange);
                }
                Err(error) => return Err(error.into()),
            }
        }
        insert_instalments(&txn, &fresh, now).await?;
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

    /// Cancels a purchase's unsettled instalments and records what stays due (R20).
    ///
    /// Idempotent by `refund_id`; refused when an instalment of the purchase is settled.
    #[tracing::instrument(skip_all, fields(purchase_id = %purchase_id, refund_id = %refund_id))]
    pub async fn cancel_instalments(
        &self,
        purchase_id: &str,
        refund_id: &str,
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
        let schedule = NewSchedule {
            purchase_id: purchase_id.to_owned(),
            employee_id: get(&row, "employee_id")?,
            national_id: NationalId::parse(&national_id)
                .map_err(|_| DbErr::Custom("stored national ID is invalid".into()))?,
            full_name: get(&row, "full_name")?,
            organization_id: organization_id.clone(),
            merchant_id: get(&row, "merchant_id")?,
            merchant_name: get(&row, "merchant_name")?,
            instalments: remaining,
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
        let settled = Query::select()
            .expr_as(Func::count(Expr::col(Asterisk)), "n")
            .from(Instalment::Table)
            .and_where(Expr::col(Instalment::PurchaseId).eq(purchase_id))
            .and_where(Expr::col(Instalment::State).eq(InstalmentState::Settled.as_str()))
            .to_owned();
        let settled: i64 = match txn.query_one(&settled).await? {
            Some(row) => get(&row, "n")?,
            None => 0,
        };
        if settled > 0 {
            txn.rollback().await?;
            return Err(SettlementError::InstalmentAlreadySettled);
        }
        let cancel = Query::update()
            .table(Instalment::Table)
            .value(Instalment::State, InstalmentState::Cancelled.as_str())
            .and_where(Expr::col(Instalment::PurchaseId).eq(purchase_id))
            .and_where(Expr::col(Instalment::State).eq(InstalmentState::Unsettled.as_str()))
            .to_owned();
        txn.execute(&cancel).await?;
        insert_instalments(&txn, &[&schedule], now).await?;
        txn.commit().await?;
        Ok(())
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
                query.and_where(state(InstalmentState::Unsettled));
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
                    seq: to_u32(get::<i32>(row, "seq")?),
                    period: get(row, "period")?,
                    amount: Rial(get(row, "amount")?),
                    state: InstalmentState::parse(&state)
                        .ok_or_else(|| DbErr::Custom(format!("unknown state {state}")))?,
                    settled_at: get(row, "settled_at")?,
                })
            })
            .collect::<Result<Vec<_>, DbErr>>()?;
        let next = if items.len() as u64 > page_size {
            items.truncate(page_size as usize);
            items.last().map(|last| InstalmentCursor {
                period: last.period.clone(),
                id: last.id.clone(),
            })
        } else {
            None
        };
        Ok((items, next))
    }

    /// Loads the next batch of a deduction list (R22): the instalments due in `period` of at
    /// most `employees` employees whose national ID comes after `after`, ordered by national
    /// ID. An empty batch ends the list.
    #[tracing::instrument(skip_all, fields(organization_id = %organization_id, period = %period))]
    pub async fn deduction_batch(
        &self,
        organization_id: &str,
        period: JalaliPeriod,
        after: Option<&str>,
        employees: u64,
    ) -> Result<Vec<DueEntry>, SettlementError> {
        let period = period.to_string();
        let due = |query: &mut SelectStatement| {
            query
                .and_where(Expr::col(Instalment::OrganizationId).eq(organization_id))
                .and_where(Expr::col(Instalment::Period).eq(period.clone()))
                .and_where(Expr::col(Instalment::State).ne(InstalmentState::Cancelled.as_str()));
        };
        let mut ids = Query::select();
        ids.distinct()
            .column(Instalment::NationalId)
            .from(Instalment::Table);
        due(&mut ids);
        if let Some(after) = after {
            ids.and_where(Expr::col(Instalment::NationalId).gt(after));
        }
        ids.order_by(Instalment::NationalId, Order::Asc)
            .limit(employees);
        let ids: Vec<String> = self
            .db
            .query_all(&ids)
            .await?
            .iter()
            .map(|row| get(row, "national_id"))
            .collect::<Result<_, DbErr>>()?;
        let (Some(first), Some(last)) = (ids.first(), ids.last()) else {
            return Ok(Vec::new());
        };
        let mut rows = Query::select();
        rows.columns([
            Instalment::NationalId,
            Instalment::FullName,
            Instalment::Id,
            Instalment::PurchaseId,
            Instalment::Amount,
        ])
        .from(Instalment::Table);
        due(&mut rows);
        rows.and_where(Expr::col(Instalment::NationalId).gte(first.clone()))
            .and_where(Expr::col(Instalment::NationalId).lte(last.clone()))
            .order_by(Instalment::NationalId, Order::Asc)
            .order_by(Instalment::PurchaseId, Order::Asc)
            .order_by(Instalment::Seq, Order::Asc);
        let entries = self
            .db
            .query_all(&rows)
            .await?
            .iter()
            .map(|row| {
                Ok(DueEntry {
                    national_id: get(row, "national_id")?,
                    full_name: get(row, "full_name")?,
                    instalment_id: get(row, "id")?,
                    purchase_id: get(row, "purchase_id")?,
                    amount: Rial(get(row, "amount")?),
                })
            })
            .collect::<Result<Vec<_>, DbErr>>()?;
        Ok(entries)
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
                    line: to_u32(get::<i32>(line, "line")?),
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
            settled_instalments: to_u64(get(&row, "settled_instalments")?),
            settled_amount: Rial(get(&row, "settled_amount")?),
            unmatched,
            recorded_at: get(&row, "recorded_at")?,
        }))
    }

    /// Records a remittance and settles what it pays, in one transaction (R23).
    ///
    /// The same bank reference again (for the organization) returns the first result with
    /// `replayed` and settles nothing, also when both arrive at once (unique constraint).
    #[tracing::instrument(
        skip_all,
        fields(organization_id = %remittance.organization_id, period = %remittance.period, lines = remittance.lines.len())
    )]
    pub async fn record_remittance(
        &self,
        remittance: NewRemittance,
        partial: PartialSettlement,
        now: DateTime<Utc>,
    ) -> Result<RecordedRemittance, SettlementError> {
        let replayed = |record| RecordedRemittance {
            record,
            replayed: true,
            enqueued: false,
        };
        if let Some(record) = self
            .find_by_bank_reference(
                &self.db,
                &remittance.organization_id,
                &remittance.bank_reference,
            )
            .await?
        {
            return Ok(replayed(record));
        }

        let txn = tavana_kit::db::begin_write(&self.db).await?;
        lock_organization(&txn, &remittance.organization_id).await?;
        let remittance_id = new_id();
        let lines_amount = remittance
            .lines
            .iter()
            .map(|line| match line {
                CheckedLine::Valid(valid) => valid.amount.as_i64(),
                CheckedLine::Rejected(rejected) => rejected.amount.as_i64(),
            })
            .fold(0i64, i64::saturating_add);
        let insert = Query::insert()
            .into_table(Remittance::Table)
            .columns([
                Remittance::Id,
                Remittance::OrganizationId,
                Remittance::Period,
                Remittance::BankReference,
                Remittance::LineCount,
                Remittance::LinesAmount,
                Remittance::SettledInstalments,
                Remittance::SettledAmount,
                Remittance::RecordedBy,
                Remittance::RecordedAt,
            ])
            .values_panic([
                remittance_id.clone().into(),
                remittance.organization_id.clone().into(),
                remittance.period.to_string().into(),
                remittance.bank_reference.clone().into(),
                (remittance.lines.len() as i64).into(),
                lines_amount.into(),
                0i64.into(),
                0i64.into(),
                remittance.recorded_by.clone().into(),
                now.into(),
            ])
            .to_owned();
        if let Err(error) = txn.execute(&insert).await {
            if !is_unique_violation(&error) {
                return Err(error.into());
            }
            // Recorded by a concurrent call between our read and our lock.
            txn.rollback().await?;
            let record = self
                .find_by_bank_reference(
                    &self.db,
                    &remittance.organization_id,
                    &remittance.bank_reference,
                )
                .await?
                .ok_or(SettlementError::ConcurrentChange)?;
            return Ok(replayed(record));
        }

        let ledger = self
            .load_ledger(
                &txn,
                &remittance.organization_id,
                remittance.period,
                &remittance.lines,
            )
            .await?;
        let matching = remittance::match_lines(remittance.lines, ledger, partial)?;

        // Settle, guarded by the state: a mismatch means someone else changed them.
        let settled_ids: Vec<&str> = matching.settled.iter().map(|d| d.id.as_str()).collect();
        for chunk in settled_ids.chunks(CHUNK) {
            let update = Query::update()
                .table(Instalment::Table)
                .value(Instalment::State, InstalmentState::Settled.as_str())
                .value(Instalment::SettledAt, now)
                .value(Instalment::RemittanceId, remittance_id.clone())
                .and_where(Expr::col(Instalment::Id).is_in(chunk.iter().copied()))
                .and_where(Expr::col(Instalment::State).eq(InstalmentState::Unsettled.as_str()))
                .to_owned();
            if txn.execute(&update).await?.rows_affected() != chunk.len() as u64 {
                txn.rollback().await?;
                return Err(SettlementError::ConcurrentChange);
            }
        }

        let mut outgoing = self
            .complete_purchases(&txn, &matching.settled, now)
            .await?;
        let mut per_employee: BTreeMap<&str, (u64, i64)> = BTreeMap::new();
        for instalment in &matching.settled {
            let entry = per_employee.entry(&instalment.employee_id).or_default();
            entry.0 += 1;
            entry.1 = entry.1.saturating_add(instalment.amount.as_i64());
        }
        let period = remittance.period.to_string();
        outgoing.extend(
            per_employee
                .into_iter()
                .map(|(employee_id, (count, amount))| {
                    messages::settlement_sms(&remittance_id, employee_id, &period, count, amount)
                }),
        );
        tavana_kit::outbox::enqueue_many(&txn, &outgoing).await?;

        for chunk in matching.unmatched.chunks(INSERT_CHUNK) {
            let mut insert = Query::insert();
            insert.into_table(UnmatchedLine::Table).columns([
                UnmatchedLine::RemittanceId,
                UnmatchedLine::Line,
                UnmatchedLine::NationalId,
                UnmatchedLine::Amount,
                UnmatchedLine::Code,
            ]);
            for line in chunk {
                insert.values_panic([
                    remittance_id.clone().into(),
                    i32::try_from(line.line).unwrap_or(i32::MAX).into(),
                    line.national_id.clone().into(),
                    line.amount.as_i64().into(),
                    line.code.as_str().to_owned().into(),
                ]);
            }
            txn.execute(&insert).await?;
        }

        let totals = Query::update()
            .table(Remittance::Table)
            .value(
                Remittance::SettledInstalments,
                matching.settled.len() as i64,
            )
            .value(Remittance::SettledAmount, matching.settled_amount.as_i64())
            .and_where(Expr::col(Remittance::Id).eq(remittance_id.clone()))
            .to_owned();
        txn.execute(&totals).await?;
        txn.commit().await?;

        tracing::info!(
            remittance_id = %remittance_id,
            settled_instalments = matching.settled.len(),
            settled_amount = matching.settled_amount.as_i64(),
            unmatched = matching.unmatched.len(),
            "remittance recorded"
        );
        Ok(RecordedRemittance {
            record: RemittanceRecord {
                id: remittance_id,
                organization_id: remittance.organization_id,
                period,
                bank_reference: remittance.bank_reference,
                settled_instalments: matching.settled.len() as u64,
                settled_amount: matching.settled_amount,
                unmatched: matching
                    .unmatched
                    .into_iter()
                    .map(|line| StoredUnmatched {
                        line: line.line,
                        national_id: line.national_id,
                        amount: line.amount,
                        code: line.code.as_str().to_owned(),
                    })
                    .collect(),
                recorded_at: now,
            },
            replayed: false,
            enqueued: !outgoing.is_empty(),
        })
    }

    /// Reads, in chunks of employees, who is known in the organization and what they owe up
    /// to and including `period`.
    async fn load_ledger(
        &self,
        txn: &DatabaseTransaction,
        organization_id: &str,
        period: JalaliPeriod,
        lines: &[CheckedLine],
    ) -> Result<Ledger, DbErr> {
        let national_ids: BTreeSet<&NationalId> = lines
            .iter()
            .filter_map(|line| match line {
                CheckedLine::Valid(valid) => Some(&valid.national_id),
                CheckedLine::Rejected(_) => None,
            })
            .collect();
        let national_ids: Vec<&NationalId> = national_ids.into_iter().collect();
        let by_text: HashMap<&str, &NationalId> =
            national_ids.iter().map(|n| (n.as_str(), *n)).collect();
        let mut ledger = Ledger::default();
        for chunk in national_ids.chunks(CHUNK) {
            let texts: Vec<&str> = chunk.iter().map(|n| n.as_str()).collect();
            let known = Query::select()
                .distinct()
                .column(Instalment::NationalId)
                .from(Instalment::Table)
                .and_where(Expr::col(Instalment::OrganizationId).eq(organization_id))
                .and_where(Expr::col(Instalment::NationalId).is_in(texts.iter().copied()))
                .to_owned();
            for row in txn.query_all(&known).await? {
                let text: String = get(&row, "national_id")?;
                if let Some(national_id) = by_text.get(text.as_str()) {
                    ledger.known.insert((*national_id).clone());
                }
            }
            let due = Query::select()
                .columns([
                    Instalment::Id,
                    Instalment::PurchaseId,
                    Instalment::EmployeeId,
                    Instalment::NationalId,
                    Instalment::Period,
                    Instalment::Seq,
                    Instalment::Amount,
                ])
                .from(Instalment::Table)
                .and_where(Expr::col(Instalment::OrganizationId).eq(organization_id))
                .and_where(Expr::col(Instalment::NationalId).is_in(texts.iter().copied()))
                .and_where(Expr::col(Instalment::State).eq(InstalmentState::Unsettled.as_str()))
                .and_where(Expr::col(Instalment::Period).lte(period.to_string()))
                .to_owned();
            for row in txn.query_all(&due).await? {
                let text: String = get(&row, "national_id")?;
                let Some(national_id) = by_text.get(text.as_str()) else {
                    continue;
                };
                let period: String = get(&row, "period")?;
                let period = JalaliPeriod::parse(&period)
                    .map_err(|_| DbErr::Custom(format!("stored period {period} is invalid")))?;
                ledger
                    .due
                    .entry((*national_id).clone())
                    .or_default()
                    .push(DueInstalment {
                        id: get(&row, "id")?,
                        purchase_id: get(&row, "purchase_id")?,
                        employee_id: get(&row, "employee_id")?,
                        period,
                        seq: to_u32(get::<i32>(&row, "seq")?),
                        amount: Rial(get(&row, "amount")?),
                    });
            }
        }
        Ok(ledger)
    }

    /// Marks the purchases left with no unsettled instalment as completed and returns the
    /// messages to credit (R18); a purchase completes once.
    async fn complete_purchases(
        &self,
        txn: &DatabaseTransaction,
        settled: &[DueInstalment],
        now: DateTime<Utc>,
    ) -> Result<Vec<Outgoing>, DbErr> {
        let touched: BTreeSet<&str> = settled.iter().map(|d| d.purchase_id.as_str()).collect();
        let touched: Vec<&str> = touched.into_iter().collect();
        let mut outgoing = Vec::new();
        for chunk in touched.chunks(CHUNK) {
            let open = Query::select()
                .distinct()
                .column(Instalment::PurchaseId)
                .from(Instalment::Table)
                .and_where(Expr::col(Instalment::PurchaseId).is_in(chunk.iter().copied()))
                .and_where(Expr::col(Instalment::State).eq(InstalmentState::Unsettled.as_str()))
                .to_owned();
            let open: BTreeSet<String> = txn
                .query_all(&open)
                .await?
                .iter()
                .map(|row| get(row, "purchase_id"))
                .collect::<Result<_, DbErr>>()?;
            let done: Vec<&str> = chunk
                .iter()
                .copied()
                .filter(|id| !open.contains(*id))
                .collect();
            if done.is_empty() {
                continue;
            }
            let still_open = Query::select()
                .column(PurchaseSchedule::PurchaseId)
                .from(PurchaseSchedule::Table)
                .and_where(Expr::col(PurchaseSchedule::PurchaseId).is_in(done.iter().copied()))
                .and_where(Expr::col(PurchaseSchedule::CompletedAt).is_null())
                .to_owned();
            let newly_done: Vec<String> = txn
                .query_all(&still_open)
                .await?
                .iter()
                .map(|row| get(row, "purchase_id"))
                .collect::<Result<_, DbErr>>()?;
            if newly_done.is_empty() {
                continue;
            }
            let mark = Query::update()
                .table(PurchaseSchedule::Table)
                .value(PurchaseSchedule::CompletedAt, now)
                .and_where(
                    Expr::col(PurchaseSchedule::PurchaseId).is_in(newly_done.iter().cloned()),
                )
                .to_owned();
            txn.execute(&mark).await?;
            outgoing.extend(newly_done.iter().map(|id| messages::purchase_settled(id)));
        }
        Ok(outgoing)
    }

    /// Returns how many outbox rows carry `topic` and `dedup_key` (for tests and checks).
    pub async fn outbox_rows(&self, topic: &str, dedup_key: &str) -> Result<u64, DbErr> {
        let query = Query::select()
            .expr_as(Func::count(Expr::col(Asterisk)), "n")
            .from(Outbox::Table)
            .and_where(Expr::col(Outbox::Topic).eq(topic))
            .and_where(Expr::col(Outbox::DedupKey).eq(dedup_key))
            .to_owned();
        Ok(match self.db.query_one(&query).await? {
            Some(row) => to_u64(get(&row, "n")?),
            None => 0,
        })
    }
}
