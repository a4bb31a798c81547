//! The outbox of this service's messages to credit and identity (R28).

use sea_orm_migration::prelude::*;
use tavana_kit::outbox::{create_outbox_indexes, create_outbox_table};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.create_table(create_outbox_table()).await?;
        for index in create_outbox_indexes() {
            manager.create_index(index).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(Alias::new("outbox"))
                    .if_exists()
                    .to_owned(),
            )
            .await
    }
}
