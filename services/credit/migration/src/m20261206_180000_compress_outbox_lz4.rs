//! The outbox's payloads compressed with LZ4 on PostgreSQL (see
//! `tavana_kit::outbox::compress_outbox_with_lz4`).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        tavana_kit::outbox::compress_outbox_with_lz4(manager).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        tavana_kit::outbox::compress_outbox_as_default(manager).await
    }
}
