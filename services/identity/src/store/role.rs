//! Staff role grants (R6).

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{OnConflict, Query};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use tavana_kit::caller::{Role, RoleGrant};

use super::employee::{find_employee_by_national_id, grants_of};
use super::entities::role_grant;
use crate::error::IdentityError;

/// Grants a role to the employee with this national ID; granting twice changes nothing.
/// `region` is the grant's region as [`crate::domain::access::grant_region`] returned it.
#[tracing::instrument(skip_all, fields(role = %role))]
pub async fn grant_role<C: ConnectionTrait>(
    conn: &C,
    national_id: &str,
    role: Role,
    region: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Vec<RoleGrant>, IdentityError> {
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
/// nothing. `region` is normalized by [`crate::domain::access::revoke_region`].
#[tracing::instrument(skip_all, fields(role = %role))]
pub async fn revoke_role<C: ConnectionTrait>(
    conn: &C,
    national_id: &str,
    role: Role,
    region: Option<&str>,
) -> Result<Vec<RoleGrant>, IdentityError> {
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
