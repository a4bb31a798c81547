//! The outbox keeps deliveries of one ordering key in order, carries the aggregate's
//! version, and stores the trace context of the span that enqueued each message.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        tavana_kit::outbox::extend_outbox_table(manager).await
    }
}
