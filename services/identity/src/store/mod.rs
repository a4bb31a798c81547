//! Identity's queries: the only code that touches its database.

pub mod entities;

use chrono::{DateTime, NaiveDate, Utc};
use sea_orm::sea_query::{Expr, ExprTrait as _, Func, OnConflict, Query};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait,
    IntoActiveModel, QueryFilter, QueryOrder, QuerySelect, Set,
};
use tavana_kit::caller::{Role, RoleGrant};
use tavana_kit::db::IDS_PER_STATEMENT;
use tavana_kit::error::Violation;

use crate::domain::employee::{
    CSV_COLUMNS, EmployeeData, ImportReport, RawEmployee, is_csv_header, rejected_line,
};
use crate::domain::sms::{SMS_TOPIC, SmsMessage};
use crate::error::IdentityError;
use entities::{
    account, dev_sms, employee, mobile_change, organization, refresh_token, role_grant, session,
};

/// An employee with what is attached to their record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmployeeView {
    pub employee: employee::Model,
    pub has_account: bool,
    /// Stored staff grants (without the implicit `employee`).
    pub grants: Vec<RoleGrant>,
}

/// Writes an SMS to the outbox; call it inside the transaction of the change that causes it.
pub async fn enqueue_sms<C: ConnectionTrait>(
    conn: &C,
    dedup_key: &str,
    sms: &SmsMessage,
) -> Result<(), DbErr> {
    let payload = serde_json::to_vec(sms).map_err(|error| DbErr::Custom(error.to_string()))?;
    tavana_kit::outbox::enqueue(conn, SMS_TOPIC, dedup_key, payload).await
}

/// Writes many SMS to the outbox, each under its dedup key; one already there (same key)
/// is left alone (R28).
pub async fn enqueue_sms_many<C: ConnectionTrait>(
    conn: &C,
    messages: Vec<(String, SmsMessage)>,
) -> Result<(), DbErr> {
    let messages = messages
        .into_iter()
        .map(|(dedup_key, sms)| {
            Ok(tavana_kit::outbox::Message {
                topic: SMS_TOPIC,
                dedup_key,
                payload: serde_json::to_vec(&sms)
                    .map_err(|error| DbErr::Custom(error.to_string()))?,
            })
        })
        .collect::<Result<Vec<_>, DbErr>>()?;
    tavana_kit::outbox::enqueue_many(conn, messages).await
}

/// Returns true once the outbox has delivered (or given up on) every SMS queued under
/// `dedup_keys` (without repeats).
pub async fn sms_all_delivered<C: ConnectionTrait>(
    conn: &C,
    dedup_keys: &[String],
) -> Result<bool, DbErr> {
    use tavana_kit::outbox::Outbox;
    for keys in dedup_keys.chunks(IDS_PER_STATEMENT) {
        let query = Query::select()
            .expr_as(Func::count(Expr::col(Outbox::Id)), "n")
            .from(Outbox::Table)
            .and_where(Expr::col(Outbox::Topic).eq(SMS_TOPIC))
            .and_where(Expr::col(Outbox::DedupKey).is_in(keys.iter().map(String::as_str)))
            .and_where(
                Expr::col(Outbox::DeliveredAt)
                    .is_not_null()
                    .or(Expr::col(Outbox::FailedAt).is_not_null()),
            )
            .to_owned();
        let done: i64 = match conn.query_one(&query).await? {
            Some(row) => row.try_get("", "n")?,
            None => 0,
        };
        if u64::try_from(done).unwrap_or(0) < keys.len() as u64 {
            return Ok(false);
        }
    }
    Ok(true)
}

// ---------------------------------------------------------------------------------------
// Organizations

/// Creates an organization, or renames it and sets its contract flag when it exists.
#[tracing::instrument(skip_all, fields(organization_id = %id))]
pub async fn upsert_organization<C: ConnectionTrait>(
    conn: &C,
    id: &str,
    name: &str,
    in_force: bool,
    now: DateTime<Utc>,
) -> Result<organization::Model, DbErr> {
    let insert = Query::insert()
        .into_table(organization::Entity)
        .columns([
            organization::Column::Id,
            organization::Column::Name,
            organization::Column::ContractInForce,
            organization::Column::CreatedAt,
            organization::Column::UpdatedAt,
        ])
        .values_panic([
            id.into(),
            name.into(),
            in_force.into(),
            now.into(),
            now.into(),
        ])
        .on_conflict(
            OnConflict::column(organization::Column::Id)
                .update_columns([
                    organization::Column::Name,
                    organization::Column::ContractInForce,
                    organization::Column::UpdatedAt,
                ])
                .to_owned(),
        )
        .to_owned();
    conn.execute(&insert).await?;
    find_organization(conn, id)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound(id.to_owned()))
}

