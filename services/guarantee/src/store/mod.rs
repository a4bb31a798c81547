//! The guarantee service's database: the only code that runs queries.
//!
//! Writes that a rule depends on are serialised by writing first: a filing updates the
//! applicant's and the guarantor's lock rows before it counts anything, and a decision
//! updates the request row before it reads it again (ARCHITECTURE.md, "write first").

pub mod entities;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ActiveValue, ColumnTrait, Condition, ConnectionTrait, DatabaseConnection,
    DatabaseTransaction, EntityTrait, IntoActiveModel, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use tavana_kit::audit::AuditEntry;
use tavana_kit::db::lock_row;
use tavana_kit::outbox::{self, OutboxHandle};

pub use self::entities::{credit_request, status_change};
use crate::domain::RequestStatus;
use crate::domain::status::{StatusRule, blocks_new_request, holds_guarantee, statuses_where};
use crate::error::GuaranteeError;

/// A message to send through the outbox, written in the same transaction as its change.
pub use tavana_kit::outbox::Message as OutboxMessage;

/// One transition to record (R11).
#[derive(Clone, Debug)]
pub struct HistoryEntry {
    /// The status reached.
    pub status: RequestStatus,
    /// When (the injected clock).
    pub at: DateTime<Utc>,
    /// The role of whoever made the change: `applicant`, `guarantor`, `region_finance`.
    pub by_role: &'static str,
    /// The employee id of whoever made the change (R32).
    pub by_employee_id: Option<String>,
    /// The national ID of whoever made the change (R32).
    pub by_national_id: Option<String>,
    /// The reason given, if any.
    pub reason: Option<String>,
    /// The status message in Persian.
    pub message_fa: String,
    /// The status message in English.
    pub message_en: String,
}

/// A new request with its first history entry and outgoing messages.
#[derive(Clone, Debug)]
pub struct Filing {
    /// The request row.
    pub request: credit_request::Model,
    /// The `pending_guarantor` entry.
    pub history: HistoryEntry,
    /// Notifications to send.
    pub outbox: Vec<OutboxMessage>,
}

/// A change of status with its history entry and outgoing messages.
#[derive(Clone, Debug)]
pub struct Transition {
    /// The history entry, which carries the new status.
    pub history: HistoryEntry,
    /// Set on finance approval (R12).
    pub approved_at: Option<DateTime<Utc>>,
    /// Set on finance approval: approval + 72 hours (R12, S2).
    pub activates_at: Option<DateTime<Utc>>,
    /// Notifications and the facility to open.
    pub outbox: Vec<OutboxMessage>,
    /// The audit entry of a staff decision (R32), written in the same transaction.
    pub audit: Option<AuditEntry>,
}

/// A request with its history and its guarantor's current count of guarantees.
#[derive(Clone, Debug)]
pub struct RequestView {
    /// The request row.
    pub request: credit_request::Model,
    /// Every transition, oldest first.
    pub history: Vec<status_change::Model>,
    /// How many pending-or-active guarantees the guarantor holds now (S4).
    pub guarantor_held: u32,
}

/// Whose requests a list shows.
#[derive(Clone, Debug)]
pub enum ListScope {
    /// The requests an employee filed.
    Applicant(String),
    /// The requests naming an employee as guarantor.
    Guarantor {
        /// The guarantor's employee id.
        employee_id: String,
        /// The guarantor's national ID.
        national_id: String,
    },
    /// The requests of a region.
    Region(String),
}

/// The position after the last item of a page: newest first, by filing time then id.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Cursor {
    /// The filing time in microseconds since the epoch.
    pub created_micros: i64,
    /// The request id.
    pub id: String,
}

/// The guarantee service's database.
#[derive(Clone)]
pub struct Store {
    db: DatabaseConnection,
}

