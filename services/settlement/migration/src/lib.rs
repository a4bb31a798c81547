//! Database migrations of the settlement service.

pub use sea_orm_migration::prelude::*;

mod m20250101_000001_create_settlement_tables;
mod m20250101_000002_create_outbox;
mod m20261124_000001_index_instalment_org_state;
mod m20261203_000002_create_period_close;
mod m20261203_170000_create_audit_event;
mod m20261203_170000_extend_outbox;
mod m20261204_000001_index_pending_outbox;
mod m20261205_000001_index_instalment_without_state;
mod m20261207_000001_add_instalment_ledger_term;

/// The settlement service's migrations, oldest first.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20250101_000001_create_settlement_tables::Migration),
            Box::new(m20250101_000002_create_outbox::Migration),
            Box::new(m20261124_000001_index_instalment_org_state::Migration),
            Box::new(m20261203_000002_create_period_close::Migration),
            Box::new(m20261203_170000_extend_outbox::Migration),
            Box::new(m20261203_170000_create_audit_event::Migration),
            Box::new(m20261204_000001_index_pending_outbox::Migration),
            Box::new(m20261205_000001_index_instalment_without_state::Migration),
            Box::new(tavana_kit::outbox::CompressOutboxWithLz4),
            Box::new(m20261207_000001_add_instalment_ledger_term::Migration),
            Box::new(tavana_kit::outbox::NarrowOutboxIndexes {
                purges_delivered: false,
            }),
            Box::new(tavana_kit::outbox::OutboxIdsWithoutSequence),
            // Schedules stored by their purchase's id on SQLite: a page less per purchase.
            Box::new(tavana_kit::db::StoreSqliteTableByKey {
                name: "m20261207_230200_purchase_schedules_without_rowid",
                table: "purchase_schedule",
            }),
        ]
    }
}
