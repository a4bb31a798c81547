//! The instalments' indexes: settling an instalment (R23) changes no indexed column, so a
//! remittance writes no index entry for the rows it settles; R31's stored terms are read
//! from the index of a purchase's instalments.

use std::collections::BTreeSet;

use sea_orm::DatabaseConnection;
use tavana_kit::testing::{table_indexes, table_page_fill, test_db};
use tavana_settlement_migration::{Migrator, MigratorTrait};

/// The columns a settle writes (R23).
const SETTLED_COLUMNS: [&str; 3] = ["state", "settled_at", "remittance_id"];
/// The migration that took the state out of the instalments' indexes.
const WITHOUT_STATE: &str = "m20261205_000001_index_instalment_without_state";

/// The instalment table's own indexes (not its primary key's), by name, with the words of
/// what each one indexes: its columns and its condition.
async fn indexes(db: &DatabaseConnection) -> Vec<(String, BTreeSet<String>)> {
    table_indexes(db, "instalment")
        .await
        .into_iter()
        .filter(|(name, _)| name.starts_with("ix_"))
        .map(|(name, definition)| {
            // What follows the table's name: the columns and the condition.
            let (_, indexed) = definition
                .split_once(" ON ")
                .unwrap_or_else(|| panic!("{definition} names no table"));
            let (_, indexed) = indexed.split_once('(').unwrap();
            let words = indexed
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|word| !word.is_empty())
                .map(str::to_lowercase)
                .collect();
            (name, words)
        })
        .collect()
}

fn names(indexes: &[(String, BTreeSet<String>)]) -> Vec<&str> {
    indexes.iter().map(|(name, _)| name.as_str()).collect()
}

#[tokio::test]
async fn r23_no_instalment_index_names_a_column_a_settle_writes_and_the_migration_rolls_back() {
    let db = test_db::<Migrator>().await;
    let now = indexes(&db.db).await;
    assert_eq!(
        names(&now),
        [
            "ix_instalment_employee_period",
            "ix_instalment_org_national_id_period",
            "ix_instalment_org_period_national_id",
            "ix_instalment_purchase_seq_term",
            "ix_instalment_reaged_employee",
        ]
    );
    for (name, words) in &now {
        for column in SETTLED_COLUMNS {
            assert!(
                !words.contains(column),
                "{name} indexes {column}: {words:?}"
            );
        }
    }
    // The overdue instalments are found among the re-aged ones (R29), by employee.
    let (_, reaged) = now
        .iter()
        .find(|(name, _)| name == "ix_instalment_reaged_employee")
        .unwrap();
    assert!(reaged.contains("due_period"), "not partial: {reaged:?}");
    // R31 sums a range of purchases' stored terms from this index alone.
    let (_, by_purchase) = now
        .iter()
        .find(|(name, _)| name == "ix_instalment_purchase_seq_term")
        .unwrap();
    assert!(by_purchase.contains("ledger_term"), "{by_purchase:?}");
    if db.is_postgres() {
        for table in ["instalment", "purchase_schedule"] {
            assert_eq!(table_page_fill(&db.db, table).await, Some(50), "{table}");
        }
    }

    // Down to before the migration: the indexes that named the state are back.
    let migrations = Migrator::migrations();
    let at = migrations
        .iter()
        .position(|migration| migration.name() == WITHOUT_STATE)
        .unwrap();
    let steps = u32::try_from(migrations.len() - at).unwrap();
    Migrator::down(&db.db, Some(steps)).await.unwrap();
    let before = indexes(&db.db).await;
    assert_eq!(
        names(&before),
        [
            "ix_instalment_employee_period",
            "ix_instalment_org_period_national_id",
            "ix_instalment_org_state_national_id_period",
            "ix_instalment_purchase",
            "ix_instalment_state_employee",
        ]
    );
    if db.is_postgres() {
        assert_eq!(table_page_fill(&db.db, "instalment").await, Some(100));
    }

    Migrator::up(&db.db, None).await.unwrap();
    assert_eq!(indexes(&db.db).await, now);
}

/// Whether SQLite stores the schedules in their purchase's order (`None` on PostgreSQL).
async fn schedules_without_rowid(db: &DatabaseConnection) -> Option<bool> {
    tavana_kit::testing::sqlite_table_without_rowid(db, "purchase_schedule").await
}

#[tokio::test]
async fn r15_schedules_keep_their_rows_whichever_way_sqlite_stores_them() {
    use tavana_proto::settlement::v1::InstalmentState;

    let app = crate::spawn_service().await;
    let db = &app.db.db;
    let sqlite = !app.db.is_postgres();
    app.record(crate::schedule("P1", 1, crate::PERIOD, &[2, 1]))
        .await;
    let amounts = |items: Vec<tavana_proto::settlement::v1::Instalment>| {
        items.iter().map(|item| item.amount).collect::<Vec<_>>()
    };
    assert_eq!(schedules_without_rowid(db).await, sqlite.then_some(true));

    Migrator::down(db, Some(1)).await.unwrap();
    assert_eq!(schedules_without_rowid(db).await, sqlite.then_some(false));
    let down = amounts(app.my_instalments("E1", InstalmentState::Unspecified).await);
    Migrator::up(db, None).await.unwrap();
    // Recorded again after the rebuild: the row is found by its key, nothing doubles.
    app.record(crate::schedule("P1", 1, crate::PERIOD, &[2, 1]))
        .await;
    app.record(crate::schedule("P2", 1, crate::PERIOD, &[1]))
        .await;

    assert_eq!(schedules_without_rowid(db).await, sqlite.then_some(true));
    assert_eq!(down, [2, 1]);
    assert_eq!(
        amounts(app.my_instalments("E1", InstalmentState::Unspecified).await),
        [2, 1, 1]
    );
}
