//! Organizations and their contracts.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{OnConflict, Query};
use sea_orm::{ActiveModelTrait, ConnectionTrait, DbErr, EntityTrait, IntoActiveModel, Set};

use super::entities::organization;

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
