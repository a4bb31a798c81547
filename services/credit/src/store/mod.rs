//! The only code that touches the credit database.
//!
//! Every transaction that moves money (purchase, refund, settlement, close, releasing holds
//! that waited for the contract) starts with `UPDATE facility SET version = version + 1
//! WHERE id = ?`: on PostgreSQL it holds the facility's row lock, on SQLite the database
//! write lock, until commit, so these transactions run one after the other per facility
//! and the R16 check inside them sees every hold committed before. No RPC runs inside.

pub mod entities;

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use sea_orm::sea_query::{ArrayType, Expr, ExprTrait, Func, Query, SelectStatement, UnionType};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DatabaseConnection,
    DatabaseTransaction, DbBackend, DbErr, EntityTrait, FromQueryResult, IntoActiveModel,
    QueryFilter, QueryOrder, QuerySelect, Set, SqlErr, Statement, Value,
};
use tavana_kit::db::IDS_PER_STATEMENT;
use tavana_kit::jalali::JalaliPeriod;
use tavana_kit::money::Rial;
use tavana_kit::outbox::{self, OutboxHandle};

use crate::domain::CreditError;
use crate::domain::budget::{self, Hold, HoldRelease};
use crate::domain::card::MAX_PIN_ATTEMPTS;
use crate::domain::facility::{FacilityStatus, FacilityTerms};
use crate::domain::idempotency::KEEP_HOURS;
use crate::domain::purchase::{Deduction, PurchaseKind, PurchaseTerms, apply_refund, schedule};
pub use entities::{card, facility, idempotency_record, purchase, refund};

impl From<DbErr> for CreditError {
    fn from(error: DbErr) -> CreditError {
        CreditError::Internal(anyhow::Error::new(error))
    }
}

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
    pub facility: facility::Model,
    pub card: card::Model,
}

/// What a new purchase needs besides its facility (R14-R16, R19).
pub struct NewPurchase<'a> {
    pub id: String,
    pub facility_id: String,
    pub merchant_id: String,
    pub merchant_name: String,
    pub terms: PurchaseTerms,
    pub now: DateTime<Utc>,
    pub idempotency: IdempotencyScope,
    /// Builds the outbox messages from the stored purchase and its facility.
    pub messages: &'a (dyn Fn(&purchase::Model, &facility::Model) -> Vec<OutboxMessage> + Sync),
    /// Encodes the answer stored for replays.
    pub encode: &'a (dyn Fn(&purchase::Model) -> Vec<u8> + Sync),
}

/// A refund to apply (R20).
pub struct NewRefund<'a> {
    pub refund_id: String,
    pub purchase_id: String,
    pub amount: i64,
    pub now: DateTime<Utc>,
    pub idempotency: Option<IdempotencyScope>,
    /// Builds the outbox messages from the refunded purchase.
    pub messages: &'a (dyn Fn(&purchase::Model, &str) -> Vec<OutboxMessage> + Sync),
    /// Encodes the answer stored for replays.
    pub encode: &'a (dyn Fn(&purchase::Model) -> Vec<u8> + Sync),
}

/// A purchase to record as settled, with what R18 needs to decide about its holds.
#[derive(Clone, Copy, Debug)]
pub struct Settling<'a> {
    pub purchase_id: &'a str,
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
}

/// One row of the summed holds query.
#[derive(Debug, FromQueryResult)]
struct SummedHolds {
    hold_release_at: Option<DateTime<Utc>>,
    hold_waits_for_contract: bool,
    monthly: i64,
    total: i64,
}

/// Sums the unreleased holds of a facility that pass `release_filter`, per release.
///
/// PostgreSQL's `SUM(bigint)` is `numeric`: the cast brings it back to `BIGINT` (a sum
/// beyond it fails the query; it cannot happen, since R16 keeps the holds in effect within
/// the budgets, and a failure refuses rather than lets anything through).
fn summed_holds_query(facility_id: &str, release_filter: Expr) -> SelectStatement {
    let sum = |column: purchase::Column| Func::cast_as(Func::sum(Expr::col(column)), "BIGINT");
    Query::select()
        .columns([
            purchase::Column::HoldReleaseAt,
            purchase::Column::HoldWaitsForContract,
        ])
        .expr_as(sum(purchase::Column::HoldMonthly), "monthly")
        .expr_as(sum(purchase::Column::HoldTotal), "total")
        .from(purchase::Entity)
        .and_where(purchase::Column::FacilityId.eq(facility_id))
        .and_where(purchase::Column::HoldReleasedAt.is_null())
        .and_where(release_filter)
        .group_by_columns([
            purchase::Column::HoldReleaseAt,
            purchase::Column::HoldWaitsForContract,
        ])
        .to_owned()
}

