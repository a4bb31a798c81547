//! Database migrations of the credit service.

pub use sea_orm_migration::prelude::*;

mod m20250101_000001_create_credit_tables;
mod m20261124_000001_index_purchase_holds;
mod m20261203_000001_add_employee_arrears;
mod m20261203_160000_add_purchase_schedule_version;
mod m20261203_170000_create_audit_event;
mod m20261203_170000_extend_outbox;
mod m20261203_230000_add_arrears_hold;
mod m20261204_000001_index_pending_outbox;
mod m20261205_000001_create_facility_held;
mod m20261205_120000_index_idempotency_age;
mod m20261206_000001_add_purchase_national_id;
mod m20261206_120000_fill_purchase_pages;
mod m20261207_000001_add_purchase_ledger_term;

pub use m20261205_000001_create_facility_held::UNTIL_EVENT;

/// The migrations of the credit service, oldest first.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20250101_000001_create_credit_tables::Migration),
            Box::new(m20261124_000001_index_purchase_holds::Migration),
            Box::new(m20261203_000001_add_employee_arrears::Migration),
            Box::new(m20261203_160000_add_purchase_schedule_version::Migration),
            Box::new(m20261203_170000_extend_outbox::Migration),
            Box::new(m20261203_170000_create_audit_event::Migration),
            Box::new(m20261203_230000_add_arrears_hold::Migration),
            Box::new(m20261204_000001_index_pending_outbox::Migration),
            Box::new(m20261205_000001_create_facility_held::Migration),
            Box::new(m20261205_120000_index_idempotency_age::Migration),
            Box::new(m20261206_000001_add_purchase_national_id::Migration),
            Box::new(m20261206_120000_fill_purchase_pages::Migration),
            Box::new(tavana_kit::outbox::CompressOutboxWithLz4),
            Box::new(m20261207_000001_add_purchase_ledger_term::Migration),
            Box::new(tavana_kit::outbox::NarrowOutboxIndexes {
                purges_delivered: false,
            }),
            Box::new(tavana_kit::outbox::OutboxIdsWithoutSequence),
            // R19's records stored by caller and key on SQLite: a page less per purchase.
            Box::new(tavana_kit::db::StoreSqliteTableByKey {
                name: "m20261207_230100_idempotency_records_without_rowid",
                table: "idempotency_record",
            }),
        ]
    }
}
