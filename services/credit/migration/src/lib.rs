//! Database migrations of the credit service.

pub use sea_orm_migration::prelude::*;

mod m20250101_000001_create_credit_tables;
mod m20261124_000001_index_purchase_holds;

/// The migrations of the credit service, oldest first.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20250101_000001_create_credit_tables::Migration),
            Box::new(m20261124_000001_index_purchase_holds::Migration),
        ]
    }
}
