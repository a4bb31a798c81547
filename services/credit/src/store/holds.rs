//! Holds and budgets (R16-R18).

use sea_orm::sea_query::SelectStatement;
use sea_orm::{Iterable, JoinType};

use super::*;

impl Store {
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

    /// Returns the holds of a facility that may be in effect at `now`, summed per release,
    /// and its employee's overdue amount.
    pub async fn held_room(
        &self,
        facility: &facility::Model,
        now: DateTime<Utc>,
    ) -> Result<HeldRoom, CreditError> {
        Self::held_room_in(&self.db, facility, now).await
    }

    /// Reads the facility's held room from its counters (`facility_held`, kept by triggers
    /// on `purchase` in the transaction of every hold's change) and the employee's arrears
    /// row, in one statement ([`facilities_with_held_room`]).
    pub(super) async fn held_room_in<C: ConnectionTrait>(
        conn: &C,
        facility: &facility::Model,
        now: DateTime<Utc>,
    ) -> Result<HeldRoom, CreditError> {
        let facilities =
            facilities_with_held_room(conn, facility::Column::Id.eq(facility.id.as_str()), now)
                .await?;
        Ok(held_room_of_facility(facilities, &facility.id, now))
    }

    /// Returns the employee's open facility (or else their latest closed one) with its held
    /// room at `now`, in one statement: the employee's facilities, each with its counters
    /// and the employee's arrears left-joined (an employee has a facility or two).
    pub async fn facility_and_held_room(
        &self,
        employee_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<(facility::Model, HeldRoom)>, CreditError> {
        let facilities =
            facilities_with_held_room(&self.db, facility::Column::EmployeeId.eq(employee_id), now)
                .await?;
        let chosen =
            facilities::open_or_latest_of(facilities.iter().map(|(facility, _)| facility)).cloned();
        Ok(chosen.map(|facility| {
            let held = held_room_of_facility(facilities, &facility.id, now);
            (facility, held)
        }))
    }

    /// Takes the facility's lock and reads it with its held room (R16), as the first
    /// statement(s) of a purchase's transaction.
    ///
    /// On SQLite the transaction already holds the database's write lock (`begin_write`),
    /// so one read of the facility with its counters and arrears joined does it, and the
    /// facility's page is not written. On PostgreSQL the row lock is a statement of its
    /// own before that read: a locking read that waited for another purchase would see
    /// that purchase's facility row but the counters joined to it as they were before it
    /// (READ COMMITTED re-reads only the rows it locks); the next statement sees both.
    pub(super) async fn lock_and_read_held(
        txn: &DatabaseTransaction,
        facility_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(facility::Model, HeldRoom), CreditError> {
        if txn.get_database_backend() == DbBackend::Postgres {
            Self::lock_facility(txn, facility_id).await?;
        }
        let facilities =
            facilities_with_held_room(txn, facility::Column::Id.eq(facility_id), now).await?;
        let facility = facilities
            .first()
            .map(|(facility, _)| facility.clone())
            .ok_or(CreditError::NoFacility)?;
        let held = held_room_of_facility(facilities, &facility.id, now);
        Ok((facility, held))
    }

    pub(super) async fn release_waiting_in(
        txn: &DatabaseTransaction,
        facility_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(), CreditError> {
        let waiting = purchase::Entity::find()
            .filter(purchase::Column::FacilityId.eq(facility_id))
            .filter(purchase::Column::HoldWaitsForContract.eq(true))
            .filter(purchase::Column::HoldReleasedAt.is_null())
            .all(txn)
            .await?;
        // Released by the clock, no earlier than the 8th of the last deduction period (R16).
        let mut release: std::collections::BTreeMap<DateTime<Utc>, Vec<String>> =
            std::collections::BTreeMap::new();
        for row in waiting {
            let at = settled_release_of(&row.purchase_period, row.months, now)?;
            release.entry(at).or_default().push(row.id);
        }
        for (at, ids) in &release {
            let (column, at) = release_column(*at, now);
            for ids in ids.chunks(IDS_PER_STATEMENT) {
                purchase::Entity::update_many()
                    .col_expr(column, Expr::value(at))
                    .col_expr(purchase::Column::HoldWaitsForContract, Expr::value(false))
                    .filter(purchase::Column::Id.is_in(ids.iter().map(String::as_str)))
                    .filter(purchase::Column::HoldWaitsForContract.eq(true))
                    .exec(txn)
                    .await?;
            }
        }
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
}

/// The monthly room the employee's re-aged arrears keep held (R16, R29): they are
/// deducted in periods not due yet, on top of what the purchases' holds cover, and stay
/// there when an early remittance pays them; held until the 8th of the last of those
/// periods, as settlement last counted them.
fn arrears_hold(held_monthly: i64, held_until_period: &str, now: DateTime<Utc>) -> Option<Hold> {
    let period = JalaliPeriod::parse(held_until_period).ok()?;
    let until = tavana_kit::jalali::release_instant(period);
    (held_monthly > 0 && until > now).then_some(Hold {
        monthly: Rial(held_monthly),
        total: Rial::ZERO,
        release: HoldRelease::At(until),
    })
}

/// The counters of the releases after `now`: the holds that may be in effect (the clock
/// released the others, R17); `budget::available` still decides with the same `now`.
fn counters_in_effect(facility: Expr, now: DateTime<Utc>) -> Condition {
    Condition::all()
        .add(facility)
        .add(facility_held::Column::ReleaseAt.gt(now))
        .add(facility_held::Column::Purchases.gt(0))
}

/// Selects the counters' and the arrears' columns that [`HeldRow`] reads.
fn held_columns(query: &mut SelectStatement) -> &SelectStatement {
    query
        .columns([
            facility_held::Column::ReleaseAt,
            facility_held::Column::WaitsForContract,
            facility_held::Column::Monthly,
            facility_held::Column::Total,
        ])
        .columns([
            employee_arrears::Column::OverdueAmount,
            employee_arrears::Column::HeldMonthly,
            employee_arrears::Column::HeldUntilPeriod,
        ])
}

/// Returns the held room of one facility's rows: its counters, and the arrears row, which
/// repeats on every row (one row when there is no counter) and gives both the arrears
/// hold and the overdue amount (R29).
fn held_room_of(rows: &[HeldRow], now: DateTime<Utc>) -> HeldRoom {
    let mut held = HeldRoom::default();
    for row in rows {
        if let (Some(release_at), Some(waits), Some(monthly), Some(total)) = (
            row.release_at,
            row.waits_for_contract,
            row.monthly,
            row.total,
        ) {
            held.waits_for_contract |= waits;
            held.holds.push(Hold {
                monthly: Rial(monthly),
                total: Rial(total),
                release: release_of((release_at != until_event()).then_some(release_at), waits),
            });
        }
    }
    if let Some(row) = rows.first() {
        held.overdue_amount = Rial(row.overdue_amount.unwrap_or(0));
        held.holds.extend(arrears_hold(
            row.held_monthly.unwrap_or(0),
            row.held_until_period.as_deref().unwrap_or(""),
            now,
        ));
    }
    held
}

/// The facilities `filter` picks, each beside its counters in effect at `now` and its
/// employee's arrears, in one statement: a row per counter (one when there is none).
async fn facilities_with_held_room<C: ConnectionTrait>(
    conn: &C,
    filter: sea_orm::sea_query::SimpleExpr,
    now: DateTime<Utc>,
) -> Result<Vec<(facility::Model, HeldRow)>, DbErr> {
    let mut query = Query::select();
    query
        .columns(facility::Column::iter().map(|column| (facility::Entity, column)))
        .from(facility::Entity)
        .join(
            JoinType::LeftJoin,
            facility_held::Entity,
            counters_in_effect(
                Expr::col((facility_held::Entity, facility_held::Column::FacilityId))
                    .equals((facility::Entity, facility::Column::Id)),
                now,
            ),
        )
        .join(
            JoinType::LeftJoin,
            employee_arrears::Entity,
            Expr::col((
                employee_arrears::Entity,
                employee_arrears::Column::EmployeeId,
            ))
            .equals((facility::Entity, facility::Column::EmployeeId)),
        )
        .and_where(filter);
    conn.query_all(held_columns(&mut query))
        .await?
        .iter()
        .map(|row| {
            Ok((
                facility::Model::from_query_result(row, "")?,
                HeldRow::from_query_result(row, "")?,
            ))
        })
        .collect()
}

/// The held room of the facility `facility_id` among the rows of
/// [`facilities_with_held_room`].
fn held_room_of_facility(
    facilities: Vec<(facility::Model, HeldRow)>,
    facility_id: &str,
    now: DateTime<Utc>,
) -> HeldRoom {
    let rows: Vec<HeldRow> = facilities
        .into_iter()
        .filter(|(row, _)| row.id == facility_id)
        .map(|(_, held)| held)
        .collect();
    held_room_of(&rows, now)
}

/// One row of the held room's statement: a counter (none when the facility has no hold
/// that may be in effect) beside the employee's arrears (none when settlement sent none).
#[derive(Debug, FromQueryResult)]
struct HeldRow {
    release_at: Option<DateTime<Utc>>,
    waits_for_contract: Option<bool>,
    monthly: Option<i64>,
    total: Option<i64>,
    overdue_amount: Option<i64>,
    held_monthly: Option<i64>,
    held_until_period: Option<String>,
}

/// The release under which the counters keep holds with no clock release (R18): the
/// migration's `UNTIL_EVENT` (a unit test checks it parses; `MAX_UTC` is never reached).
pub fn until_event() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(tavana_credit_migration::UNTIL_EVENT)
        .map_or(DateTime::<Utc>::MAX_UTC, |at| at.to_utc())
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn holds_without_a_clock_release_are_counted_after_any_clock() {
        assert_eq!(
            until_event(),
            Utc.with_ymd_and_hms(9999, 12, 31, 0, 0, 0).unwrap()
        );
    }
}