/// Returns the SQL condition that matches exactly the rows for which the domain rule
/// `rule(status, released)` holds: for each value of the release flag, the statuses
/// [`statuses_where`] lists. The rule itself lives once, in `domain::status`; the
/// `counting` integration tests check the two agree for every status on both backends.
fn rule_condition(rule: StatusRule) -> Condition {
    let mut condition = Condition::any();
    for released in [false, true] {
        let statuses: Vec<&'static str> = statuses_where(rule, released)
            .into_iter()
            .map(RequestStatus::as_str)
            .collect();
        if statuses.is_empty() {
            continue;
        }
        condition = condition.add(
            Condition::all()
                .add(credit_request::Column::Released.eq(released))
                .add(credit_request::Column::Status.is_in(statuses)),
        );
    }
    condition
}

async fn insert_history(
    txn: &DatabaseTransaction,
    request_id: &str,
    entry: HistoryEntry,
) -> Result<(), GuaranteeError> {
    status_change::ActiveModel {
        id: ActiveValue::NotSet,
        request_id: ActiveValue::Set(request_id.to_owned()),
        status: ActiveValue::Set(entry.status.as_str().to_owned()),
        at: ActiveValue::Set(entry.at),
        by_role: ActiveValue::Set(entry.by_role.to_owned()),
        by_employee_id: ActiveValue::Set(entry.by_employee_id),
        by_national_id: ActiveValue::Set(entry.by_national_id),
        reason: ActiveValue::Set(entry.reason),
        message_fa: ActiveValue::Set(entry.message_fa),
        message_en: ActiveValue::Set(entry.message_en),
    }
    .insert(txn)
    .await?;
    Ok(())
}

/// Counts the guarantees held by the guarantor with `national_id`, leaving out the
/// request `except` (S4, R8, R13).
async fn count_held<C: ConnectionTrait>(
    conn: &C,
    national_id: &str,
    except: Option<&str>,
) -> Result<u32, GuaranteeError> {
    let mut query = credit_request::Entity::find()
        .filter(credit_request::Column::GuarantorNationalId.eq(national_id))
        .filter(rule_condition(holds_guarantee));
    if let Some(except) = except {
        query = query.filter(credit_request::Column::Id.ne(except));
    }
    let count = query.count(conn).await?;
    // Documented saturation: a count beyond u32 is still at or above R8's limit.
    Ok(u32::try_from(count).unwrap_or(u32::MAX))
}

/// Returns the status of a request row; an unknown name is a bug (the column holds only
/// names written by [`RequestStatus::as_str`]).
pub fn parse_status(model: &credit_request::Model) -> Result<RequestStatus, GuaranteeError> {
    RequestStatus::parse(&model.status)
        .ok_or_else(|| anyhow::anyhow!("unknown status {}", model.status).into())
}

impl Store {
    /// Wraps a connected, migrated database.
    pub fn new(db: DatabaseConnection) -> Store {
        Store { db }
    }

    /// Returns the connection.
    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Files a request in one transaction (R7-R9): serialises on the applicant and on
    /// the guarantor, refuses a second open request, counts the guarantor's guarantees
    /// and lets `decide` run the rules with that count; writes the request, its history
    /// and its outbox messages (for `outbox` to deliver after the commit) when `decide`
    /// returns a filing.
    #[tracing::instrument(skip_all, fields(applicant = %applicant_employee_id))]
    pub async fn file(
        &self,
        outbox: &OutboxHandle,
        applicant_employee_id: &str,
        guarantor_national_id: &str,
        decide: impl FnOnce(u32) -> Result<Filing, GuaranteeError>,
    ) -> Result<(credit_request::Model, outbox::Enqueued), GuaranteeError> {
        let txn = tavana_kit::db::begin_write(&self.db).await?;
        lock_row(&txn, "applicant_lock", "employee_id", applicant_employee_id).await?;
        lock_row(&txn, "guarantor_lock", "national_id", guarantor_national_id).await?;

        let open = credit_request::Entity::find()
            .filter(credit_request::Column::ApplicantEmployeeId.eq(applicant_employee_id))
            .filter(rule_condition(blocks_new_request))
            .count(&txn)
            .await?;
        if open > 0 {
            return Err(GuaranteeError::OpenRequestExists);
        }
        let held = count_held(&txn, guarantor_national_id, None).await?;
        let filing = decide(held)?;

        let request_id = filing.request.id.clone();
        credit_request::Entity::insert(filing.request.clone().into_active_model().reset_all())
            .exec_without_returning(&txn)
            .await?;
        insert_history(&txn, &request_id, filing.history).await?;
        let enqueued = outbox.enqueue(&txn, filing.outbox).await?;
        txn.commit().await?;
        Ok((filing.request, enqueued))
    }