/// Returns the terms of a stored facility.
pub fn terms_of(row: &facility::Model) -> FacilityTerms {
    FacilityTerms::from_stored(
        Rial(row.monthly_credit),
        u32::try_from(row.max_instalments).unwrap_or(0),
        Rial(row.purchasing_power),
    )
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
    serde_json::from_str(&row.schedule)
        .map_err(|error| CreditError::Internal(anyhow::anyhow!("bad stored schedule: {error}")))
}

fn is_unique_violation(error: &DbErr) -> bool {
    matches!(error.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
}

fn internal(message: &str) -> CreditError {
    CreditError::Internal(anyhow::anyhow!(message.to_owned()))
}

impl Store {
    /// Wraps a connection; `outbox` is woken after each commit that enqueued.
    pub fn new(db: DatabaseConnection, outbox: Option<OutboxHandle>) -> Store {
        Store { db, outbox }
    }

    /// Returns the connection.
    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    fn wake_outbox(&self) {
        if let Some(handle) = &self.outbox {
            handle.notify();
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

    /// Takes the facility's lock and returns its row, in one statement (`RETURNING`).
    async fn lock_and_read_facility(
        txn: &DatabaseTransaction,
        facility_id: &str,
    ) -> Result<facility::Model, CreditError> {
        let update = Query::update()
            .table(facility::Entity)
            .value(
                facility::Column::Version,
                Expr::col(facility::Column::Version).add(1),
            )
            .and_where(facility::Column::Id.eq(facility_id))
            .returning_all()
            .to_owned();
        facility::Model::find_by_statement(txn.get_database_backend().build(&update))
            .one(txn)
            .await?
            .ok_or(CreditError::NoFacility)
    }

    // ---- facilities (R12, R13) ----

    /// Opens a facility with its card; idempotent by credit request id (R12). A second
    /// open facility of the same employee is refused.
    #[tracing::instrument(skip_all, fields(facility_id = %new.facility.id))]
    pub async fn open_facility(&self, new: NewFacility) -> Result<facility::Model, CreditError> {
        if let Some(existing) = self
            .facility_by_request(&new.facility.credit_request_id)
            .await?
        {
            return Ok(existing);
        }
        let txn = tavana_kit::db::begin_write(&self.db).await?;
        let open = facility::Entity::find()
            .filter(facility::Column::OpenEmployeeId.eq(new.facility.employee_id.clone()))
            .one(&txn)
            .await?;
        if open.is_some() {
            return Err(CreditError::FacilityAlreadyOpen);
        }
        let inserted = async {
            new.facility
                .clone()
                .into_active_model()
                .reset_all()
                .insert(&txn)
                .await?;
            new.card
                .clone()
                .into_active_model()
                .reset_all()
                .insert(&txn)
                .await?;
            Ok::<(), DbErr>(())
        }
        .await;
        match inserted {
            Ok(()) => {
                txn.commit().await?;
                Ok(new.facility)
            }
            Err(error) if is_unique_violation(&error) => {
                drop(txn);
                // A concurrent open of the same request won, or another request of the
                // same employee is open, or (very rarely) the customer number collided.
                if let Some(existing) = self
                    .facility_by_request(&new.facility.credit_request_id)
                    .await?
                {
                    return Ok(existing);
                }
                let open = facility::Entity::find()
                    .filter(facility::Column::OpenEmployeeId.eq(new.facility.employee_id.clone()))
                    .one(&self.db)
                    .await?;
                if open.is_some() {
                    return Err(CreditError::FacilityAlreadyOpen);
                }
                Err(CreditError::Internal(anyhow::Error::new(error)))
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Returns the facility opened for a credit request.
    pub async fn facility_by_request(
        &self,
        credit_request_id: &str,
    ) -> Result<Option<facility::Model>, CreditError> {
        Ok(facility::Entity::find()
            .filter(facility::Column::CreditRequestId.eq(credit_request_id))
            .one(&self.db)
            .await?)
    }

    /// Returns a facility by id.
    pub async fn facility(
        &self,
        facility_id: &str,
    ) -> Result<Option<facility::Model>, CreditError> {
        Ok(facility::Entity::find_by_id(facility_id.to_owned())
            .one(&self.db)
            .await?)
    }

    /// Returns the employee's open facility, or else their latest closed one.
    pub async fn facility_of_employee(
        &self,
        employee_id: &str,
    ) -> Result<Option<facility::Model>, CreditError> {
        let facilities = facility::Entity::find()
            .filter(facility::Column::EmployeeId.eq(employee_id))
            .order_by_desc(facility::Column::CreatedAt)
            .all(&self.db)
            .await?;
        let open = facilities.iter().find(|f| f.closed_at.is_none()).cloned();
        Ok(open.or_else(|| facilities.into_iter().next()))
    }

    /// Suspends or resumes a facility (support tooling and tests; R14).
    pub async fn set_suspended(
        &self,
        facility_id: &str,
        suspended: bool,
    ) -> Result<(), CreditError> {
        facility::Entity::update_many()
            .col_expr(facility::Column::Suspended, Expr::value(suspended))
            .filter(facility::Column::Id.eq(facility_id))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Closes a facility that owes nothing and enqueues the guarantee's release (R13).
    /// Closing a closed facility changes nothing.
    #[tracing::instrument(skip_all, fields(facility_id = %facility_id))]
    pub async fn close_facility(
        &self,
        facility_id: &str,
        now: DateTime<Utc>,
        messages: Vec<OutboxMessage>,
    ) -> Result<facility::Model, CreditError> {
        let txn = tavana_kit::db::begin_write(&self.db).await?;
        Self::lock_facility(&txn, facility_id).await?;
        let row = facility::Entity::find_by_id(facility_id.to_owned())
            .one(&txn)
            .await?
            .ok_or(CreditError::NoFacility)?;
        if row.closed_at.is_some() {
            txn.commit().await?;
            return Ok(row);
        }
        let owing = purchase::Entity::find()
            .filter(purchase::Column::FacilityId.eq(facility_id))
            .filter(purchase::Column::SettledAt.is_null())
            .filter(
                Expr::col(purchase::Column::Amount).gt(Expr::col(purchase::Column::RefundedAmount)),
            )
            .one(&txn)
            .await?;
        if owing.is_some() {
            return Err(CreditError::FacilityHasDebt);
        }
        let mut active = row.into_active_model();
        active.closed_at = Set(Some(now));
        active.open_employee_id = Set(None);
        let row = active.update(&txn).await?;
        outbox::enqueue_many(&txn, messages).await?;
        txn.commit().await?;
        self.wake_outbox();
        Ok(row)
    }

    // ---- holds and budgets (R16-R18) ----

    /// Returns the purchases of a facility whose holds are not released, one row each
    /// (tests and tooling; the flows read `held_room`).
    pub async fn unreleased_purchases(
        &self,
        facility_id: &str,
    ) -> Result<Vec<purchase::Model>, CreditError> {
        Ok(purchase::Entity::find()
            .filter(purchase::Column::FacilityId.eq(facility_id))
            .filter(purchase::Column::HoldReleasedAt.is_null())
            .all(&self.db)
            .await?)
    }

    /// Returns the holds of a facility that may be in effect at `now`, summed per release.
    pub async fn held_room(
        &self,
        facility_id: &str,
        now: DateTime<Utc>,
    ) -> Result<HeldRoom, CreditError> {
        Self::held_room_in(&self.db, facility_id, now).await
    }

    /// Sums the holds in SQL instead of reading every purchase: a credit purchase keeps
    /// `hold_released_at` NULL for good (the clock releases it, R17), so the unreleased
    /// rows of a facility only grow. Two index range scans of
    /// `idx_purchase_facility_holds` read just the holds that may be in effect: those
    /// released by the clock after `now`, and those waiting for an event (no
    /// `hold_release_at`: instalments until settled, R18). `budget::available` still
    /// decides with the same `now`.
    async fn held_room_in<C: ConnectionTrait>(
        conn: &C,
        facility_id: &str,
        now: DateTime<Utc>,
    ) -> Result<HeldRoom, CreditError> {
        let query = summed_holds_query(facility_id, purchase::Column::HoldReleaseAt.gt(now))
            .union(
                UnionType::All,
                summed_holds_query(facility_id, purchase::Column::HoldReleaseAt.is_null()),
            )
            .to_owned();
        let rows = SummedHolds::find_by_statement(conn.get_database_backend().build(&query))
            .all(conn)
            .await?;
        Ok(HeldRoom {
            waits_for_contract: rows.iter().any(|row| row.hold_waits_for_contract),
            holds: rows
                .iter()
                .map(|row| Hold {
                    monthly: Rial(row.monthly),
                    total: Rial(row.total),
                    release: release_of(row.hold_release_at, row.hold_waits_for_contract),
                })
                .collect(),
        })
    }

    async fn release_waiting_in(
        txn: &DatabaseTransaction,
        facility_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(), CreditError> {
        purchase::Entity::update_many()
            .col_expr(purchase::Column::HoldReleasedAt, Expr::value(now))
            .col_expr(purchase::Column::HoldWaitsForContract, Expr::value(false))
            .filter(purchase::Column::FacilityId.eq(facility_id))
            .filter(purchase::Column::HoldWaitsForContract.eq(true))
            .filter(purchase::Column::HoldReleasedAt.is_null())
            .exec(txn)
            .await?;
        Ok(())
    }

    /// Releases the holds of settled instalment purchases that waited for the
    /// organization's contract, now that it is in force (R18).
    pub async fn release_waiting_holds(
        &self,
        facility_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(), CreditError> {
        let txn = tavana_kit::db::begin_write(&self.db).await?;
        Self::lock_facility(&txn, facility_id).await?;
        Self::release_waiting_in(&txn, facility_id, now).await?;
        txn.commit().await?;
        Ok(())
    }

    // ---- idempotency (R19) ----

    /// Returns the stored answer for `scope`: `Ok(Some)` for the same body,
    /// `Err(IdempotencyKeyReused)` for another body, `Ok(None)` when the key is new.
    pub async fn find_replay(
        &self,
        scope: &IdempotencyScope,
    ) -> Result<Option<Replay>, CreditError> {
        Self::find_replay_in(&self.db, scope).await
    }

    async fn find_replay_in<C: ConnectionTrait>(
        conn: &C,
        scope: &IdempotencyScope,
    ) -> Result<Option<Replay>, CreditError> {
        let record =
            idempotency_record::Entity::find_by_id((scope.caller.clone(), scope.key.clone()))
                .one(conn)
                .await?;
        match record {
            None => Ok(None),
            Some(record) if record.request_hash == scope.request_hash => {
                Ok(Some(Replay(record.response)))
            }
            Some(_) => Err(CreditError::IdempotencyKeyReused),
        }
    }

    async fn save_replay(
        txn: &DatabaseTransaction,
        scope: &IdempotencyScope,
        response: Vec<u8>,
        now: DateTime<Utc>,
    ) -> Result<(), DbErr> {
        // Keys are kept at least KEEP_HOURS; older ones of this caller go lazily here.
        idempotency_record::Entity::delete_many()
            .filter(idempotency_record::Column::Caller.eq(scope.caller.clone()))
            .filter(idempotency_record::Column::CreatedAt.lt(now - Duration::hours(2 * KEEP_HOURS)))
            .exec(txn)
            .await?;
        idempotency_record::ActiveModel {
            caller: Set(scope.caller.clone()),
            idempotency_key: Set(scope.key.clone()),
            request_hash: Set(scope.request_hash.clone()),
            response: Set(response),
            created_at: Set(now),
        }
        .insert(txn)
        .await?;
        Ok(())
    }

    /// After a transaction failed on a unique key, tells whether the idempotency record
    /// that a concurrent request wrote explains it.
    async fn replay_after_conflict(
        &self,
        scope: &IdempotencyScope,
        error: DbErr,
    ) -> Result<Replay, CreditError> {
        match self.find_replay(scope).await? {
            Some(replay) => Ok(replay),
            None => Err(CreditError::Internal(anyhow::Error::new(error))),
        }
    }

    // ---- purchases (R14-R16, R19) ----

    /// Creates a purchase with its holds, schedule, outbox messages and idempotency record
    /// in one transaction serialised per facility; checks R14's facility status and R16
    /// inside it. Returns the stored answer of an earlier request with the same key.
    #[tracing::instrument(skip_all, fields(facility_id = %new.facility_id, purchase_id = %new.id))]
    pub async fn create_purchase(
        &self,
        new: NewPurchase<'_>,
    ) -> Result<Result<purchase::Model, Replay>, CreditError> {
        let txn = tavana_kit::db::begin_write(&self.db).await?;
        let facility_row = Self::lock_and_read_facility(&txn, &new.facility_id).await?;
        if let Some(replay) = Self::find_replay_in(&txn, &new.idempotency).await? {
            return Ok(Err(replay));
        }
        status_of(&facility_row, new.now).ensure_active()?;
        let mut held = Self::held_room_in(&txn, &new.facility_id, new.now).await?;
        if held.waits_for_contract {
            // The caller checked the contract is in force just before (R14), so holds
            // that waited for it are released now (R18).
            Self::release_waiting_in(&txn, &new.facility_id, new.now).await?;
            held = Self::held_room_in(&txn, &new.facility_id, new.now).await?;
        }
        let room = budget::available(terms_of(&facility_row), &held.holds, new.now);
        let period = tavana_kit::jalali::period_of(new.now);
        let hold = Hold::for_purchase(
            new.terms.kind(),
            new.terms.amount(),
            new.terms.months(),
            period,
        );
        budget::ensure_fits(room, &hold)?;

        let deductions = schedule(new.terms, period);
        let row = purchase::Model {
            id: new.id.clone(),
            facility_id: new.facility_id.clone(),
            employee_id: facility_row.employee_id.clone(),
            merchant_id: new.merchant_id.clone(),
            merchant_name: new.merchant_name.clone(),
            kind: new.terms.kind().as_str().to_owned(),
            amount: new.terms.amount().as_i64(),
            refunded_amount: 0,
            months: i32::try_from(new.terms.months()).map_err(|_| internal("months overflow"))?,
            purchase_period: period.to_string(),
            schedule: serde_json::to_string(&deductions)
                .map_err(|error| CreditError::Internal(error.into()))?,
            created_at: new.now,
            created_micros: new.now.timestamp_micros(),
            settled_at: None,
            hold_monthly: hold.monthly.as_i64(),
            hold_total: hold.total.as_i64(),
            hold_release_at: match hold.release {
                HoldRelease::At(instant) => Some(instant),
                _ => None,
            },
            hold_waits_for_contract: false,
            hold_released_at: None,
        };
        let written = async {
            row.clone()
                .into_active_model()
                .reset_all()
                .insert(&txn)
                .await?;
            outbox::enqueue_many(&txn, (new.messages)(&row, &facility_row)).await?;
            Self::save_replay(&txn, &new.idempotency, (new.encode)(&row), new.now).await?;
            Ok::<(), DbErr>(())
        }
        .await;
        match written {
            Ok(()) => {
                txn.commit().await?;
                self.wake_outbox();
                Ok(Ok(row))
            }
            Err(error) if is_unique_violation(&error) => {
                drop(txn);
                // Same merchant key used concurrently for two cards (two facilities, so
                // two locks): the record written by the other request decides.
                Ok(Err(self
                    .replay_after_conflict(&new.idempotency, error)
                    .await?))
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Returns a purchase by id.
    pub async fn purchase(
        &self,
        purchase_id: &str,
    ) -> Result<Option<purchase::Model>, CreditError> {
        Ok(purchase::Entity::find_by_id(purchase_id.to_owned())
            .one(&self.db)
            .await?)
    }

    /// Lists an employee's purchases, newest first, after the keyset position `after`.
    pub async fn list_purchases(
        &self,
        employee_id: &str,
        after: Option<(i64, String)>,
        limit: u64,
    ) -> Result<Vec<purchase::Model>, CreditError> {
        let mut query =
            purchase::Entity::find().filter(purchase::Column::EmployeeId.eq(employee_id));
        if let Some((micros, id)) = after {
            query = query.filter(
                Condition::any()
                    .add(purchase::Column::CreatedMicros.lt(micros))
                    .add(
                        Condition::all()
                            .add(purchase::Column::CreatedMicros.eq(micros))
                            .add(purchase::Column::Id.lt(id)),
                    ),
            );
        }
        Ok(query
            .order_by_desc(purchase::Column::CreatedMicros)
            .order_by_desc(purchase::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?)
    }

    // ---- refunds (R20) ----

    /// Refunds a purchase wholly or in part, in one transaction serialised per facility:
    /// re-splits what remains (R15), recomputes or releases the holds, and enqueues the
    /// cancellation of the instalments in settlement.
    #[tracing::instrument(skip_all, fields(purchase_id = %new.purchase_id))]
    pub async fn refund_purchase(
        &self,
        facility_id: &str,
        new: NewRefund<'_>,
    ) -> Result<Result<purchase::Model, Replay>, CreditError> {
        let txn = tavana_kit::db::begin_write(&self.db).await?;
        Self::lock_facility(&txn, facility_id).await?;
        if let Some(scope) = &new.idempotency
            && let Some(replay) = Self::find_replay_in(&txn, scope).await?
        {
            return Ok(Err(replay));
        }
        let row = purchase::Entity::find_by_id(new.purchase_id.clone())
            .one(&txn)
            .await?
            .ok_or(CreditError::PurchaseNotFound)?;
        let kind = PurchaseKind::parse(&row.kind).ok_or_else(|| internal("bad stored kind"))?;
        let period = JalaliPeriod::parse(&row.purchase_period)
            .map_err(|error| CreditError::Internal(error.into()))?;
        let months = u32::try_from(row.months).map_err(|_| internal("bad stored months"))?;
        if row.settled_at.is_some() {
            return Err(CreditError::RefundWindowClosed);
        }
        let outcome = apply_refund(
            Rial(row.amount),
            months,
            period,
            Rial(row.refunded_amount),
            new.amount,
            new.now,
        )?;
        let mut active = row.clone().into_active_model();
        active.refunded_amount = Set(outcome.refunded_total.as_i64());
        active.schedule = Set(serde_json::to_string(&outcome.remaining_schedule)
            .map_err(|error| CreditError::Internal(error.into()))?);
        if outcome.remaining_amount.is_positive() {
            let hold = Hold::for_purchase(kind, outcome.remaining_amount, months, period);
            active.hold_monthly = Set(hold.monthly.as_i64());
            active.hold_total = Set(hold.total.as_i64());
        } else {
            // A whole refund returns the room at once (R20).
            active.hold_released_at = Set(Some(new.now));
        }
        let written = async {
            let updated = active.update(&txn).await?;
            refund::ActiveModel {
                id: Set(new.refund_id.clone()),
                purchase_id: Set(updated.id.clone()),
                amount: Set(new.amount),
                created_at: Set(new.now),
            }
            .insert(&txn)
            .await?;
            outbox::enqueue_many(&txn, (new.messages)(&updated, &new.refund_id)).await?;
            if let Some(scope) = &new.idempotency {
                Self::save_replay(&txn, scope, (new.encode)(&updated), new.now).await?;
            }
            Ok::<purchase::Model, DbErr>(updated)
        }
        .await;
        match written {
            Ok(updated) => {
                txn.commit().await?;
                self.wake_outbox();
                Ok(Ok(updated))
            }
            Err(error) if is_unique_violation(&error) && new.idempotency.is_some() => {
                drop(txn);
                let scope = new
                    .idempotency
                    .as_ref()
                    .ok_or_else(|| internal("no scope"))?;
                Ok(Err(self.replay_after_conflict(scope, error).await?))
            }
            Err(error) => Err(error.into()),
        }
    }

    // ---- settlement (R18) ----

    /// Returns the purchases among `purchase_ids` that exist, in no particular order.
    pub async fn purchases(
        &self,
        purchase_ids: &[&str],
    ) -> Result<Vec<purchase::Model>, CreditError> {
        Ok(tavana_kit::db::find_in::<purchase::Entity>(
            &self.db,
            purchase::Column::Id,
            purchase_ids,
        )
        .await?)
    }

    /// Returns the facilities among `facility_ids` that exist, in no particular order.
    pub async fn facilities(
        &self,
        facility_ids: &[&str],
    ) -> Result<Vec<facility::Model>, CreditError> {
        Ok(tavana_kit::db::find_in::<facility::Entity>(
            &self.db,
            facility::Column::Id,
            facility_ids,
        )
        .await?)
    }

    /// Records that purchases are settled, in one transaction; idempotent per purchase. An
    /// instalment purchase's holds are released when its `contract_in_force`, or else kept
    /// until it is (R18). A credit purchase's holds keep their clock release (R17). Returns
    /// how many purchases this call marked (the others were settled already).
    ///
    /// It takes the lock of every facility involved (in one statement, in id order on
    /// PostgreSQL so that two batches never wait for each other in a cycle), reads the
    /// purchases again under the locks and writes them with at most three `UPDATE`s per
    /// [`IDS_PER_STATEMENT`] purchases: one per outcome of R18.
    #[tracing::instrument(skip_all, fields(purchases = settling.len()))]
    pub async fn mark_settled(
        &self,
        settling: &[Settling<'_>],
        now: DateTime<Utc>,
    ) -> Result<u64, CreditError> {
        if settling.is_empty() {
            return Ok(0);
        }
        let in_force: HashMap<&str, bool> = settling
            .iter()
            .map(|purchase| (purchase.purchase_id, purchase.contract_in_force))
            .collect();
        let mut facility_ids: Vec<&str> = settling.iter().map(|p| p.facility_id).collect();
        facility_ids.sort_unstable();
        facility_ids.dedup();
        let purchase_ids: Vec<&str> = in_force.keys().copied().collect();

        let txn = tavana_kit::db::begin_write(&self.db).await?;
        Self::lock_facilities(&txn, &facility_ids).await?;
        let mut plain = Vec::new();
        let mut release = Vec::new();
        let mut wait = Vec::new();
        let rows =
            tavana_kit::db::find_in::<purchase::Entity>(&txn, purchase::Column::Id, &purchase_ids)
                .await?;
        for row in rows.into_iter().filter(|row| row.settled_at.is_none()) {
            let is_instalment = row.kind == PurchaseKind::Instalment.as_str();
            let unreleased = row.hold_released_at.is_none();
            let outcome = match (is_instalment && unreleased, in_force.get(row.id.as_str())) {
                (false, _) => &mut plain,
                (true, Some(true)) => &mut release,
                (true, _) => &mut wait,
            };
            outcome.push(row.id);
        }
        let mut marked = 0;
        let holds = [
            (&plain, None),
            (
                &release,
                Some((purchase::Column::HoldReleasedAt, Expr::value(now))),
            ),
            (
                &wait,
                Some((purchase::Column::HoldWaitsForContract, Expr::value(true))),
            ),
        ];
        for (ids, hold) in holds {
            for ids in ids.chunks(IDS_PER_STATEMENT) {
                let mut update = purchase::Entity::update_many()
                    .col_expr(purchase::Column::SettledAt, Expr::value(now));
                if let Some((column, value)) = hold.clone() {
                    update = update.col_expr(column, value);
                }
                marked += update
                    .filter(purchase::Column::Id.is_in(ids.iter().map(String::as_str)))
                    .filter(purchase::Column::SettledAt.is_null())
                    .exec(&txn)
                    .await?
                    .rows_affected;
            }
        }
        txn.commit().await?;
        Ok(marked)
    }

    /// Takes the locks of several facilities (`facility_ids` sorted, without repeats) as
    /// the transaction's first statement(s); see the module's comment.
    async fn lock_facilities(
        txn: &DatabaseTransaction,
        facility_ids: &[&str],
    ) -> Result<(), CreditError> {
        let mut locked = 0;
        if txn.get_database_backend() == DbBackend::Postgres {
            // The rows are locked in the order the subquery returns them.
            let ids = facility_ids
                .iter()
                .map(|id| Value::String(Some((*id).to_owned())))
                .collect();
            let statement = Statement::from_sql_and_values(
                DbBackend::Postgres,
                "UPDATE facility SET version = version + 1 WHERE id IN \
                 (SELECT id FROM facility WHERE id = ANY($1) ORDER BY id FOR UPDATE)",
                [Value::Array(ArrayType::String, Some(Box::new(ids)))],
            );
            locked = txn.execute_raw(statement).await?.rows_affected();
        } else {
            // SQLite's write lock is the database's: the first statement takes it.
            for ids in facility_ids.chunks(IDS_PER_STATEMENT) {
                locked += facility::Entity::update_many()
                    .col_expr(
                        facility::Column::Version,
                        Expr::col(facility::Column::Version).add(1),
                    )
                    .filter(facility::Column::Id.is_in(ids.iter().copied()))
                    .exec(txn)
                    .await?
                    .rows_affected;
            }
        }
        if locked != facility_ids.len() as u64 {
            return Err(CreditError::NoFacility);
        }
        Ok(())
    }

    // ---- cards (R21) ----

    /// Returns the card of a facility.
    pub async fn card_of_facility(
        &self,
        facility_id: &str,
    ) -> Result<Option<card::Model>, CreditError> {
        Ok(card::Entity::find_by_id(facility_id.to_owned())
            .one(&self.db)
            .await?)
    }

    /// Returns the card with a customer number.
    pub async fn card_by_number(
        &self,
        customer_number: &str,
    ) -> Result<Option<card::Model>, CreditError> {
        Ok(card::Entity::find()
            .filter(card::Column::CustomerNumber.eq(customer_number))
            .one(&self.db)
            .await?)
    }

    /// Counts a wrong PIN atomically and locks the card at the fifth; returns the wrong
    /// PINs counted so far and whether the card is now locked.
    pub async fn record_wrong_pin(
        &self,
        facility_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(u32, bool), CreditError> {
        let txn = tavana_kit::db::begin_write(&self.db).await?;
        card::Entity::update_many()
            .col_expr(
                card::Column::FailedAttempts,
                Expr::col(card::Column::FailedAttempts).add(1),
            )
            .col_expr(
                card::Column::Locked,
                Expr::col(card::Column::Locked).or(Expr::col(card::Column::FailedAttempts)
                    .add(1)
                    .gte(MAX_PIN_ATTEMPTS as i32)),
            )
            .col_expr(card::Column::UpdatedAt, Expr::value(now))
            .filter(card::Column::FacilityId.eq(facility_id))
            .exec(&txn)
            .await?;
        let card = card::Entity::find_by_id(facility_id.to_owned())
            .one(&txn)
            .await?
            .ok_or(CreditError::CardNotFound)?;
        txn.commit().await?;
        Ok((
            u32::try_from(card.failed_attempts).unwrap_or(0),
            card.locked,
        ))
    }

    /// Forgets the wrong PINs after a right one (the count is of consecutive wrong PINs).
    pub async fn reset_wrong_pins(&self, facility_id: &str) -> Result<(), CreditError> {
        card::Entity::update_many()
            .col_expr(card::Column::FailedAttempts, Expr::value(0))
            .filter(card::Column::FacilityId.eq(facility_id))
            .filter(card::Column::Locked.eq(false))
            .filter(card::Column::FailedAttempts.gt(0))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Stores a new PIN hash; the PIN no longer has to change.
    pub async fn change_pin(
        &self,
        facility_id: &str,
        pin_hash: String,
        now: DateTime<Utc>,
    ) -> Result<(), CreditError> {
        card::Entity::update_many()
            .col_expr(card::Column::PinHash, Expr::value(pin_hash))
            .col_expr(card::Column::PinMustChange, Expr::value(false))
            .col_expr(card::Column::FailedAttempts, Expr::value(0))
            .col_expr(card::Column::UpdatedAt, Expr::value(now))
            .filter(card::Column::FacilityId.eq(facility_id))
            .filter(card::Column::Locked.eq(false))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Unlocks a card and forgets its wrong PINs (support); false when there is no such card.
    pub async fn unlock_card(
        &self,
        customer_number: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, CreditError> {
        let result = card::Entity::update_many()
            .col_expr(card::Column::FailedAttempts, Expr::value(0))
            .col_expr(card::Column::Locked, Expr::value(false))
            .col_expr(card::Column::UpdatedAt, Expr::value(now))
            .filter(card::Column::CustomerNumber.eq(customer_number))
            .exec(&self.db)
            .await?;
        Ok(result.rows_affected > 0)
    }
}
