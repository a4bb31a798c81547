//! Mobile changes by support (R5).

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait,
    IntoActiveModel, QueryFilter, QueryOrder, Set,
};
use tavana_kit::audit::AuditEntry;
use tavana_kit::outbox::Enqueued;

use super::employee::{find_employee_by_national_id, lock_employee};
use super::entities::{employee, mobile_change, session};
use super::session::revoke_session_row;
use super::sms::enqueue_sms;
use crate::domain::sms::SmsMessage;
use crate::error::IdentityError;

/// What support records about a mobile change (R5).
#[derive(Clone, Debug)]
pub struct MobileChangeRequest {
    /// Whose mobile changes.
    pub national_id: String,
    /// The new mobile, canonical form.
    pub new_mobile: String,
    /// The welfare unit that asked for the change (R5).
    pub requested_by_unit: String,
    /// The unit's letter or ticket reference.
    pub reference: String,
    /// The support user who recorded it.
    pub actor: String,
}

/// Changes a mobile in one transaction (R5): records who asked, revokes every session of
/// the employee and queues an SMS to the new number. Returns the employee, the queued SMS
/// and the revoked sessions.
#[tracing::instrument(skip_all)]
pub async fn change_mobile(
    db: &DatabaseConnection,
    request: &MobileChangeRequest,
    now: DateTime<Utc>,
    audit: &AuditEntry,
) -> Result<(employee::Model, Enqueued, Vec<String>), IdentityError> {
    let txn = tavana_kit::db::begin_write(db).await?;
    if !lock_employee(&txn, &request.national_id, now).await? {
        return Err(IdentityError::EmployeeNotFound);
    }
    let Some(employee) = find_employee_by_national_id(&txn, &request.national_id).await? else {
        return Err(IdentityError::EmployeeNotFound);
    };
    let change = mobile_change::ActiveModel {
        id: Default::default(),
        employee_id: Set(employee.id.clone()),
        old_mobile: Set(employee.mobile.clone()),
        new_mobile: Set(request.new_mobile.clone()),
        requested_by_unit: Set(request.requested_by_unit.clone()),
        reference: Set(request.reference.clone()),
        actor: Set(request.actor.clone()),
        changed_at: Set(now),
    }
    .insert(&txn)
    .await?;
    let mut active = employee.into_active_model();
    active.mobile = Set(request.new_mobile.clone());
    active.updated_at = Set(now);
    let employee = active.update(&txn).await?;
    let revoked = revoke_sessions_of(&txn, &employee.id, "mobile_changed", now).await?;
    let sms = enqueue_sms(
        &txn,
        &format!("mobile_changed:{}", change.id),
        &SmsMessage::mobile_changed(&request.new_mobile),
    )
    .await?;
    tavana_kit::audit::record_in(&txn, audit).await?;
    txn.commit().await?;
    tracing::info!(employee_id = %employee.id, revoked_sessions = revoked.len(), "mobile changed");
    Ok((employee, sms, revoked))
}

/// Revokes every open session of an employee; returns their ids.
pub async fn revoke_sessions_of<C: ConnectionTrait>(
    conn: &C,
    employee_id: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<Vec<String>, DbErr> {
    let open: Vec<String> = session::Entity::find()
        .filter(session::Column::EmployeeId.eq(employee_id))
        .filter(session::Column::RevokedAt.is_null())
        .all(conn)
        .await?
        .into_iter()
        .map(|session| session.id)
        .collect();
    for session_id in &open {
        revoke_session_row(conn, session_id, reason, now).await?;
    }
    Ok(open)
}

/// Returns the mobile changes of an employee, oldest first.
pub async fn mobile_changes_of<C: ConnectionTrait>(
    conn: &C,
    employee_id: &str,
) -> Result<Vec<mobile_change::Model>, DbErr> {
    mobile_change::Entity::find()
        .filter(mobile_change::Column::EmployeeId.eq(employee_id))
        .order_by_asc(mobile_change::Column::Id)
        .all(conn)
        .await
}
