//! Database migrations of the guarantee service.

pub use sea_orm_migration::prelude::*;

mod m20250101_000001_create_credit_requests;
mod m20261203_170000_create_audit_event;
mod m20261203_170000_extend_outbox;
mod m20261203_170100_add_status_change_actor;
mod m20261204_000001_index_pending_outbox;

/// The migrations of the guarantee service, oldest first.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20250101_000001_create_credit_requests::Migration),
            Box::new(m20261203_170000_extend_outbox::Migration),
            Box::new(m20261203_170000_create_audit_event::Migration),
            Box::new(m20261203_170100_add_status_change_actor::Migration),
            Box::new(m20261204_000001_index_pending_outbox::Migration),
            Box::new(tavana_kit::outbox::CompressOutboxWithLz4),
            Box::new(tavana_kit::outbox::NarrowOutboxIndexes {
                purges_delivered: false,
            }),
            Box::new(tavana_kit::outbox::OutboxIdsWithoutSequence),
        ]
    }
}
