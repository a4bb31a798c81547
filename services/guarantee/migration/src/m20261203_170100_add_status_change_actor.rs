//! Request history records who acted, not only in which role (R11, R32).

use sea_orm_migration::prelude::*;

#[derive(DeriveIden)]
enum StatusChange {
    Table,
    ByEmployeeId,
    ByNationalId,
}

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one column at a time.
        for column in [StatusChange::ByEmployeeId, StatusChange::ByNationalId] {
            manager
                .alter_table(
                    Table::alter()
                        .table(StatusChange::Table)
                        .add_column(ColumnDef::new(column).string().null())
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [StatusChange::ByEmployeeId, StatusChange::ByNationalId] {
            manager
                .alter_table(
                    Table::alter()
                        .table(StatusChange::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
