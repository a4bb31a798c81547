//! R16 with R29: the monthly room an employee's re-aged arrears keep held until the 8th of
//! the last period they were moved to, paid or not (settlement counts it).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum EmployeeArrears {
    Table,
    HeldMonthly,
    HeldUntilPeriod,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            big_integer(EmployeeArrears::HeldMonthly).default(0),
            string_len(EmployeeArrears::HeldUntilPeriod, 7).default(""),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(EmployeeArrears::Table)
                        .add_column(column.to_owned())
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            EmployeeArrears::HeldMonthly,
            EmployeeArrears::HeldUntilPeriod,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(EmployeeArrears::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
