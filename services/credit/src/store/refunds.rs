//! Refunds (R20).

use super::*;

impl Store {
    /// Refunds a purchase wholly or in part, in one transaction serialised per facility:
    /// `decide` (R20) runs inside it on the purchase as stored; the store records the new
    /// schedule (R15), recomputes or releases the holds, and enqueues the
    /// cancellation of the instalments in settlement.
    #[tracing::instrument(skip_all, fields(purchase_id = %new.purchase_id))]
    pub async fn refund_purchase(
        &self,
        facility_id: &str,
        new: NewRefund<'_>,
        decide: impl FnOnce(RefundFacts) -> Result<Refunded, CreditError>,
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
        let refunded = decide(RefundFacts {
            kind,
            amount: Rial(row.amount),
            months,
            period,
            refunded: Rial(row.refunded_amount),
            settled: row.settled_at.is_some() || row.partly_settled_at.is_some(),
        })?;
        let mut active = row.clone().into_active_model();
        active.refunded_amount = Set(refunded.outcome.refunded_total.as_i64());
        active.schedule_version = Set(row.schedule_version.saturating_add(1));
        active.schedule = Set(serde_json::to_string(&refunded.outcome.remaining_schedule)
            .map_err(|error| CreditError::Internal(error.into()))?);
        active.ledger_term = Set(ledger_term(
            &row.id,
            row.amount
                .saturating_sub(refunded.outcome.refunded_total.as_i64()),
            &refunded.outcome.remaining_schedule,
        ));
        match refunded.hold {
            Some(hold) => {
                active.hold_monthly = Set(hold.monthly.as_i64());
                active.hold_total = Set(hold.total.as_i64());
            }
            None => active.hold_released_at = Set(Some(new.now)),
        }
        let written = async {
            let updated = active.update(&txn).await?;
            // The refund, its messages and its record go as one batch, as a purchase's do.
            let backend = txn.get_database_backend();
            let (messages, outbox) =
                self.enqueue_statements(backend, (new.messages)(&updated, &new.refund_id));
            let mut statements = vec![
                refund::Entity::insert(refund::ActiveModel {
                    id: Set(new.refund_id.clone()),
                    purchase_id: Set(updated.id.clone()),
                    amount: Set(new.amount),
                    created_at: Set(new.now),
                })
                .build(backend),
            ];
            statements.extend(messages);
            if let Some(scope) = &new.idempotency {
                statements.push(Self::replay_record(
                    backend,
                    scope,
                    (new.encode)(&updated),
                    new.now,
                ));
            }
            // Only the outbox's statements return rows (their ids).
            let enqueued = outbox.enqueued(tavana_kit::db::batch(&txn, statements).await?)?;
            Ok::<(purchase::Model, outbox::Enqueued), DbErr>((updated, enqueued))
        }
        .await;
        match written {
            Ok((updated, enqueued)) => {
                txn.commit().await?;
                self.deliver_now(&enqueued).await;
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
}
