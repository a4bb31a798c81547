//! Sessions and their refresh tokens (R3-R5).

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait as _, OnConflict, Query};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait,
    QueryFilter, Set,
};
use tavana_kit::caller::RoleGrant;
use tavana_kit::outbox::Enqueued;

use super::employee::{find_employee, grants_of};
use super::entities::{account, employee, refresh_token, session};
use super::sms::enqueue_sms;
use crate::domain::sms::SmsMessage;

/// A new session's first refresh token.
#[derive(Clone, Debug)]
pub struct NewRefreshToken {
    /// The SHA-256 of the token; the token itself is never stored.
    pub token_hash: String,
    /// When the session ends, whatever refreshes happen (absolute lifetime).
    pub expires_at: DateTime<Utc>,
}

/// What a successful login or refresh returns.
#[derive(Clone, Debug)]
pub struct OpenedSession {
    /// The session's id (the tokens' `sid`).
    pub session_id: String,
    /// The signed-in employee.
    pub employee: employee::Model,
    /// Their roles, for the access token.
    pub grants: Vec<RoleGrant>,
    /// The welcome SMS of a first login (R4), to deliver at once.
    pub welcome: Enqueued,
}

/// Opens a session after a verified code, in one transaction: the first login creates the
/// account and queues the welcome SMS exactly once (R4).
#[tracing::instrument(skip_all, fields(employee_id = %employee_id))]
pub async fn open_session(
    db: &DatabaseConnection,
    employee_id: &str,
    refresh: &NewRefreshToken,
    now: DateTime<Utc>,
    welcome: impl FnOnce(&employee::Model) -> SmsMessage,
) -> Result<Option<OpenedSession>, DbErr> {
    let Some(employee) = find_employee(db, employee_id).await? else {
        return Ok(None);
    };
    let txn = tavana_kit::db::begin_write(db).await?;
    // The account insert is the first statement: two first logins at once run one after
    // the other, and only the one that inserts queues the welcome SMS.
    let insert_account = Query::insert()
        .into_table(account::Entity)
        .columns([account::Column::EmployeeId, account::Column::CreatedAt])
        .values_panic([employee_id.into(), now.into()])
        .on_conflict(
            OnConflict::column(account::Column::EmployeeId)
                .do_nothing()
                .to_owned(),
        )
        .to_owned();
    let created = txn.execute(&insert_account).await?.rows_affected() == 1;
    let mut welcomed = Enqueued::default();
    if created {
        welcomed =
            enqueue_sms(&txn, &format!("welcome:{employee_id}"), &welcome(&employee)).await?;
        tracing::info!("account created");
    }
    let session_id = uuid::Uuid::now_v7().to_string();
    session::ActiveModel {
        id: Set(session_id.clone()),
        employee_id: Set(employee_id.to_owned()),
        created_at: Set(now),
        revoked_at: Set(None),
        revoked_reason: Set(None),
    }
    .insert(&txn)
    .await?;
    insert_refresh_token(&txn, &session_id, refresh, now).await?;
    let grants = grants_of(&txn, employee_id).await?;
    txn.commit().await?;
    Ok(Some(OpenedSession {
        session_id,
        employee,
        grants,
        welcome: welcomed,
    }))
}

async fn insert_refresh_token<C: ConnectionTrait>(
    conn: &C,
    session_id: &str,
    refresh: &NewRefreshToken,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    refresh_token::ActiveModel {
        token_hash: Set(refresh.token_hash.clone()),
        session_id: Set(session_id.to_owned()),
        issued_at: Set(now),
        expires_at: Set(refresh.expires_at),
        rotated_at: Set(None),
    }
    .insert(conn)
    .await?;
    Ok(())
}

/// The outcome of presenting a refresh token.
#[derive(Clone, Debug)]
pub enum Rotation {
    /// The token was exchanged for a new one of the same session.
    Rotated(Box<OpenedSession>),
    /// The token was already rotated: its whole session family (this
    /// session id) is now revoked.
    Reused(String),
    /// Unknown, expired, or of a revoked session.
    Invalid,
}

