//! Idempotency records are purged by age, all callers at once, by credit's upkeep (R19),
//! no longer a caller's at each of its purchases: an index on their age replaces the one
//! on (caller, age) that served the per-caller purge.

use sea_orm_migration::prelude::*;
use tavana_kit::db::swap_index;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum IdempotencyRecord {
    Table,
    Caller,
    CreatedAt,
}

const OLD_INDEX: &str = "idx_idempotency_caller_created";
const NEW_INDEX: &str = "idx_idempotency_created";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let by_age = Index::create()
            .name(NEW_INDEX)
            .table(IdempotencyRecord::Table)
            .col(IdempotencyRecord::CreatedAt)
            .to_owned();
        swap_index(manager, IdempotencyRecord::Table, by_age, OLD_INDEX).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let by_caller = Index::create()
            .name(OLD_INDEX)
            .table(IdempotencyRecord::Table)
            .col(IdempotencyRecord::Caller)
            .col(IdempotencyRecord::CreatedAt)
            .to_owned();
        swap_index(manager, IdempotencyRecord::Table, by_caller, NEW_INDEX).await
    }
}