/// Returns an organization.
pub async fn find_organization<C: ConnectionTrait>(
    conn: &C,
    id: &str,
) -> Result<Option<organization::Model>, DbErr> {
    organization::Entity::find_by_id(id.to_owned())
        .one(conn)
        .await
}

/// Sets whether an organization's contract is in force; `None` when it does not exist.
#[tracing::instrument(skip_all, fields(organization_id = %id, in_force))]
pub async fn set_organization_contract<C: ConnectionTrait>(
    conn: &C,
    id: &str,
    in_force: bool,
    now: DateTime<Utc>,
) -> Result<Option<organization::Model>, DbErr> {
    let Some(found) = find_organization(conn, id).await? else {
        return Ok(None);
    };
    let mut active = found.into_active_model();
    active.contract_in_force = Set(in_force);
    active.updated_at = Set(now);
    Ok(Some(active.update(conn).await?))
}

// ---------------------------------------------------------------------------------------
// Employees

/// Returns an employee by id.
pub async fn find_employee<C: ConnectionTrait>(
    conn: &C,
    employee_id: &str,
) -> Result<Option<employee::Model>, DbErr> {
    employee::Entity::find_by_id(employee_id.to_owned())
        .one(conn)
        .await
}

/// Returns the employees among `employee_ids` that exist, in no particular order.
pub async fn find_employees<C: ConnectionTrait>(
    conn: &C,
    employee_ids: &[&str],
) -> Result<Vec<employee::Model>, DbErr> {
    tavana_kit::db::find_in::<employee::Entity>(conn, employee::Column::Id, employee_ids).await
}

/// Returns an employee by national ID (ten digits).
pub async fn find_employee_by_national_id<C: ConnectionTrait>(
    conn: &C,
    national_id: &str,
) -> Result<Option<employee::Model>, DbErr> {
    employee::Entity::find()
        .filter(employee::Column::NationalId.eq(national_id))
        .one(conn)
        .await
}

/// Returns the employee with this national ID and this mobile, if any (R3).
pub async fn find_employee_for_login<C: ConnectionTrait>(
    conn: &C,
    national_id: &str,
    mobile: &str,
) -> Result<Option<employee::Model>, DbErr> {
    employee::Entity::find()
        .filter(employee::Column::NationalId.eq(national_id))
        .filter(employee::Column::Mobile.eq(mobile))
        .one(conn)
        .await
}

/// Returns true when the employee has a Tavana account (R4).
pub async fn has_account<C: ConnectionTrait>(conn: &C, employee_id: &str) -> Result<bool, DbErr> {
    Ok(account::Entity::find_by_id(employee_id.to_owned())
        .one(conn)
        .await?
        .is_some())
}

/// Returns an employee's stored staff grants, oldest first.
pub async fn grants_of<C: ConnectionTrait>(
    conn: &C,
    employee_id: &str,
) -> Result<Vec<RoleGrant>, DbErr> {
    let rows = role_grant::Entity::find()
        .filter(role_grant::Column::EmployeeId.eq(employee_id))
        .order_by_asc(role_grant::Column::Id)
        .all(conn)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|row| {
            let role = Role::parse(&row.role)?;
            Some(RoleGrant {
                role,
                region: (!row.region_code.is_empty()).then_some(row.region_code),
            })
        })
        .collect())
}

/// Returns an employee with their account flag and grants.
pub async fn employee_view<C: ConnectionTrait>(
    conn: &C,
    employee: employee::Model,
) -> Result<EmployeeView, DbErr> {
    let has_account = has_account(conn, &employee.id).await?;
    let grants = grants_of(conn, &employee.id).await?;
    Ok(EmployeeView {
        employee,
        has_account,
        grants,
    })
}

