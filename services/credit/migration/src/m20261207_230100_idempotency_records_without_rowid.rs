//! R19's records stored in the order of their key: on SQLite the idempotency records become
//! a table `WITHOUT ROWID`, keyed by caller and key, so that a purchase writes its record
//! into one B-tree instead of a table of rows and a second one of their keys (a page less
//! for every purchase). PostgreSQL keeps every table's rows apart from its key's index, so
//! nothing changes there.

use sea_orm_migration::prelude::*;
use tavana_kit::db::rebuild_sqlite_table;

#[derive(DeriveMigrationName)]
pub struct Migration;

const TABLE: &str = "idempotency_record";
const WITHOUT_ROWID: &str = " WITHOUT ROWID";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        rebuild_sqlite_table(manager, TABLE, |sql| {
            (!sql.ends_with(WITHOUT_ROWID)).then(|| format!("{sql}{WITHOUT_ROWID}"))
        })
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        rebuild_sqlite_table(manager, TABLE, |sql| {
            sql.strip_suffix(WITHOUT_ROWID).map(str::to_owned)
        })
        .await
    }
}
