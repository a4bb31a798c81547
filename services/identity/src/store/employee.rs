//! Employees' HR records (R1) and what is attached to them.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait as _, Query};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait,
    IntoActiveModel, QueryFilter, QueryOrder, Set,
};
use tavana_kit::audit::AuditEntry;
use tavana_kit::caller::{Role, RoleGrant};

use super::entities::{account, employee, role_grant};
use super::organization::find_organization;
use crate::domain::employee::EmployeeData;
use crate::error::IdentityError;

/// An employee with what is attached to their record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmployeeView {
    /// The HR record.
    pub employee: employee::Model,
    /// Whether they have logged in once (R4).
    pub has_account: bool,
    /// Stored staff grants (without the implicit `employee`).
    pub grants: Vec<RoleGrant>,
}

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
pub(super) async fn lock_employee<C: ConnectionTrait>(
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
    audit: Option<AuditEntry>,
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
    if let Some(mut entry) = audit {
        if let Some(details) = entry.details.as_object_mut() {
            details.insert("created".to_owned(), created.into());
        }
        tavana_kit::audit::record_in(&txn, &entry).await?;
    }
    txn.commit().await?;
    Ok((model, created))
}