/// Touches an employee row as a transaction's first statement; returns whether it exists.
async fn lock_employee<C: ConnectionTrait>(
    conn: &C,
    national_id: &str,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let touch = Query::update()
        .table(employee::Entity)
        .value(employee::Column::UpdatedAt, now)
        .and_where(Expr::col(employee::Column::NationalId).eq(national_id))
        .to_owned();
    Ok(conn.execute(&touch).await?.rows_affected() > 0)
}

/// Creates or updates an employee's HR data by national ID (R1), in one transaction.
///
/// `authorize` gets the employee's current region (`None` for a new employee) and says
/// whether the caller may write; a different mobile for an employee with an account is
/// refused, since only support changes it (R5). Returns the record and whether it is new.
#[tracing::instrument(skip_all, fields(national_id = %data.national_id.masked()))]
pub async fn upsert_employee(
    db: &DatabaseConnection,
    data: &EmployeeData,
    authorize: impl Fn(Option<&str>) -> bool,
    now: DateTime<Utc>,
) -> Result<(employee::Model, bool), IdentityError> {
    let txn = tavana_kit::db::begin_write(db).await?;
    // Write first: holds the row (PostgreSQL) or the database (SQLite) until commit, so
    // concurrent writes of one employee run one after the other.
    lock_employee(&txn, data.national_id.as_str(), now).await?;
    let existing = find_employee_by_national_id(&txn, data.national_id.as_str()).await?;
    if !authorize(existing.as_ref().map(|e| e.region_code.as_str())) {
        return Err(IdentityError::PermissionDenied);
    }
    if find_organization(&txn, &data.organization_id)
        .await?
        .is_none()
    {
        return Err(IdentityError::OrganizationUnknown);
    }
    let (model, created) = match existing {
        Some(existing) => {
            if existing.mobile != data.mobile.as_str() && has_account(&txn, &existing.id).await? {
                return Err(IdentityError::MobileChangeRequiresSupport);
            }
            let mut active = existing.into_active_model();
            active.full_name = Set(data.full_name.clone());
            active.mobile = Set(data.mobile.as_str().to_owned());
            active.organization_id = Set(data.organization_id.clone());
            active.region_code = Set(data.region_code.clone());
            active.net_salary = Set(data.net_salary.0);
            active.service_start_date = Set(data.service_start_date);
            active.updated_at = Set(now);
            (active.update(&txn).await?, false)
        }
        None => {
            let active = employee::ActiveModel {
                id: Set(uuid::Uuid::now_v7().to_string()),
                national_id: Set(data.national_id.as_str().to_owned()),
                full_name: Set(data.full_name.clone()),
                mobile: Set(data.mobile.as_str().to_owned()),
                organization_id: Set(data.organization_id.clone()),
                region_code: Set(data.region_code.clone()),
                net_salary: Set(data.net_salary.0),
                service_start_date: Set(data.service_start_date),
                created_at: Set(now),
                updated_at: Set(now),
            };
            (active.insert(&txn).await?, true)
        }
    };
    txn.commit().await?;
    Ok((model, created))
}

