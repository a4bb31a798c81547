//! Cards and PINs (R21).

use super::*;

impl Store {
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

    /// Claims one PIN attempt before the PIN is checked (R21): counts it as wrong in one
    /// conditional UPDATE, refused once the card is locked or 5 attempts are counted, so
    /// parallel guesses never get more than 5 checks. Returns the attempts counted with
    /// this one, or `None` when no attempt is left.
    pub async fn claim_pin_attempt(
        &self,
        facility_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<u32>, CreditError> {
        let txn = tavana_kit::db::begin_write(&self.db).await?;
        let claimed = card::Entity::update_many()
            .col_expr(
                card::Column::FailedAttempts,
                Expr::col(card::Column::FailedAttempts).add(1),
            )
            .col_expr(card::Column::UpdatedAt, Expr::value(now))
            .filter(card::Column::FacilityId.eq(facility_id))
            .filter(card::Column::Locked.eq(false))
            .filter(card::Column::FailedAttempts.lt(i64::from(MAX_PIN_ATTEMPTS)))
            .exec(&txn)
            .await?
            .rows_affected
            == 1;
        if !claimed {
            txn.rollback().await?;
            return Ok(None);
        }
        // The row is locked by the UPDATE until commit: this reads our own count.
        let card = card::Entity::find_by_id(facility_id.to_owned())
            .one(&txn)
            .await?
            .ok_or(CreditError::CardNotFound)?;
        txn.commit().await?;
        Ok(Some(u32::try_from(card.failed_attempts).map_err(|_| {
            internal("stored failed PIN attempts are negative")
        })?))
    }

    /// Locks the card after a wrong PIN when 5 attempts are counted (R21); returns whether
    /// the card is locked.
    pub async fn lock_card_if_exhausted(
        &self,
        facility_id: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, CreditError> {
        let txn = tavana_kit::db::begin_write(&self.db).await?;
        card::Entity::update_many()
            .col_expr(card::Column::Locked, Expr::value(true))
            .col_expr(card::Column::UpdatedAt, Expr::value(now))
            .filter(card::Column::FacilityId.eq(facility_id))
            .filter(card::Column::Locked.eq(false))
            .filter(card::Column::FailedAttempts.gte(i64::from(MAX_PIN_ATTEMPTS)))
            .exec(&txn)
            .await?;
        let card = card::Entity::find_by_id(facility_id.to_owned())
            .one(&txn)
            .await?
            .ok_or(CreditError::CardNotFound)?;
        txn.commit().await?;
        Ok(card.locked)
    }

    /// Forgets the wrong PINs after a right one (the count is of consecutive wrong PINs).
    pub async fn reset_wrong_pins(&self, facility_id: &str) -> Result<(), CreditError> {
        let update = card::Entity::update_many()
            .col_expr(card::Column::FailedAttempts, Expr::value(0))
            .filter(card::Column::FacilityId.eq(facility_id))
            .filter(card::Column::Locked.eq(false))
            .filter(card::Column::FailedAttempts.gt(0))
            .into_query();
        tavana_kit::db::execute_write(&self.db, &update).await?;
        Ok(())
    }

    /// Stores a new PIN hash; the PIN no longer has to change.
    pub async fn change_pin(
        &self,
        facility_id: &str,
        pin_hash: String,
        now: DateTime<Utc>,
    ) -> Result<(), CreditError> {
        let update = card::Entity::update_many()
            .col_expr(card::Column::PinHash, Expr::value(pin_hash))
            .col_expr(card::Column::PinMustChange, Expr::value(false))
            .col_expr(card::Column::FailedAttempts, Expr::value(0))
            .col_expr(card::Column::UpdatedAt, Expr::value(now))
            .filter(card::Column::FacilityId.eq(facility_id))
            .filter(card::Column::Locked.eq(false))
            .into_query();
        tavana_kit::db::execute_write(&self.db, &update).await?;
        Ok(())
    }

    /// Unlocks a card and forgets its wrong PINs (support); false when there is no such card.
    /// The unlock and its audit entry are one transaction (R32).
    pub async fn unlock_card(
        &self,
        customer_number: &str,
        now: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<bool, CreditError> {
        let txn = tavana_kit::db::begin_write(&self.db).await?;
        let result = card::Entity::update_many()
            .col_expr(card::Column::FailedAttempts, Expr::value(0))
            .col_expr(card::Column::Locked, Expr::value(false))
            .col_expr(card::Column::UpdatedAt, Expr::value(now))
            .filter(card::Column::CustomerNumber.eq(customer_number))
            .exec(&*txn)
            .await?;
        if result.rows_affected == 0 {
            return Ok(false);
        }
        tavana_kit::audit::record_in(&*txn, audit).await?;
        txn.commit().await?;
        Ok(true)
    }
}
