//! Database migrations of the identity service.

pub use sea_orm_migration::prelude::*;

mod m20250101_000001_create_identity_tables;
mod m20261203_170000_create_audit_event;
mod m20261203_170000_extend_outbox;
mod m20261204_000001_index_pending_outbox;

/// The migrations of the identity service, oldest first.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20250101_000001_create_identity_tables::Migration),
            Box::new(m20261203_170000_extend_outbox::Migration),
            Box::new(m20261203_170000_create_audit_event::Migration),
            Box::new(m20261204_000001_index_pending_outbox::Migration),
            Box::new(tavana_kit::outbox::CompressOutboxWithLz4),
            Box::new(tavana_kit::outbox::NarrowOutboxIndexes {
                purges_delivered: true,
            }),
            Box::new(tavana_kit::outbox::OutboxIdsWithoutSequence),
        ]
    }
}