pub(super) async fn revoke_session_row<C: ConnectionTrait>(
    conn: &C,
    session_id: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<u64, DbErr> {
    let update = Query::update()
        .table(session::Entity)
        .value(session::Column::RevokedAt, now)
        .value(session::Column::RevokedReason, reason)
        .and_where(Expr::col(session::Column::Id).eq(session_id))
        .and_where(Expr::col(session::Column::RevokedAt).is_null())
        .to_owned();
    Ok(conn.execute(&update).await?.rows_affected())
}

/// Exchanges a refresh token for a new one of the same session, in one transaction;
/// presenting an already rotated token revokes the whole session.
#[tracing::instrument(skip_all)]
pub async fn rotate_refresh_token(
    db: &DatabaseConnection,
    presented_hash: &str,
    next: &NewRefreshToken,
    now: DateTime<Utc>,
) -> Result<Rotation, DbErr> {
    let txn = tavana_kit::db::begin_write(db).await?;
    // Write first: of two exchanges of the same token only one marks it; the other then
    // finds it rotated, which is a reuse.
    let mark = Query::update()
        .table(refresh_token::Entity)
        .value(refresh_token::Column::RotatedAt, now)
        .and_where(Expr::col(refresh_token::Column::TokenHash).eq(presented_hash))
        .and_where(Expr::col(refresh_token::Column::RotatedAt).is_null())
        .and_where(Expr::col(refresh_token::Column::ExpiresAt).gt(now))
        .to_owned();
    let marked = txn.execute(&mark).await?.rows_affected() == 1;
    let Some(token) = refresh_token::Entity::find_by_id(presented_hash.to_owned())
        .one(&txn)
        .await?
    else {
        return Ok(Rotation::Invalid);
    };
    if !marked {
        if token.rotated_at.is_none() {
            // Expired.
            return Ok(Rotation::Invalid);
        }
        revoke_session_row(&txn, &token.session_id, "refresh_token_reused", now).await?;
        txn.commit().await?;
        tracing::warn!(session_id = %token.session_id, "refresh token reused, session revoked");
        return Ok(Rotation::Reused(token.session_id));
    }
    let Some(session) = session::Entity::find_by_id(token.session_id.clone())
        .one(&txn)
        .await?
        .filter(|session| session.revoked_at.is_none())
    else {
        return Ok(Rotation::Invalid);
    };
    // A session's lifetime counts from its login: rotation never extends it.
    let next = NewRefreshToken {
        token_hash: next.token_hash.clone(),
        expires_at: std::cmp::min(next.expires_at, token.expires_at),
    };
    insert_refresh_token(&txn, &session.id, &next, now).await?;
    let Some(employee) = find_employee(&txn, &session.employee_id).await? else {
        return Ok(Rotation::Invalid);
    };
    let grants = grants_of(&txn, &employee.id).await?;
    txn.commit().await?;
    Ok(Rotation::Rotated(Box::new(OpenedSession {
        session_id: session.id,
        employee,
        grants,
        welcome: Enqueued::default(),
    })))
}

/// Revokes one session of an employee; false when no such session is theirs.
#[tracing::instrument(skip_all, fields(session_id = %session_id))]
pub async fn revoke_session<C: ConnectionTrait>(
    conn: &C,
    session_id: &str,
    employee_id: &str,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let found = session::Entity::find_by_id(session_id.to_owned())
        .filter(session::Column::EmployeeId.eq(employee_id))
        .one(conn)
        .await?;
    if found.is_none() {
        return Ok(false);
    }
    revoke_session_row(conn, session_id, "logout", now).await?;
    Ok(true)
}

/// Returns true when the session exists and is not revoked.
pub async fn session_is_active<C: ConnectionTrait>(
    conn: &C,
    session_id: &str,
) -> Result<bool, DbErr> {
    Ok(session::Entity::find_by_id(session_id.to_owned())
        .one(conn)
        .await?
        .is_some_and(|session| session.revoked_at.is_none()))
}
