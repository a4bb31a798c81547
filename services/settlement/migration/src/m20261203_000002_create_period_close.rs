//! Arrears (R29) and the unmatched-lines review queue (R23).
//!
//! - `instalment.due_period`: the period an instalment was first due in, set when a period
//!   close re-ages it (null while it was never moved).
//! - `purchase_schedule`: the facility's monthly credit `M` (bounds re-aging), the
//!   guarantor told by SMS and the buyer's region (the regional overdue list).
//! - `period_close`: one row per closed organization period, with its first result.
//! - `employee_arrears`: each employee's overdue amount and the version credit is told.
//! - `unmatched_line`: its place in the review queue and its resolution.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Instalment {
    Table,
    DuePeriod,
    State,
    EmployeeId,
}

#[derive(DeriveIden)]
enum PurchaseSchedule {
    Table,
    MonthlyCredit,
    GuarantorEmployeeId,
    RegionCode,
}

#[derive(DeriveIden)]
enum PeriodClose {
    Table,
    OrganizationId,
    Period,
    OverdueInstalments,
    OverdueAmount,
    ClosedBy,
    ClosedAt,
}

#[derive(DeriveIden)]
enum EmployeeArrears {
    Table,
    EmployeeId,
    OverdueAmount,
    Version,
}

#[derive(DeriveIden)]
enum UnmatchedLine {
    Table,
    Status,
    Resolution,
    ResolvedNationalId,
    ResolvedPeriod,
    Note,
    SettledInstalments,
    SettledAmount,
    ResolvedBy,
    ResolvedAt,
}

async fn add_column(
    manager: &SchemaManager<'_>,
    table: impl IntoIden,
    column: &ColumnDef,
) -> Result<(), DbErr> {
    manager
        .alter_table(
            Table::alter()
                .table(table)
                .add_column(column.to_owned())
                .to_owned(),
        )
        .await
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        add_column(
            manager,
            Instalment::Table,
            &string_len_null(Instalment::DuePeriod, 7),
        )
        .await?;
        // The overdue lists and an employee's arrears read the (few) overdue instalments.
        manager
            .create_index(
                Index::create()
                    .name("ix_instalment_state_employee")
                    .table(Instalment::Table)
                    .col(Instalment::State)
                    .col(Instalment::EmployeeId)
                    .to_owned(),
            )
            .await?;
        add_column(
            manager,
            PurchaseSchedule::Table,
            big_integer(PurchaseSchedule::MonthlyCredit).default(0),
        )
        .await?;
        add_column(
            manager,
            PurchaseSchedule::Table,
            string_len(PurchaseSchedule::GuarantorEmployeeId, 64).default(""),
        )
        .await?;
        add_column(
            manager,
            PurchaseSchedule::Table,
            string_len(PurchaseSchedule::RegionCode, 64).default(""),
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(PeriodClose::Table)
                    .if_not_exists()
                    .col(string_len(PeriodClose::OrganizationId, 64))
                    .col(string_len(PeriodClose::Period, 7))
                    .col(big_integer(PeriodClose::OverdueInstalments))
                    .col(big_integer(PeriodClose::OverdueAmount))
                    .col(string_len(PeriodClose::ClosedBy, 64))
                    .col(timestamp_with_time_zone(PeriodClose::ClosedAt))
                    .primary_key(
                        Index::create()
                            .col(PeriodClose::OrganizationId)
                            .col(PeriodClose::Period),
                    )
                    .to_owned(),
            )
            .await?;
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
            .await?;

        add_column(
            manager,
            UnmatchedLine::Table,
            string_len(UnmatchedLine::Status, 16).default("open"),
        )
        .await?;
        for column in [
            string_len_null(UnmatchedLine::Resolution, 16),
            string_len_null(UnmatchedLine::ResolvedNationalId, 10),
            string_len_null(UnmatchedLine::ResolvedPeriod, 7),
            text_null(UnmatchedLine::Note),
            string_len_null(UnmatchedLine::ResolvedBy, 64),
            timestamp_with_time_zone_null(UnmatchedLine::ResolvedAt),
        ] {
            add_column(manager, UnmatchedLine::Table, &column).await?;
        }
        add_column(
            manager,
            UnmatchedLine::Table,
            big_integer(UnmatchedLine::SettledInstalments).default(0),
        )
        .await?;
        add_column(
            manager,
            UnmatchedLine::Table,
            big_integer(UnmatchedLine::SettledAmount).default(0),
        )
        .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_unmatched_line_status")
                    .table(UnmatchedLine::Table)
                    .col(UnmatchedLine::Status)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            PeriodClose::Table.into_iden(),
            EmployeeArrears::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
