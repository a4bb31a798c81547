//! The relay's claim reads only the messages still to deliver (an index over them).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        tavana_kit::outbox::index_pending_outbox(manager).await
    }
}
