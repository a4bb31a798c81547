//! Purchases (R14-R16, R19).

use super::*;

impl Store {
    /// Creates a purchase with its holds, schedule, outbox messages and idempotency record
    /// in one transaction serialised per facility; `decide` (R14, R16, R29) runs inside it
    /// on the facts read under the lock and returns the hold to record. Returns the stored
    /// answer of an earlier request with the same key (R19).
    ///
    /// Nobody looked for that answer before: a request with the same key that committed is
    /// found here without a read on a purchase's way. Its record makes ours fail on the
    /// unique key, and a refusal looks for it before it answers.
    #[tracing::instrument(skip_all, fields(facility_id = %new.facility_id, purchase_id = %new.id))]
    pub async fn create_purchase(
        &self,
        new: NewPurchase<'_>,
        decide: impl FnOnce(&PurchaseFacts<'_>) -> Result<Hold, CreditError>,
    ) -> Result<Result<purchase::Model, Replay>, CreditError> {
        let txn = tavana_kit::db::begin_write(&self.db).await?;
        let (facility_row, held) =
            Self::lock_and_read_held(&txn, &new.facility_id, new.now).await?;
        let period = tavana_kit::jalali::period_of(new.now);
        match Self::admit_in(&txn, &facility_row, held, &new, period, decide).await {
            Ok(hold) => {
                self.insert_purchase(txn, new, &facility_row, period, hold)
                    .await
            }
            // A failed statement may have aborted the transaction: nothing to read there.
            Err(error @ CreditError::Internal(_)) => Err(error),
            Err(refusal) => match Self::find_replay_in(&txn, new.idempotency).await? {
                // R19: the first answer, not a refusal the first purchase's hold caused.
                Some(replay) => Ok(Err(replay)),
                None => Err(refusal),
            },
        }
    }

    /// Lets `decide` admit the purchase on the facts read under the facility's lock.
    async fn admit_in(
        txn: &DatabaseTransaction,
        facility_row: &facility::Model,
        mut held: HeldRoom,
        new: &NewPurchase<'_>,
        period: JalaliPeriod,
        decide: impl FnOnce(&PurchaseFacts<'_>) -> Result<Hold, CreditError>,
    ) -> Result<Hold, CreditError> {
        if held.waits_for_contract {
            // The caller checked the contract is in force just before (R14), so holds
            // that waited for it are released now (R18).
            Self::release_waiting_in(txn, &new.facility_id, new.now).await?;
            held = Self::held_room_in(txn, facility_row, new.now).await?;
        }
        decide(&PurchaseFacts {
            status: status_of(facility_row, new.now),
            overdue: held.overdue_amount,
            terms: terms_of(facility_row)?,
            holds: &held.holds,
            now: new.now,
            period,
        })
    }

    /// Writes an admitted purchase, its outbox messages and its idempotency record, and
    /// commits; a concurrent request with the same key that committed first answers instead.
    async fn insert_purchase(
        &self,
        txn: tavana_kit::db::WriteTransaction,
        new: NewPurchase<'_>,
        facility_row: &facility::Model,
        period: JalaliPeriod,
        hold: Hold,
    ) -> Result<Result<purchase::Model, Replay>, CreditError> {
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
            schedule_version: 1,
            partly_settled_at: None,
            national_id: facility_row.national_id.clone(),
            ledger_term: ledger_term(&new.id, new.terms.amount().as_i64(), &deductions),
        };
        // The purchase, its messages and its record go as one batch: on SQLite one hand-off
        // to the file's writer instead of three, on the turn every purchase waits for.
        let backend = txn.get_database_backend();
        let (messages, outbox) =
            self.enqueue_statements(backend, (new.messages)(&row, facility_row));
        let mut statements = vec![
            purchase::Entity::insert(row.clone().into_active_model().reset_all()).build(backend),
        ];
        statements.extend(messages);
        statements.push(Self::replay_record(
            backend,
            new.idempotency,
            (new.encode)(&row),
            new.now,
        ));
        // Only the outbox's statements return rows (their ids).
        let written = tavana_kit::db::batch(&txn, statements)
            .await
            .and_then(|rows| outbox.enqueued(rows));
        match written {
            Ok(enqueued) => {
                txn.commit().await?;
                self.deliver_now(&enqueued).await;
                Ok(Ok(row))
            }
            Err(error) if is_unique_violation(&error) => {
                drop(txn);
                // Same merchant key used concurrently for two cards (two facilities, so
                // two locks): the record written by the other request decides.
                Ok(Err(self
                    .replay_after_conflict(new.idempotency, error)
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
}
