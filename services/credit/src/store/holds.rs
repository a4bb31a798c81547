//! Holds and budgets (R16-R18).

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

    /// Sums the holds in SQL instead of reading every purchase: a credit purchase keeps
    /// `hold_released_at` NULL for good (the clock releases it, R17), so the unreleased
    /// rows of a facility only grow. Two index range scans of
    /// `idx_purchase_facility_holds` read just the holds that may be in effect: those
    /// released by the clock after `now`, and those waiting for an event (no
    /// `hold_release_at`: instalments until settled, R18). `budget::available` still
    /// decides with the same `now`. The employee's arrears row, read once, gives both
    /// the arrears hold and the overdue amount (R29): two statements in all.
    pub(super) async fn held_room_in<C: ConnectionTrait>(
        conn: &C,
        facility: &facility::Model,
        now: DateTime<Utc>,
    ) -> Result<HeldRoom, CreditError> {
        let query = summed_holds_query(&facility.id, purchase::Column::HoldReleaseAt.gt(now))
            .union(
                UnionType::All,
                summed_holds_query(&facility.id, purchase::Column::HoldReleaseAt.is_null()),
            )
            .to_owned();
        let rows = SummedHolds::find_by_statement(conn.get_database_backend().build(&query))
            .all(conn)
            .await?;
        let mut holds: Vec<Hold> = rows
            .iter()
            .map(|row| Hold {
                monthly: Rial(row.monthly),
                total: Rial(row.total),
                release: release_of(row.hold_release_at, row.hold_waits_for_contract),
            })
            .collect();
        let arrears = employee_arrears::Entity::find_by_id(facility.employee_id.clone())
            .one(conn)
            .await?;
        holds.extend(
            arrears
                .as_ref()
                .and_then(|arrears| arrears_hold(arrears, now)),
        );
        Ok(HeldRoom {
            waits_for_contract: rows.iter().any(|row| row.hold_waits_for_contract),
            holds,
            overdue_amount: arrears.map_or(Rial::ZERO, |arrears| Rial(arrears.overdue_amount)),
        })
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
            let at = settled_release_of(&row, now)?;
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
fn arrears_hold(arrears: &employee_arrears::Model, now: DateTime<Utc>) -> Option<Hold> {
    let period = JalaliPeriod::parse(&arrears.held_until_period).ok()?;
    let until = tavana_kit::jalali::release_instant(period);
    (arrears.held_monthly > 0 && until > now).then_some(Hold {
        monthly: Rial(arrears.held_monthly),
        total: Rial::ZERO,
        release: HoldRelease::At(until),
    })
}
