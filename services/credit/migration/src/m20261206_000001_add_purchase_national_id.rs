//! The buyer's national ID on the purchase row (R31): credit's ledger pages the purchases in
//! id order for the reconciliation, and with the national ID on the row a page is one index
//! range of one table instead of a probe of the facility per purchase. A purchase writes its
//! facility's; existing purchases get it from their facility. A facility's national ID never
//! changes, so the two never disagree.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Purchase {
    Table,
    NationalId,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Purchase::Table)
                    .add_column(
                        ColumnDef::new(Purchase::NationalId)
                            .string()
                            .not_null()
                            .default(""),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .get_connection()
            .execute_unprepared(
                "UPDATE purchase SET national_id = \
                 (SELECT facility.national_id FROM facility WHERE facility.id = purchase.facility_id)",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Purchase::Table)
                    .drop_column(Purchase::NationalId)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }
}
