//! Arrears (R29): each employee's overdue amount as settlement last counted it, and what a
//! facility carries for settlement's overdue follow-up (its guarantor and region).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Facility {
    Table,
    GuarantorEmployeeId,
    RegionCode,
}

#[derive(DeriveIden)]
enum EmployeeArrears {
    Table,
    EmployeeId,
    OverdueAmount,
    Version,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            string_len(Facility::GuarantorEmployeeId, 64).default(""),
            string_len(Facility::RegionCode, 64).default(""),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Facility::Table)
                        .add_column(column.to_owned())
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(EmployeeArrears::Table)
                    .if_not_exists()
                    .col(string_len(EmployeeArrears::EmployeeId, 64).primary_key())
                    .col(big_integer(EmployeeArrears::OverdueAmount))
                    .col(big_integer(EmployeeArrears::Version))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(EmployeeArrears::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await
    }
}
