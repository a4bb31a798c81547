//! Name indexes that serve the substring search (R27), `name_normalized LIKE '%q%'`,
//! which no B-tree can serve.
//!
//! - PostgreSQL: a trigram GiST index replaces the trigram GIN index of the first
//!   migration. Merchant names share words («فروشگاه» is in most of them), and GIN reads
//!   the whole posting list of every trigram of the query: with 100,000 merchants, a
//!   query holding such a word cost about 2.5 ms of CPU however rare the whole name was,
//!   against about 0.3 ms on GiST with a 64-byte signature. (GiST is the slower one for a
//!   query of a few trigrams only, such as a bare number: about 2 ms against 0.1 ms.)
//!   GiST also has no pending list, which on GIN (`fastupdate`) grows with every approval
//!   until a vacuum and is read by every search.
//! - SQLite: an FTS5 table with the trigram tokenizer (the bundled SQLite is built with
//!   FTS5), kept in step with `merchant` by triggers, so that every writer (the service,
//!   a repair by hand) keeps it right. It holds the merchant id beside the name rather
//!   than sharing `merchant`'s rowid: SQLite may renumber the rowids of a table without
//!   an `INTEGER PRIMARY KEY` on `VACUUM`. The price is that removing a name finds its
//!   row by a scan of the index; the service never renames or deletes merchants.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

// The planner estimates how many names a `LIKE '%q%'` matches from the column's
// histogram, and never below one histogram bucket: with the default 100 buckets, a query
// that happens to match one sampled name counts as 1% of all merchants, and the planner
// walks the listing in name order (tens of milliseconds when the match sorts last)
// instead of asking the index. 1,000 buckets bring that floor to 0.1%.
const POSTGRES_UP: [&str; 5] = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "DROP INDEX IF EXISTS ix_merchant_name_trgm",
    "CREATE INDEX ix_merchant_name_trgm ON merchant \
     USING gist (name_normalized gist_trgm_ops (siglen = 64))",
    "ALTER TABLE merchant ALTER COLUMN name_normalized SET STATISTICS 1000",
    "ANALYZE merchant",
];

const POSTGRES_DOWN: [&str; 3] = [
    "ALTER TABLE merchant ALTER COLUMN name_normalized SET STATISTICS -1",
    "DROP INDEX IF EXISTS ix_merchant_name_trgm",
    "CREATE INDEX ix_merchant_name_trgm ON merchant USING gin (name_normalized gin_trgm_ops)",
];

// The trigram tokenizer folds case (its default): the index then finds a superset of
// what SQLite's LIKE (case-blind for ASCII) matches, and the search checks the LIKE on
// every candidate.
const SQLITE_UP: [&str; 5] = [
    "CREATE VIRTUAL TABLE merchant_name_search USING fts5(\
         name_normalized, merchant_id UNINDEXED, tokenize = 'trigram')",
    "INSERT INTO merchant_name_search (name_normalized, merchant_id) \
     SELECT name_normalized, id FROM merchant",
    "CREATE TRIGGER merchant_name_search_after_insert AFTER INSERT ON merchant BEGIN \
         INSERT INTO merchant_name_search (name_normalized, merchant_id) \
         VALUES (new.name_normalized, new.id); \
     END",
    "CREATE TRIGGER merchant_name_search_after_update AFTER UPDATE OF name_normalized, id \
     ON merchant \
     WHEN old.name_normalized IS NOT new.name_normalized OR old.id IS NOT new.id BEGIN \
         DELETE FROM merchant_name_search WHERE merchant_id = old.id; \
         INSERT INTO merchant_name_search (name_normalized, merchant_id) \
         VALUES (new.name_normalized, new.id); \
     END",
    "CREATE TRIGGER merchant_name_search_after_delete AFTER DELETE ON merchant BEGIN \
         DELETE FROM merchant_name_search WHERE merchant_id = old.id; \
     END",
];

const SQLITE_DOWN: [&str; 4] = [
    "DROP TRIGGER IF EXISTS merchant_name_search_after_delete",
    "DROP TRIGGER IF EXISTS merchant_name_search_after_update",
    "DROP TRIGGER IF EXISTS merchant_name_search_after_insert",
    "DROP TABLE IF EXISTS merchant_name_search",
];

async fn run(manager: &SchemaManager<'_>, statements: &[&str]) -> Result<(), DbErr> {
    let connection = manager.get_connection();
    for statement in statements {
        connection.execute_unprepared(statement).await?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        match manager.get_database_backend() {
            DbBackend::Postgres => run(manager, &POSTGRES_UP).await,
            _ => run(manager, &SQLITE_UP).await,
        }
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        match manager.get_database_backend() {
            DbBackend::Postgres => run(manager, &POSTGRES_DOWN).await,
            _ => run(manager, &SQLITE_DOWN).await,
        }
    }
}