/// Imports an HR CSV (R1): each line is parsed and written on its own, so a bad line
/// rejects only itself, with its line number and why.
///
/// `authorize` gets the employee's current region (`None` when new) and the line's region.
#[tracing::instrument(skip_all, fields(bytes = csv.len()))]
pub async fn import_employees(
    db: &DatabaseConnection,
    csv: &[u8],
    today: NaiveDate,
    authorize: impl Fn(Option<&str>, &str) -> bool,
    now: DateTime<Utc>,
) -> Result<ImportReport, IdentityError> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(true)
        .from_reader(csv);
    let header_ok = match reader.headers() {
        Ok(headers) => is_csv_header(&headers.iter().collect::<Vec<_>>()),
        Err(_) => false,
    };
    if !header_ok {
        return Err(IdentityError::InvalidFields(vec![Violation::new(
            "csv",
            "csv_header_invalid",
            format!(
                "The first line must be the header {}.",
                CSV_COLUMNS.join(",")
            ),
            format!("سطر نخست باید سرستون‌های {} باشد.", CSV_COLUMNS.join(",")),
        )]));
    }
    let mut report = ImportReport::default();
    let mut record = csv::StringRecord::new();
    let mut fallback_line: u32 = 1;
    loop {
        fallback_line += 1;
        let read = reader.read_record(&mut record);
        let line = record
            .position()
            .map(|position| u32::try_from(position.line()).unwrap_or(u32::MAX))
            .unwrap_or(fallback_line);
        match read {
            Ok(false) => break,
            Ok(true) => {}
            Err(error) => {
                let line = error
                    .position()
                    .map(|position| u32::try_from(position.line()).unwrap_or(u32::MAX))
                    .unwrap_or(fallback_line);
                report.rejected.push(rejected_line(
                    line,
                    &[Violation::new(
                        "line",
                        "csv_line_invalid",
                        "The line is not valid CSV text.",
                        "این سطر متن CSV معتبری نیست.",
                    )],
                ));
                continue;
            }
        }
        if record.len() != CSV_COLUMNS.len() {
            report.rejected.push(rejected_line(
                line,
                &[Violation::new(
                    "line",
                    "csv_columns_invalid",
                    format!("The line must have {} columns.", CSV_COLUMNS.len()),
                    format!("این سطر باید {} ستون داشته باشد.", CSV_COLUMNS.len()),
                )],
            ));
            continue;
        }
        let field = |index: usize| record.get(index).unwrap_or_default().to_owned();
        let raw = RawEmployee {
            national_id: field(0),
            full_name: field(1),
            mobile: field(2),
            organization_id: field(3),
            region_code: field(4),
            net_salary: field(5),
            service_start_date: field(6),
        };
        let data = match EmployeeData::parse(&raw, today) {
            Ok(data) => data,
            Err(violations) => {
                report.rejected.push(rejected_line(line, &violations));
                continue;
            }
        };
        let outcome = upsert_employee(
            db,
            &data,
            |old_region| authorize(old_region, &data.region_code),
            now,
        )
        .await;
        match outcome {
            Ok((_, true)) => report.created += 1,
            Ok((_, false)) => report.updated += 1,
            Err(IdentityError::Internal(error)) => return Err(IdentityError::Internal(error)),
            Err(error) => {
                let problem = error.to_problem();
                report.rejected.push(crate::domain::employee::RejectedLine {
                    line,
                    code: problem.code,
                    message_en: problem.message_en,
                    message_fa: problem.message_fa,
                });
            }
        }
    }
    tracing::info!(
        created = report.created,
        updated = report.updated,
        rejected = report.rejected.len(),
        "hr import done"
    );
    Ok(report)
}

// ---------------------------------------------------------------------------------------
// Sessions

/// A new session's first refresh token.
#[derive(Clone, Debug)]
pub struct NewRefreshToken {
    pub token_hash: String,
    pub expires_at: DateTime<Utc>,
}

