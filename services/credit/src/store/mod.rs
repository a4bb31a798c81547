//! The only code that touches the credit database.
//!
//! Every transaction that moves money (purchase, refund, settlement, close, releasing holds
//! that waited for the contract) starts by taking its facility's lock, `UPDATE facility SET
//! version = version + 1 WHERE id = ?`: on PostgreSQL it holds the facility's row lock
//! until commit (on SQLite `begin_write` already holds the database's write lock), so these
//! transactions run one after the other per facility and the R16 check inside them sees
//! every hold committed before. Settlement's batches, which lock thousands of facilities,
//! take the same row locks without writing them (`Store::lock_facilities`); so does a
//! purchase on SQLite, whose first statement only reads (`Store::lock_and_read_held`).
//! No RPC runs inside.

// The entities' column fields mirror the tables; the migrations document the columns.
#[allow(missing_docs)]
pub mod entities;

mod arrears;
mod cards;
mod facilities;
mod holds;
mod idempotency;
mod purchases;
mod refunds;
mod settlement;

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use sea_orm::sea_query::{ArrayType, Expr, ExprTrait, OnConflict, Query};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DatabaseConnection,
    DatabaseTransaction, DbBackend, DbErr, EntityTrait, FromQueryResult, IntoActiveModel,
    QueryFilter, QueryOrder, QuerySelect, QueryTrait, Set, SqlErr, Statement, Value,
};
use tavana_kit::audit::AuditEntry;
use tavana_kit::db::IDS_PER_STATEMENT;
use tavana_kit::jalali::JalaliPeriod;
use tavana_kit::ledger_digest::LedgerDigest;
use tavana_kit::money::Rial;
use tavana_kit::outbox::{self, OutboxHandle};

use crate::domain::budget::{self, Hold, HoldRelease};
use crate::domain::card::MAX_PIN_ATTEMPTS;
use crate::domain::facility::{FacilityStatus, FacilityTerms};
use crate::domain::idempotency::KEEP_HOURS;
use crate::domain::purchase::{Deduction, PurchaseKind, PurchaseTerms, schedule};
use crate::domain::rules::{PurchaseFacts, RefundFacts, Refunded};
use crate::error::CreditError;
pub use entities::{
    card, employee_arrears, facility, facility_held, idempotency_record, purchase, refund,
};

pub use settlement::{LedgerRow, StoredRange};
/// An outgoing message, written to the outbox in the transaction of its change.
pub use tavana_kit::outbox::Message as OutboxMessage;

/// Where an idempotency record is kept: per caller and key, with the request's hash.
#[derive(Clone, Debug)]
pub struct IdempotencyScope {
    /// `employee:<id>` or `merchant:<id>`.
    pub caller: String,
    /// The client's key.
    pub key: String,
    /// The request's hash.
    pub request_hash: String,
}

/// The stored answer to an earlier request with the same key and body.
#[derive(Clone, Debug)]
pub struct Replay(pub Vec<u8>);

/// A new facility with its card (R12, R21).
#[derive(Clone, Debug)]
pub struct NewFacility {
    /// The facility row.
    pub facility: facility::Model,
    /// Its card row (R21).
    pub card: card::Model,
}

/// What a new purchase needs besides its facility (R14-R16, R19).
pub struct NewPurchase<'a> {
    /// The new purchase's id.
    pub id: String,
    /// The facility it is made on.
    pub facility_id: String,
    /// The merchant.
    pub merchant_id: String,
    /// The merchant's name, kept for the receipt.
    pub merchant_name: String,
    /// The parsed terms (R14, R15).
    pub terms: PurchaseTerms,
    /// The purchase instant.
    pub now: DateTime<Utc>,
    /// Where its idempotency record is kept (R19).
    pub idempotency: &'a IdempotencyScope,
    /// Builds the outbox messages from the stored purchase and its facility.
    pub messages: &'a (dyn Fn(&purchase::Model, &facility::Model) -> Vec<OutboxMessage> + Sync),
    /// Encodes the answer stored for replays.
    pub encode: &'a (dyn Fn(&purchase::Model) -> Vec<u8> + Sync),
}

