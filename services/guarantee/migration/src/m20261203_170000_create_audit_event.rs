//! The append-only audit trail of this service's staff actions (R32).

use sea_orm_migration::prelude::*;
use tavana_kit::audit::{create_audit_table, drop_audit_table};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        create_audit_table(manager).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        drop_audit_table(manager).await
    }
}