    /// Changes a request's status in one transaction: locks the request row, reads it
    /// again, and lets `decide` check state and rules (given the guarantor's guarantees
    /// besides this one) and describe the transition.
    #[tracing::instrument(skip_all, fields(request_id = %request_id))]
    pub async fn transition(
        &self,
        outbox: &OutboxHandle,
        request_id: &str,
        decide: impl FnOnce(
            &credit_request::Model,
            RequestStatus,
            u32,
        ) -> Result<Transition, GuaranteeError>,
    ) -> Result<(credit_request::Model, outbox::Enqueued), GuaranteeError> {
        let txn = tavana_kit::db::begin_write(&self.db).await?;
        let locked = credit_request::Entity::update_many()
            .col_expr(
                credit_request::Column::Version,
                Expr::col(credit_request::Column::Version).add(1i64),
            )
            .filter(credit_request::Column::Id.eq(request_id))
            .exec(&txn)
            .await?;
        if locked.rows_affected == 0 {
            return Err(GuaranteeError::RequestNotFound);
        }
        let Some(current) = credit_request::Entity::find_by_id(request_id.to_owned())
            .one(&txn)
            .await?
        else {
            return Err(GuaranteeError::RequestNotFound);
        };
        let status = parse_status(&current)?;
        let held = count_held(&txn, &current.guarantor_national_id, Some(request_id)).await?;
        let transition = decide(&current, status, held)?;

        let mut updated = current.clone();
        updated.status = transition.history.status.as_str().to_owned();
        updated.approved_at = transition.approved_at.or(current.approved_at);
        updated.activates_at = transition.activates_at.or(current.activates_at);
        updated.version = current.version;
        credit_request::Entity::update_many()
            .col_expr(
                credit_request::Column::Status,
                Expr::value(updated.status.clone()),
            )
            .col_expr(
                credit_request::Column::ApprovedAt,
                Expr::value(updated.approved_at),
            )
            .col_expr(
                credit_request::Column::ActivatesAt,
                Expr::value(updated.activates_at),
            )
            .filter(credit_request::Column::Id.eq(request_id))
            .exec(&txn)
            .await?;
        insert_history(&txn, request_id, transition.history).await?;
        let enqueued = outbox.enqueue(&txn, transition.outbox).await?;
        if let Some(entry) = &transition.audit {
            tavana_kit::audit::record_in(&txn, entry).await?;
        }
        txn.commit().await?;
        Ok((updated, enqueued))
    }