/// A refund to apply (R20).
pub struct NewRefund<'a> {
    /// The new refund's id.
    pub refund_id: String,
    /// The refunded purchase.
    pub purchase_id: String,
    /// The refunded amount in rial.
    pub amount: i64,
    /// The refund instant.
    pub now: DateTime<Utc>,
    /// Where its idempotency record is kept (R19); none for a service.
    pub idempotency: Option<IdempotencyScope>,
    /// Builds the outbox messages from the refunded purchase.
    pub messages: &'a (dyn Fn(&purchase::Model, &str) -> Vec<OutboxMessage> + Sync),
    /// Encodes the answer stored for replays.
    pub encode: &'a (dyn Fn(&purchase::Model) -> Vec<u8> + Sync),
}

/// A purchase to record as settled, with what R18 needs to decide about its holds.
#[derive(Clone, Copy, Debug)]
pub struct Settling<'a> {
    /// The settled purchase.
    pub purchase_id: &'a str,
    /// Its facility.
    pub facility_id: &'a str,
    /// Whether the organization's contract is in force; asked only when the purchase has
    /// instalment holds that wait for settlement, and else true.
    pub contract_in_force: bool,
}

/// The database of the credit service.
#[derive(Clone)]
pub struct Store {
    db: DatabaseConnection,
    outbox: Option<OutboxHandle>,
}

/// The holds of a purchase row that are not released yet.
pub fn hold_of(row: &purchase::Model) -> Option<Hold> {
    if row.hold_released_at.is_some() {
        return None;
    }
    Some(Hold {
        monthly: Rial(row.hold_monthly),
        total: Rial(row.hold_total),
        release: release_of(row.hold_release_at, row.hold_waits_for_contract),
    })
}

/// Returns when the holds of a settled instalment purchase end (R16, R18): see
/// [`budget::settled_instalment_release`].
fn settled_release_of(
    purchase_period: &str,
    months: i32,
    settled_at: DateTime<Utc>,
) -> Result<DateTime<Utc>, CreditError> {
    let period = JalaliPeriod::parse(purchase_period)
        .map_err(|_| internal("stored purchase period is invalid"))?;
    let months =
        u32::try_from(months).map_err(|_| internal("stored purchase months are invalid"))?;
    Ok(budget::settled_instalment_release(
        period, months, settled_at,
    ))
}

/// Returns how a settled instalment purchase's holds ending at `at` are written: released
/// now (`hold_released_at`) when that instant has come, else left to the clock
/// (`hold_release_at`).
fn release_column(at: DateTime<Utc>, now: DateTime<Utc>) -> (purchase::Column, DateTime<Utc>) {
    if at <= now {
        (purchase::Column::HoldReleasedAt, now)
    } else {
        (purchase::Column::HoldReleaseAt, at)
    }
}

/// Returns when a stored hold ends, from its `hold_release_at` and
/// `hold_waits_for_contract` columns.
fn release_of(release_at: Option<DateTime<Utc>>, waits_for_contract: bool) -> HoldRelease {
    match (release_at, waits_for_contract) {
        (Some(instant), _) => HoldRelease::At(instant),
        (None, true) => HoldRelease::UntilContractInForce,
        (None, false) => HoldRelease::UntilSettled,
    }
}

/// The holds of a facility that may be in effect at an instant, summed per release
/// (R16-R18): what `budget::available` and `budget::next_release_at` need, in a handful of
/// rows whatever the number of purchases.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeldRoom {
    /// The holds summed per release, as `budget::sum_per_release` sums them.
    pub holds: Vec<Hold>,
    /// Some of them are settled instalment purchases waiting for the organization's
    /// contract to be in force (R18).
    pub waits_for_contract: bool,
    /// The employee's overdue amount, as settlement last counted it (R29).
    pub overdue_amount: Rial,
}

/// Returns the terms of a stored facility.
pub fn terms_of(row: &facility::Model) -> Result<FacilityTerms, CreditError> {
    let max_instalments = u32::try_from(row.max_instalments)
        .map_err(|_| internal("stored facility max_instalments is negative"))?;
    Ok(FacilityTerms::from_stored(
        Rial(row.monthly_credit),
        max_instalments,
        Rial(row.purchasing_power),
    ))
}

