//! Credit requests, their status history, the per-applicant and per-guarantor lock rows,
//! and the outbox.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;
use tavana_kit::outbox;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum CreditRequest {
    Table,
    Id,
    ApplicantEmployeeId,
    ApplicantNationalId,
    ApplicantFullName,
    ApplicantOrganizationId,
    RegionCode,
    GuarantorEmployeeId,
    GuarantorNationalId,
    GuarantorFullName,
    MonthlyCredit,
    InstalmentMonths,
    Status,
    Released,
    CreatedAt,
    CreatedMicros,
    ApprovedAt,
    ActivatesAt,
    ReleasedAt,
    Version,
}

#[derive(DeriveIden)]
enum StatusChange {
    Table,
    Id,
    RequestId,
    Status,
    At,
    ByRole,
    Reason,
    MessageFa,
    MessageEn,
}

/// One row per applicant, written first in a filing transaction so that two filings of
/// the same applicant run one after the other (R9: one open request).
#[derive(DeriveIden)]
enum ApplicantLock {
    Table,
    EmployeeId,
    Version,
}

/// One row per guarantor, written first in a filing transaction so that two filings
/// naming the same guarantor run one after the other (S4: at most 3 guarantees).
#[derive(DeriveIden)]
enum GuarantorLock {
    Table,
    NationalId,
    Version,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(CreditRequest::Table)
                    .if_not_exists()
                    .col(string_len(CreditRequest::Id, 36).primary_key())
                    .col(string(CreditRequest::ApplicantEmployeeId))
                    .col(string_len(CreditRequest::ApplicantNationalId, 10))
                    .col(string(CreditRequest::ApplicantFullName))
                    .col(string(CreditRequest::ApplicantOrganizationId))
                    .col(string(CreditRequest::RegionCode))
                    .col(string(CreditRequest::GuarantorEmployeeId))
                    .col(string_len(CreditRequest::GuarantorNationalId, 10))
                    .col(string(CreditRequest::GuarantorFullName))
                    .col(big_integer(CreditRequest::MonthlyCredit))
                    .col(integer(CreditRequest::InstalmentMonths))
                    .col(string_len(CreditRequest::Status, 32))
                    .col(boolean(CreditRequest::Released).default(false))
                    .col(timestamp_with_time_zone(CreditRequest::CreatedAt))
                    .col(big_integer(CreditRequest::CreatedMicros))
                    .col(timestamp_with_time_zone_null(CreditRequest::ApprovedAt))
                    .col(timestamp_with_time_zone_null(CreditRequest::ActivatesAt))
                    .col(timestamp_with_time_zone_null(CreditRequest::ReleasedAt))
                    .col(big_integer(CreditRequest::Version).default(0))
                    .to_owned(),
            )
            .await?;
        for (name, columns) in [
            (
                "idx_credit_request_applicant",
                vec![
                    CreditRequest::ApplicantEmployeeId,
                    CreditRequest::CreatedMicros,
                ],
            ),
            (
                "idx_credit_request_guarantor",
                vec![
                    CreditRequest::GuarantorNationalId,
                    CreditRequest::CreatedMicros,
                ],
            ),
            (
                "idx_credit_request_region",
                vec![CreditRequest::RegionCode, CreditRequest::CreatedMicros],
            ),
        ] {
            let mut index = Index::create();
            index.name(name).table(CreditRequest::Table).if_not_exists();
            for column in columns {
                index.col(column);
            }
            manager.create_index(index.to_owned()).await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(StatusChange::Table)
                    .if_not_exists()
                    .col(big_pk_auto(StatusChange::Id))
                    .col(string_len(StatusChange::RequestId, 36))
                    .col(string_len(StatusChange::Status, 32))
                    .col(timestamp_with_time_zone(StatusChange::At))
                    .col(string_len(StatusChange::ByRole, 32))
                    .col(text_null(StatusChange::Reason))
                    .col(text(StatusChange::MessageFa))
                    .col(text(StatusChange::MessageEn))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_status_change_request")
                            .from(StatusChange::Table, StatusChange::RequestId)
                            .to(CreditRequest::Table, CreditRequest::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_status_change_request")
                    .table(StatusChange::Table)
                    .col(StatusChange::RequestId)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ApplicantLock::Table)
                    .if_not_exists()
                    .col(string(ApplicantLock::EmployeeId).primary_key())
                    .col(big_integer(ApplicantLock::Version).default(0))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(GuarantorLock::Table)
                    .if_not_exists()
                    .col(string_len(GuarantorLock::NationalId, 10).primary_key())
                    .col(big_integer(GuarantorLock::Version).default(0))
                    .to_owned(),
            )
            .await?;

        manager.create_table(outbox::create_outbox_table()).await?;
        for index in outbox::create_outbox_indexes() {
            manager.create_index(index).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            outbox::Outbox::Table.into_iden(),
            GuarantorLock::Table.into_iden(),
            ApplicantLock::Table.into_iden(),
            StatusChange::Table.into_iden(),
            CreditRequest::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
