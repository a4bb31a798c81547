//! R19's records stored in the order of their key: on SQLite the idempotency records become
//! a table `WITHOUT ROWID`, keyed by caller and key, so that a purchase writes its record
//! into one B-tree instead of a table of rows and a second one of their keys (a page less
//! for every purchase). PostgreSQL keeps every table's rows apart from its key's index, so
//! nothing changes there.

use sea_orm_migration::prelude::*;
use tavana_kit::db::{store_sqlite_table_by_key, store_sqlite_table_by_rowid};

#[derive(DeriveMigrationName)]
pub struct Migration;

const TABLE: &str = "idempotency_record";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        store_sqlite_table_by_key(manager, TABLE).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        store_sqlite_table_by_rowid(manager, TABLE).await
    }
}
