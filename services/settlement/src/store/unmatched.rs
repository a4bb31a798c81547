//! The review queue of unmatched remittance lines (R23): support assigns a line to an
//! employee and period, where it settles what it pays by the remittance's own matching
//! rule, or marks it returned to the organization. A line is resolved once.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Condition, Expr, ExprTrait, Order, Query};
use sea_orm::{ConnectionTrait, DbErr};
use serde::{Deserialize, Serialize};
use tavana_kit::audit::AuditEntry;
use tavana_kit::ids::NationalId;
use tavana_kit::jalali::JalaliPeriod;
use tavana_kit::money::Rial;

use super::remittance::{load_ledger, partly_settled, settle_and_complete};
use super::{
    Remittance, Store, UnmatchedLine, arrears, get, lock_organization, to_i32, to_i64, to_u32,
    to_u64,
};
use crate::delivery;
use crate::domain::remittance::{self, PartialSettlement, ValidLine};
use crate::error::SettlementError;

/// Where a line stands in the queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueStatus {
    /// Waiting for support.
    Open,
    /// Assigned or returned.
    Resolved,
}

impl QueueStatus {
    /// Returns the stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            QueueStatus::Open => "open",
            QueueStatus::Resolved => "resolved",
        }
    }
}

/// A line's identity: its remittance and its line number, written `<remittance>:<line>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineId {
    /// The remittance.
    pub remittance_id: String,
    /// The line's number in it.
    pub line: u32,
}

impl LineId {
    /// Parses `<remittance>:<line>`; a line number no INTEGER column holds names no line.
    pub fn parse(text: &str) -> Option<LineId> {
        let (remittance_id, line) = text.trim().rsplit_once(':')?;
        if remittance_id.is_empty() {
            return None;
        }
        let line: u32 = line.parse().ok()?;
        i32::try_from(line).ok()?;
        Some(LineId {
            remittance_id: remittance_id.to_owned(),
            line,
        })
    }
}

impl std::fmt::Display for LineId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.remittance_id, self.line)
    }
}

/// Which lines to list.
#[derive(Clone, Debug, Default)]
pub struct QueueFilter {
    /// Only this organization's remittances.
    pub organization_id: Option<String>,
    /// Only remittances of this period.
    pub period: Option<JalaliPeriod>,
    /// Only lines in this status.
    pub status: Option<QueueStatus>,
}

/// Where a page of the queue starts: after this line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueCursor {
    /// The remittance of the last line shown.
    pub remittance_id: String,
    /// Its line number.
    pub line: u32,
}

/// What support decides for a line.
#[derive(Clone, Debug)]
pub enum Resolution {
    /// The money goes back to the organization.
    Returned,
    /// The line pays this employee's instalments of this period (each `None` means the
    /// line's own national ID, the remittance's own period).
    Assigned {
        /// The employee.
        national_id: Option<NationalId>,
        /// The period.
        period: Option<JalaliPeriod>,
    },
}

/// A line in the queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuedLine {
    /// Its identity.
    pub id: LineId,
    /// Its remittance's organization.
    pub organization_id: String,
    /// Its remittance's period.
    pub period: String,
    /// The national ID as written.
    pub national_id: String,
    /// The amount kept.
    pub amount: Rial,
    /// Why it was kept.
    pub code: String,
    /// `open` or `resolved`.
    pub status: String,
    /// `assigned` or `returned` once resolved.
    pub resolution: Option<String>,
    /// The employee it was assigned to.
    pub resolved_national_id: Option<String>,
    /// The period it was assigned to.
    pub resolved_period: Option<String>,
    /// Support's note.
    pub note: Option<String>,
    /// Instalments its assignment settled.
    pub settled_instalments: u64,
    /// Their sum.
    pub settled_amount: Rial,
    /// When it was resolved.
    pub resolved_at: Option<DateTime<Utc>>,
}

/// A resolved line and whether outbox messages were written.
#[derive(Clone, Debug)]
pub struct ResolvedLine {
    /// The line as it now stands.
    pub line: QueuedLine,
    /// True when outbox messages were written.
    pub enqueued: bool,
}

fn select_lines() -> sea_orm::sea_query::SelectStatement {
    let line = |column| (UnmatchedLine::Table, column);
    Query::select()
        .columns([
            line(UnmatchedLine::RemittanceId),
            line(UnmatchedLine::Line),
            line(UnmatchedLine::NationalId),
            line(UnmatchedLine::Amount),
            line(UnmatchedLine::Code),
            line(UnmatchedLine::Status),
            line(UnmatchedLine::Resolution),
            line(UnmatchedLine::ResolvedNationalId),
            line(UnmatchedLine::ResolvedPeriod),
            line(UnmatchedLine::Note),
            line(UnmatchedLine::SettledInstalments),
            line(UnmatchedLine::SettledAmount),
            line(UnmatchedLine::ResolvedAt),
        ])
        .columns([
            (Remittance::Table, Remittance::OrganizationId),
            (Remittance::Table, Remittance::Period),
        ])
        .from(UnmatchedLine::Table)
        .inner_join(
            Remittance::Table,
            Expr::col((Remittance::Table, Remittance::Id))
                .equals((UnmatchedLine::Table, UnmatchedLine::RemittanceId)),
        )
        .to_owned()
}

