//! Facilities: open, read, suspend and close (R12, R13, R30).

use super::*;

impl Store {
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
        self.open_or_latest(facility::Column::EmployeeId, employee_id)
            .await
    }

    /// Returns the open facility of the facilities whose `column` is `value`, or else the
    /// latest closed one.
    pub(super) async fn open_or_latest(
        &self,
        column: facility::Column,
        value: &str,
    ) -> Result<Option<facility::Model>, CreditError> {
        let facilities = facility::Entity::find()
            .filter(column.eq(value))
            .all(&self.db)
            .await?;
        Ok(open_or_latest_of(facilities.iter()).cloned())
    }

    /// Suspends or resumes a facility (R14, R30): a suspended facility takes no purchase,
    /// its deductions go on. Idempotent.
    pub async fn set_suspended(
        &self,
        facility_id: &str,
        suspended: bool,
    ) -> Result<(), CreditError> {
        let update = facility::Entity::update_many()
            .col_expr(facility::Column::Suspended, Expr::value(suspended))
            .filter(facility::Column::Id.eq(facility_id))
            .into_query();
        tavana_kit::db::execute_write(&self.db, &update).await?;
        Ok(())
    }

    /// Suspends or resumes a facility as [`Store::set_suspended`] does, with its audit
    /// entry in the same transaction (R32).
    pub async fn set_suspended_audited(
        &self,
        facility_id: &str,
        suspended: bool,
        audit: &AuditEntry,
    ) -> Result<(), CreditError> {
        let txn = tavana_kit::db::begin_write(&self.db).await?;
        facility::Entity::update_many()
            .col_expr(facility::Column::Suspended, Expr::value(suspended))
            .filter(facility::Column::Id.eq(facility_id))
            .exec(&*txn)
            .await?;
        tavana_kit::audit::record_in(&*txn, audit).await?;
        txn.commit().await?;
        Ok(())
    }

    /// Returns the open facility of the employee with this national ID, or else their
    /// latest closed one.
    pub async fn facility_of_national_id(
        &self,
        national_id: &str,
    ) -> Result<Option<facility::Model>, CreditError> {
        self.open_or_latest(facility::Column::NationalId, national_id)
            .await
    }

    /// Closes a facility when `decide` (R13, R30), given whether it owes anything and its
    /// unreleased holds, lets it, and enqueues the guarantee's release (R13),
    /// with its audit entry in the same transaction (R32). Closing a closed facility
    /// changes nothing and records nothing.
    #[tracing::instrument(skip_all, fields(facility_id = %facility_id))]
    pub async fn close_facility(
        &self,
        facility_id: &str,
        now: DateTime<Utc>,
        messages: Vec<OutboxMessage>,
        audit: &AuditEntry,
        decide: impl FnOnce(bool, &[Hold]) -> Result<(), CreditError>,
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
        let held = Self::held_room_in(&txn, &row, now).await?;
        decide(owing.is_some(), &held.holds)?;
        let mut active = row.into_active_model();
        active.closed_at = Set(Some(now));
        active.open_employee_id = Set(None);
        let row = active.update(&txn).await?;
        let enqueued = self.enqueue(&txn, messages).await?;
        tavana_kit::audit::record_in(&txn, audit).await?;
        txn.commit().await?;
        self.deliver_now(&enqueued).await;
        Ok(row)
    }
}

/// Returns the open facility among `facilities`, or else the latest closed one (an
/// employee has one open facility at most, R12).
pub(super) fn open_or_latest_of<'a>(
    facilities: impl Iterator<Item = &'a facility::Model>,
) -> Option<&'a facility::Model> {
    facilities.max_by_key(|facility| (facility.closed_at.is_none(), facility.created_at))
}
