//! Purchases' schedules stored in the order of their purchase's id: on SQLite
//! `purchase_schedule` becomes a table `WITHOUT ROWID`, so that recording a schedule writes
//! its row into one B-tree instead of a table of rows and a second one of their ids (a
//! page less for every purchase). PostgreSQL keeps every table's rows apart from its key's
//! index, so nothing changes there.

use sea_orm_migration::prelude::*;
use tavana_kit::db::{store_sqlite_table_by_key, store_sqlite_table_by_rowid};

#[derive(DeriveMigrationName)]
pub struct Migration;

const TABLE: &str = "purchase_schedule";

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