fn queued_line(row: &sea_orm::QueryResult) -> Result<QueuedLine, DbErr> {
    Ok(QueuedLine {
        id: LineId {
            remittance_id: get(row, "remittance_id")?,
            line: to_u32(get::<i32>(row, "line")?)?,
        },
        organization_id: get(row, "organization_id")?,
        period: get(row, "period")?,
        national_id: get(row, "national_id")?,
        amount: Rial(get(row, "amount")?),
        code: get(row, "code")?,
        status: get(row, "status")?,
        resolution: get(row, "resolution")?,
        resolved_national_id: get(row, "resolved_national_id")?,
        resolved_period: get(row, "resolved_period")?,
        note: get(row, "note")?,
        settled_instalments: to_u64(get(row, "settled_instalments")?)?,
        settled_amount: Rial(get(row, "settled_amount")?),
        resolved_at: get(row, "resolved_at")?,
    })
}

async fn find_line<C: ConnectionTrait>(conn: &C, id: &LineId) -> Result<Option<QueuedLine>, DbErr> {
    let query = select_lines()
        .and_where(
            Expr::col((UnmatchedLine::Table, UnmatchedLine::RemittanceId))
                .eq(id.remittance_id.as_str()),
        )
        .and_where(Expr::col((UnmatchedLine::Table, UnmatchedLine::Line)).eq(to_i32(id.line)?))
        .to_owned();
    conn.query_one(&query)
        .await?
        .map(|row| queued_line(&row))
        .transpose()
}

impl Store {
    /// Lists the kept lines, oldest remittance first (R23).
    #[tracing::instrument(skip_all, fields(page_size))]
    pub async fn list_unmatched(
        &self,
        filter: &QueueFilter,
        page_size: u64,
        after: Option<QueueCursor>,
    ) -> Result<(Vec<QueuedLine>, Option<QueueCursor>), SettlementError> {
        let mut query = select_lines();
        if let Some(organization_id) = &filter.organization_id {
            query.and_where(
                Expr::col((Remittance::Table, Remittance::OrganizationId))
                    .eq(organization_id.as_str()),
            );
        }
        if let Some(period) = filter.period {
            query.and_where(
                Expr::col((Remittance::Table, Remittance::Period)).eq(period.to_string()),
            );
        }
        if let Some(status) = filter.status {
            query.and_where(
                Expr::col((UnmatchedLine::Table, UnmatchedLine::Status)).eq(status.as_str()),
            );
        }
        if let Some(after) = after {
            let remittance = Expr::col((UnmatchedLine::Table, UnmatchedLine::RemittanceId));
            let line = Expr::col((UnmatchedLine::Table, UnmatchedLine::Line));
            query.cond_where(
                Condition::any()
                    .add(remittance.clone().gt(after.remittance_id.clone()))
                    .add(
                        Condition::all()
                            .add(remittance.eq(after.remittance_id))
                            // Saturating is exact here: no stored line is above
                            // i32::MAX, so a cursor past it (only a forged token holds
                            // one) has no line after it either way.
                            .add(line.gt(i32::try_from(after.line).unwrap_or(i32::MAX))),
                    ),
            );
        }
        query
            .order_by(
                (UnmatchedLine::Table, UnmatchedLine::RemittanceId),
                Order::Asc,
            )
            .order_by((UnmatchedLine::Table, UnmatchedLine::Line), Order::Asc)
            .limit(page_size + 1);
        let mut items = self
            .db
            .query_all(&query)
            .await?
            .iter()
            .map(queued_line)
            .collect::<Result<Vec<_>, DbErr>>()?;
        let next = if items.len() as u64 > page_size {
            // Saturating is exact: a page size is at most paging's maximum, and no
            // longer than the rows read, so it fits a usize wherever it is truncated.
            items.truncate(usize::try_from(page_size).unwrap_or(usize::MAX));
            items.last().map(|last| QueueCursor {
                remittance_id: last.id.remittance_id.clone(),
                line: last.id.line,
            })
        } else {
            None
        };
        Ok((items, next))
    }

