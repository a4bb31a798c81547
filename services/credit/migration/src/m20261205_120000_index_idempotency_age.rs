//! Idempotency records are purged by age, all callers at once, by credit's upkeep (R19),
//! no longer a caller's at each of its purchases: an index on their age replaces the one
//! on (caller, age) that served the per-caller purge.

use sea_orm_migration::prelude::*;

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
        manager
            .create_index(
                Index::create()
                    .name(NEW_INDEX)
                    .table(IdempotencyRecord::Table)
                    .col(IdempotencyRecord::CreatedAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name(OLD_INDEX)
                    .table(IdempotencyRecord::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name(OLD_INDEX)
                    .table(IdempotencyRecord::Table)
                    .col(IdempotencyRecord::Caller)
                    .col(IdempotencyRecord::CreatedAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name(NEW_INDEX)
                    .table(IdempotencyRecord::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await
    }
}