    /// Marks the guarantee of an approved request released (R13); idempotent. Returns
    /// false when it was released already.
    #[tracing::instrument(skip_all, fields(request_id = %request_id))]
    pub async fn release(
        &self,
        request_id: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, GuaranteeError> {
        let txn = tavana_kit::db::begin_write(&self.db).await?;
        let locked = credit_request::Entity::update_many()
            .col_expr(
                credit_request::Column::Version,
                Expr::col(credit_request::Column::Version).add(1i64),
            )
            .filter(credit_request::Column::Id.eq(request_id))
            .exec(&txn)
            .await?;
        if locked.rows_affected == 0 {
            return Err(GuaranteeError::RequestNotFound);
        }
        let Some(current) = credit_request::Entity::find_by_id(request_id.to_owned())
            .one(&txn)
            .await?
        else {
            return Err(GuaranteeError::RequestNotFound);
        };
        let status = parse_status(&current)?;
        if status != RequestStatus::Approved {
            return Err(GuaranteeError::NotApproved(status));
        }
        if current.released {
            return Ok(false);
        }
        credit_request::Entity::update_many()
            .col_expr(credit_request::Column::Released, Expr::value(true))
            .col_expr(credit_request::Column::ReleasedAt, Expr::value(Some(at)))
            .filter(credit_request::Column::Id.eq(request_id))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(true)
    }

    /// Returns a request, or `None` when there is none with this id.
    pub async fn find(
        &self,
        request_id: &str,
    ) -> Result<Option<credit_request::Model>, GuaranteeError> {
        Ok(credit_request::Entity::find_by_id(request_id.to_owned())
            .one(&self.db)
            .await?)
    }

    /// Returns a request with its history and its guarantor's count.
    pub async fn view(
        &self,
        request: credit_request::Model,
    ) -> Result<RequestView, GuaranteeError> {
        let history = status_change::Entity::find()
            .filter(status_change::Column::RequestId.eq(request.id.clone()))
            .order_by_asc(status_change::Column::Id)
            .all(&self.db)
            .await?;
        let guarantor_held = count_held(&self.db, &request.guarantor_national_id, None).await?;
        Ok(RequestView {
            request,
            history,
            guarantor_held,
        })
    }

    /// Returns how many guarantees the guarantor with `national_id` holds (S4).
    pub async fn guarantees_held(&self, national_id: &str) -> Result<u32, GuaranteeError> {
        count_held(&self.db, national_id, None).await
    }

    /// Lists requests of `scope`, newest first, `page_size` at a time after `after`;
    /// returns the page and the cursor of the next one.
    pub async fn list(
        &self,
        scope: &ListScope,
        status: Option<RequestStatus>,
        page_size: u64,
        after: Option<&Cursor>,
    ) -> Result<(Vec<RequestView>, Option<Cursor>), GuaranteeError> {
        let mut query = credit_request::Entity::find();
        query = match scope {
            ListScope::Applicant(employee_id) => {
                query.filter(credit_request::Column::ApplicantEmployeeId.eq(employee_id.clone()))
            }
            ListScope::Guarantor {
                employee_id,
                national_id,
            } => query.filter(
                Condition::any()
                    .add(credit_request::Column::GuarantorEmployeeId.eq(employee_id.clone()))
                    .add(credit_request::Column::GuarantorNationalId.eq(national_id.clone())),
            ),
            ListScope::Region(region) => {
                query.filter(credit_request::Column::RegionCode.eq(region.clone()))
            }
        };
        if let Some(status) = status {
            query = query.filter(credit_request::Column::Status.eq(status.as_str()));
        }
        if let Some(after) = after {
            query = query.filter(
                Condition::any()
                    .add(credit_request::Column::CreatedMicros.lt(after.created_micros))
                    .add(
                        Condition::all()
                            .add(credit_request::Column::CreatedMicros.eq(after.created_micros))
                            .add(credit_request::Column::Id.lt(after.id.clone())),
                    ),
            );
        }
        let mut rows = query
            .order_by_desc(credit_request::Column::CreatedMicros)
            .order_by_desc(credit_request::Column::Id)
            .limit(page_size + 1)
            .all(&self.db)
            .await?;
        // Page sizes are at most 100 (checked at the edge): the conversion cannot fail.
        let page_len = usize::try_from(page_size).unwrap_or(usize::MAX);
        let next = if rows.len() > page_len {
            rows.truncate(page_len);
            rows.last().map(|last| Cursor {
                created_micros: last.created_micros,
                id: last.id.clone(),
            })
        } else {
            None
        };
        let mut views = Vec::with_capacity(rows.len());
        for row in rows {
            views.push(self.view(row).await?);
        }
        Ok((views, next))
    }
}