    /// Resolves a kept line (R23): returned, or assigned to an employee and period where it
    /// settles what it pays by the remittance's matching rule; a line that does not match
    /// there is refused with the matching's code and stays open. The resolution and its
    /// audit entry (R32), completed here with what was decided, are one transaction.
    #[tracing::instrument(skip_all, fields(line = %id))]
    pub async fn resolve_unmatched(
        &self,
        id: &LineId,
        resolution: Resolution,
        note: &str,
        resolved_by: &str,
        now: DateTime<Utc>,
        mut audit: AuditEntry,
    ) -> Result<ResolvedLine, SettlementError> {
        let found = find_line(&self.db, id)
            .await?
            .ok_or(SettlementError::UnmatchedLineNotFound)?;
        let txn = tavana_kit::db::begin_write(&self.db).await?;
        lock_organization(&txn, &found.organization_id).await?;
        let line = find_line(&txn, id)
            .await?
            .ok_or(SettlementError::UnmatchedLineNotFound)?;
        if line.status != QueueStatus::Open.as_str() {
            return Err(SettlementError::UnmatchedLineResolved);
        }
        let mut update = Query::update();
        update
            .table(UnmatchedLine::Table)
            .value(UnmatchedLine::Status, QueueStatus::Resolved.as_str())
            .value(UnmatchedLine::Note, note)
            .value(UnmatchedLine::ResolvedBy, resolved_by)
            .value(UnmatchedLine::ResolvedAt, now)
            .and_where(Expr::col(UnmatchedLine::RemittanceId).eq(id.remittance_id.as_str()))
            .and_where(Expr::col(UnmatchedLine::Line).eq(to_i32(id.line)?));
        let mut enqueued = false;
        match resolution {
            Resolution::Returned => {
                update.value(UnmatchedLine::Resolution, "returned");
                audit.details = serde_json::json!({ "resolution": "returned", "note": note });
            }
            Resolution::Assigned {
                national_id,
                period,
            } => {
                let national_id = match national_id {
                    Some(national_id) => national_id,
                    None => NationalId::parse(&line.national_id)
                        .map_err(|_| SettlementError::LineDoesNotMatch("national_id_invalid"))?,
                };
                let period = match period {
                    Some(period) => period,
                    None => JalaliPeriod::parse(&line.period)
                        .map_err(|_| DbErr::Custom("stored period is invalid".into()))?,
                };
                if line.amount <= Rial::ZERO {
                    return Err(SettlementError::LineDoesNotMatch("amount_not_positive"));
                }
                let valid = [ValidLine {
                    line: id.line,
                    national_id: national_id.clone(),
                    amount: line.amount,
                }];
                let ledger = load_ledger(&txn, &line.organization_id, period, &valid).await?;
                let matching =
                    remittance::match_employees(&valid, ledger, PartialSettlement::Refused)?;
                if let Some(refused) = matching.unmatched.first() {
                    return Err(SettlementError::LineDoesNotMatch(match refused.code {
                        remittance::UnmatchedCode::UnknownEmployee => "unknown_employee",
                        remittance::UnmatchedCode::NothingDue => "nothing_due",
                        remittance::UnmatchedCode::AmountShort => "amount_short",
                        _ => "amount_over",
                    }));
                }
                let Some(completed) =
                    settle_and_complete(&txn, &id.remittance_id, &matching.settled, now).await?
                else {
                    return Err(SettlementError::ConcurrentChange);
                };
                // The keys name the line, unique within the remittance's own messages.
                let key = id.to_string();
                let partly = partly_settled(&matching.settled, &completed);
                let mut outgoing = delivery::purchases_settled(&key, 0, &completed, &partly);
                let employee_id = matching
                    .settled
                    .first()
                    .map(|instalment| instalment.employee_id.clone())
                    .unwrap_or_default();
                outgoing.extend(delivery::settlement_sms(
                    &key,
                    0,
                    vec![delivery::settlement_notification(
                        &key,
                        &employee_id,
                        &period.to_string(),
                        matching.settled.len() as u64,
                        matching.settled_amount.as_i64(),
                    )],
                ));
                outgoing.extend(arrears::settled_arrears(&txn, &matching.settled, now).await?);
                enqueued = !outgoing.is_empty();
                tavana_kit::outbox::enqueue_many(&txn, outgoing).await?;
                update
                    .value(UnmatchedLine::Resolution, "assigned")
                    .value(UnmatchedLine::ResolvedNationalId, national_id.as_str())
                    .value(UnmatchedLine::ResolvedPeriod, period.to_string())
                    .value(
                        UnmatchedLine::SettledInstalments,
                        to_i64(matching.settled.len())?,
                    )
                    .value(
                        UnmatchedLine::SettledAmount,
                        matching.settled_amount.as_i64(),
                    );
                audit.details = serde_json::json!({
                    "resolution": "assigned",
                    "national_id": national_id.as_str(),
                    "period": period.to_string(),
                    "settled_instalments": matching.settled.len(),
                    "settled_amount": matching.settled_amount.as_i64(),
                    "note": note,
                });
            }
        }
        txn.execute(&update).await?;
        tavana_kit::audit::record_in(&txn, &audit).await?;
        let line = find_line(&txn, id)
            .await?
            .ok_or(SettlementError::UnmatchedLineNotFound)?;
        txn.commit().await?;
        tracing::info!(resolution = ?line.resolution, "unmatched line resolved");
        Ok(ResolvedLine { line, enqueued })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r23_a_line_id_round_trips_and_junk_is_refused() {
        let id = LineId::parse("0190a3c4-5b6d-7e8f-9a0b-1c2d3e4f5a6b:12").unwrap();

        assert_eq!(id.line, 12);
        assert_eq!(id.to_string(), "0190a3c4-5b6d-7e8f-9a0b-1c2d3e4f5a6b:12");
        assert_eq!(LineId::parse("no-line"), None);
        assert_eq!(LineId::parse(":3"), None);
        assert_eq!(LineId::parse("R:x"), None);
    }
}
