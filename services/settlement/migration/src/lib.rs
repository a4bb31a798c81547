//! Database migrations of the settlement service.

pub use sea_orm_migration::prelude::*;

mod m20250101_000001_create_settlement_tables;
mod m20250101_000002_create_outbox;

/// The settlement service's migrations, oldest first.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20250101_000001_create_settlement_tables::Migration),
            Box::new(m20250101_000002_create_outbox::Migration),
        ]
    }
}
