//! Database migrations of the merchant-directory service.

pub use sea_orm_migration::prelude::*;

mod m20250101_000001_create_merchants;
mod m20261124_000001_index_merchant_names;
mod m20261203_170000_create_audit_event;

/// The migrations of the merchant-directory service, oldest first.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20250101_000001_create_merchants::Migration),
            Box::new(m20261124_000001_index_merchant_names::Migration),
            Box::new(m20261203_170000_create_audit_event::Migration),
        ]
    }
}