/// What a successful login or refresh returns.
#[derive(Clone, Debug)]
pub struct OpenedSession {
    pub session_id: String,
    pub employee: employee::Model,
    pub grants: Vec<RoleGrant>,
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
    if created {
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

async fn revoke_session_row<C: ConnectionTrait>(
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
    insert_refresh_token(&txn, &session.id, next, now).await?;
    let Some(employee) = find_employee(&txn, &session.employee_id).await? else {
        return Ok(Rotation::Invalid);
    };
    let grants = grants_of(&txn, &employee.id).await?;
    txn.commit().await?;
    Ok(Rotation::Rotated(Box::new(OpenedSession {
        session_id: session.id,
        employee,
        grants,
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

// ---------------------------------------------------------------------------------------
// Mobile changes (R5)

/// What support records about a mobile change (R5).
#[derive(Clone, Debug)]
pub struct MobileChangeRequest {
    pub national_id: String,
    pub new_mobile: String,
    pub requested_by_unit: String,
    pub reference: String,
    pub actor: String,
}

/// Changes a mobile in one transaction (R5): records who asked, revokes every session of
/// the employee and queues an SMS to the new number. Returns the employee and the SMS's
/// dedup key.
#[tracing::instrument(skip_all)]
pub async fn change_mobile(
    db: &DatabaseConnection,
    request: &MobileChangeRequest,
    now: DateTime<Utc>,
) -> Result<(employee::Model, String, Vec<String>), IdentityError> {
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
    let dedup_key = format!("mobile_changed:{}", change.id);
    enqueue_sms(
        &txn,
        &dedup_key,
        &SmsMessage::mobile_changed(&request.new_mobile),
    )
    .await?;
    txn.commit().await?;
    tracing::info!(employee_id = %employee.id, revoked_sessions = revoked.len(), "mobile changed");
    Ok((employee, dedup_key, revoked))
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

// ---------------------------------------------------------------------------------------
// Roles (R6)

fn grant_violations(role: Role, region: Option<&str>) -> Vec<Violation> {
    match (role.is_regional(), region) {
        (true, None) => vec![Violation::new(
            "region_code",
            "region_required",
            "This role is held for one region: give its region code.",
            "این نقش برای یک منطقه است: کد منطقه را بدهید.",
        )],
        (false, Some(_)) => vec![Violation::new(
            "region_code",
            "region_not_allowed",
            "This role is national: give no region code.",
            "این نقش کشوری است: کد منطقه ندهید.",
        )],
        _ => Vec::new(),
    }
}

fn normalize_region(region: Option<&str>) -> Option<String> {
    region
        .map(|region| region.trim().to_uppercase())
        .filter(|region| !region.is_empty())
}

/// Grants a role to the employee with this national ID; granting twice changes nothing.
#[tracing::instrument(skip_all, fields(role = %role))]
pub async fn grant_role<C: ConnectionTrait>(
    conn: &C,
    national_id: &str,
    role: Role,
    region: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Vec<RoleGrant>, IdentityError> {
    let region = normalize_region(region);
    let violations = grant_violations(role, region.as_deref());
    if !violations.is_empty() {
        return Err(IdentityError::InvalidFields(violations));
    }
    let Some(employee) = find_employee_by_national_id(conn, national_id).await? else {
        return Err(IdentityError::EmployeeNotFound);
    };
    let insert = Query::insert()
        .into_table(role_grant::Entity)
        .columns([
            role_grant::Column::EmployeeId,
            role_grant::Column::Role,
            role_grant::Column::RegionCode,
            role_grant::Column::GrantedAt,
        ])
        .values_panic([
            employee.id.as_str().into(),
            role.as_str().into(),
            region.unwrap_or_default().into(),
            now.into(),
        ])
        .on_conflict(
            OnConflict::columns([
                role_grant::Column::EmployeeId,
                role_grant::Column::Role,
                role_grant::Column::RegionCode,
            ])
            .do_nothing()
            .to_owned(),
        )
        .to_owned();
    conn.execute(&insert).await?;
    Ok(grants_of(conn, &employee.id).await?)
}

/// Revokes a role of the employee with this national ID; revoking a role not held changes
/// nothing.
#[tracing::instrument(skip_all, fields(role = %role))]
pub async fn revoke_role<C: ConnectionTrait>(
    conn: &C,
    national_id: &str,
    role: Role,
    region: Option<&str>,
) -> Result<Vec<RoleGrant>, IdentityError> {
    let region = normalize_region(region);
    let Some(employee) = find_employee_by_national_id(conn, national_id).await? else {
        return Err(IdentityError::EmployeeNotFound);
    };
    role_grant::Entity::delete_many()
        .filter(role_grant::Column::EmployeeId.eq(employee.id.as_str()))
        .filter(role_grant::Column::Role.eq(role.as_str()))
        .filter(role_grant::Column::RegionCode.eq(region.unwrap_or_default()))
        .exec(conn)
        .await?;
    Ok(grants_of(conn, &employee.id).await?)
}

// ---------------------------------------------------------------------------------------
// Dev SMS inbox

/// Keeps a message sent through the dev provider.
pub async fn insert_dev_sms<C: ConnectionTrait>(
    conn: &C,
    sms: &SmsMessage,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    dev_sms::ActiveModel {
        id: Default::default(),
        mobile: Set(sms.mobile.clone()),
        text: Set(sms.text.clone()),
        template: Set(sms.template.as_str().to_owned()),
        code: Set(sms.code.clone()),
        sent_at: Set(now),
    }
    .insert(conn)
    .await?;
    Ok(())
}

/// Returns the messages the dev provider kept for a mobile, newest first (at most 100).
pub async fn list_dev_sms<C: ConnectionTrait>(
    conn: &C,
    mobile: &str,
) -> Result<Vec<dev_sms::Model>, DbErr> {
    dev_sms::Entity::find()
        .filter(dev_sms::Column::Mobile.eq(mobile))
        .order_by_desc(dev_sms::Column::Id)
        .limit(100)
        .all(conn)
        .await
}