/// Returns the status of a stored facility at `now`.
pub fn status_of(row: &facility::Model, now: DateTime<Utc>) -> FacilityStatus {
    FacilityStatus::at(
        now,
        row.activates_at,
        row.suspended,
        row.closed_at.is_some(),
    )
}

/// Returns the stored schedule of a purchase.
pub fn schedule_of(row: &purchase::Model) -> Result<Vec<Deduction>, CreditError> {
    parse_schedule(&row.schedule)
}

/// R31's term of a purchase's schedule (`tavana_kit::ledger_digest`), and whether the
/// schedule adds up to `due`, the amount less refunds.
pub fn schedule_term(purchase_id: &str, due: i64, schedule: &[Deduction]) -> (i64, bool) {
    let periods: Vec<String> = schedule.iter().map(|d| d.period.to_string()).collect();
    LedgerDigest::purchase_term(
        purchase_id,
        due,
        periods
            .iter()
            .map(String::as_str)
            .zip(schedule.iter().map(|d| d.amount.as_i64())),
    )
}

/// The term stored with a purchase (`ledger_term`), written with its schedule: none when
/// the schedule does not add up to `due`, so that a digest of its range reads its rows and
/// reports it.
fn ledger_term(purchase_id: &str, due: i64, schedule: &[Deduction]) -> Option<i64> {
    let (term, balanced) = schedule_term(purchase_id, due, schedule);
    balanced.then_some(term)
}

/// Reads a stored schedule (JSON).
pub fn parse_schedule(stored: &str) -> Result<Vec<Deduction>, CreditError> {
    serde_json::from_str(stored)
        .map_err(|error| CreditError::Internal(anyhow::anyhow!("bad stored schedule: {error}")))
}

fn is_unique_violation(error: &DbErr) -> bool {
    matches!(error.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
}

fn internal(message: &str) -> CreditError {
    CreditError::internal(message)
}

impl Store {
    /// Wraps a connection; `outbox` delivers what each committed transaction enqueued.
    pub fn new(db: DatabaseConnection, outbox: Option<OutboxHandle>) -> Store {
        Store { db, outbox }
    }

    /// Returns the connection.
    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Writes a transaction's messages to the outbox, for [`Store::deliver_now`] after the
    /// commit.
    async fn enqueue(
        &self,
        txn: &DatabaseTransaction,
        messages: Vec<OutboxMessage>,
    ) -> Result<outbox::Enqueued, DbErr> {
        match &self.outbox {
            Some(handle) => handle.enqueue(txn, messages).await,
            None => outbox::enqueue_many(txn, messages).await,
        }
    }

    /// The statements that enqueue `messages` as [`Store::enqueue`] does, for a batch
    /// ([`tavana_kit::db::batch`]).
    fn enqueue_statements(
        &self,
        backend: DbBackend,
        messages: Vec<OutboxMessage>,
    ) -> (Vec<Statement>, outbox::Written) {
        match &self.outbox {
            Some(handle) => handle.enqueue_statements(backend, messages),
            None => outbox::enqueue_statements(backend, messages),
        }
    }

    /// Delivers at once what a committed transaction enqueued (read your writes).
    async fn deliver_now(&self, enqueued: &outbox::Enqueued) {
        if let Some(handle) = &self.outbox {
            handle.deliver_now(enqueued).await;
        }
    }

    /// Takes the facility's lock: the first statement of every money transaction.
    async fn lock_facility(
        txn: &DatabaseTransaction,
        facility_id: &str,
    ) -> Result<(), CreditError> {
        let result = facility::Entity::update_many()
            .col_expr(
                facility::Column::Version,
                Expr::col(facility::Column::Version).add(1),
            )
            .filter(facility::Column::Id.eq(facility_id))
            .exec(txn)
            .await?;
        if result.rows_affected != 1 {
            return Err(CreditError::NoFacility);
        }
        Ok(())
    }
}
