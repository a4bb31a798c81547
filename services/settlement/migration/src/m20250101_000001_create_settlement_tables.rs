//! Instalments, purchases' schedules, refunds, remittances and their unmatched lines,
//! the per-organization serialisation row, and the outbox.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Instalment {
    Table,
    Id,
    PurchaseId,
    EmployeeId,
    NationalId,
    FullName,
    OrganizationId,
    MerchantId,
    MerchantName,
    Seq,
    Period,
    Amount,
    State,
    SettledAt,
    RemittanceId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum PurchaseSchedule {
    Table,
    PurchaseId,
    EmployeeId,
    OrganizationId,
    Version,
    CompletedAt,
    CreatedAt,
}

// The column is named `refund_id` after credit's id, as the schema has it.
#[allow(clippy::enum_variant_names)]
#[derive(DeriveIden)]
enum Refund {
    Table,
    RefundId,
    PurchaseId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum OrganizationLedger {
    Table,
    OrganizationId,
    Version,
}

#[derive(DeriveIden)]
enum Remittance {
    Table,
    Id,
    OrganizationId,
    Period,
    BankReference,
    LineCount,
    LinesAmount,
    SettledInstalments,
    SettledAmount,
    RecordedBy,
    RecordedAt,
}

#[derive(DeriveIden)]
enum UnmatchedLine {
    Table,
    RemittanceId,
    Line,
    NationalId,
    Amount,
    Code,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Instalment::Table)
                    .if_not_exists()
                    .col(string_len(Instalment::Id, 36).primary_key())
                    .col(string_len(Instalment::PurchaseId, 64))
                    .col(string_len(Instalment::EmployeeId, 64))
                    .col(string_len(Instalment::NationalId, 10))
                    .col(string(Instalment::FullName))
                    .col(string_len(Instalment::OrganizationId, 64))
                    .col(string_len(Instalment::MerchantId, 64))
                    .col(string(Instalment::MerchantName))
                    .col(integer(Instalment::Seq))
                    .col(string_len(Instalment::Period, 7))
                    .col(big_integer(Instalment::Amount))
                    .col(string_len(Instalment::State, 16))
                    .col(timestamp_with_time_zone_null(Instalment::SettledAt))
                    .col(string_len_null(Instalment::RemittanceId, 36))
                    .col(timestamp_with_time_zone(Instalment::CreatedAt))
                    .to_owned(),
            )
            .await?;
        // The deduction list (R22): an organization's period, employee by employee.
        manager
            .create_index(
                Index::create()
                    .name("ix_instalment_org_period_national_id")
                    .table(Instalment::Table)
                    .col(Instalment::OrganizationId)
                    .col(Instalment::Period)
                    .col(Instalment::NationalId)
                    .to_owned(),
            )
            .await?;
        // Remittance matching (R23): an employee's instalments in one organization, oldest first.
        manager
            .create_index(
                Index::create()
                    .name("ix_instalment_org_national_id_state_period")
                    .table(Instalment::Table)
                    .col(Instalment::OrganizationId)
                    .col(Instalment::NationalId)
                    .col(Instalment::State)
                    .col(Instalment::Period)
                    .col(Instalment::Seq)
                    .to_owned(),
            )
            .await?;
        // An employee's own view (R24).
        manager
            .create_index(
                Index::create()
                    .name("ix_instalment_employee_period")
                    .table(Instalment::Table)
                    .col(Instalment::EmployeeId)
                    .col(Instalment::Period)
                    .col(Instalment::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_instalment_purchase")
                    .table(Instalment::Table)
                    .col(Instalment::PurchaseId)
                    .col(Instalment::State)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(PurchaseSchedule::Table)
                    .if_not_exists()
                    .col(string_len(PurchaseSchedule::PurchaseId, 64).primary_key())
                    .col(string_len(PurchaseSchedule::EmployeeId, 64))
                    .col(string_len(PurchaseSchedule::OrganizationId, 64))
                    .col(big_integer(PurchaseSchedule::Version).default(0))
                    .col(timestamp_with_time_zone_null(PurchaseSchedule::CompletedAt))
                    .col(timestamp_with_time_zone(PurchaseSchedule::CreatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Refund::Table)
                    .if_not_exists()
                    .col(string_len(Refund::RefundId, 64).primary_key())
                    .col(string_len(Refund::PurchaseId, 64))
                    .col(timestamp_with_time_zone(Refund::CreatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(OrganizationLedger::Table)
                    .if_not_exists()
                    .col(string_len(OrganizationLedger::OrganizationId, 64).primary_key())
                    .col(big_integer(OrganizationLedger::Version).default(0))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Remittance::Table)
                    .if_not_exists()
                    .col(string_len(Remittance::Id, 36).primary_key())
                    .col(string_len(Remittance::OrganizationId, 64))
                    .col(string_len(Remittance::Period, 7))
                    .col(string_len(Remittance::BankReference, 128))
                    .col(big_integer(Remittance::LineCount))
                    .col(big_integer(Remittance::LinesAmount))
                    .col(big_integer(Remittance::SettledInstalments))
                    .col(big_integer(Remittance::SettledAmount))
                    .col(string_len(Remittance::RecordedBy, 64))
                    .col(timestamp_with_time_zone(Remittance::RecordedAt))
                    .to_owned(),
            )
            .await?;
        // R23: one bank reference settles once per organization, even under concurrency.
        manager
            .create_index(
                Index::create()
                    .name("ux_remittance_org_bank_reference")
                    .table(Remittance::Table)
                    .col(Remittance::OrganizationId)
                    .col(Remittance::BankReference)
                    .unique()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(UnmatchedLine::Table)
                    .if_not_exists()
                    .col(string_len(UnmatchedLine::RemittanceId, 36))
                    .col(integer(UnmatchedLine::Line))
                    .col(string_len(UnmatchedLine::NationalId, 64))
                    .col(big_integer(UnmatchedLine::Amount))
                    .col(string_len(UnmatchedLine::Code, 64))
                    .primary_key(
                        Index::create()
                            .col(UnmatchedLine::RemittanceId)
                            .col(UnmatchedLine::Line),
                    )
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            UnmatchedLine::Table.into_iden(),
            Remittance::Table.into_iden(),
            OrganizationLedger::Table.into_iden(),
            Refund::Table.into_iden(),
            PurchaseSchedule::Table.into_iden(),
            Instalment::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
