//! Room on the purchases' pages (R18): after a remittance, credit marks settled every
//! purchase it completed (`settled_at`, or `partly_settled_at`), in batches of an
//! organization's period, which may be every row of a page in one transaction. Filled to
//! PostgreSQL's default (100%), a page has no room for the new versions, so each one went to
//! another page with a new entry in each of the purchase's indexes. Filled to half, every
//! row of a page finds room on it, and since no index names a column the marking writes,
//! PostgreSQL writes the versions in place (HOT). Refunds (`refunded_amount`, the schedule)
//! take the same room. SQLite has no such setting. Existing pages keep their fill until
//! rewritten; new purchases get the room.

use sea_orm_migration::prelude::*;
use tavana_kit::db::set_page_fill;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Percent of a PostgreSQL page that inserts fill, leaving the rest for settled versions.
const FILLFACTOR: u32 = 50;
/// Percent the table had (PostgreSQL's default).
const FULL: u32 = 100;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        set_page_fill(manager, "purchase", FILLFACTOR).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        set_page_fill(manager, "purchase", FULL).await
    }
}
