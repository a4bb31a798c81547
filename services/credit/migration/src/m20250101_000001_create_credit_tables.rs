//! Facilities, cards, purchases with their holds and schedules, refunds, idempotency
//! records and the outbox.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;
use tavana_kit::outbox;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// A credit facility (R12). Its `version` is written first in every money transaction, so
/// that they run one after the other per facility.
#[derive(DeriveIden)]
enum Facility {
    Table,
    Id,
    CreditRequestId,
    EmployeeId,
    /// The employee id while the facility is not closed, NULL once closed: a unique index
    /// on it allows one open facility per employee (NULLs do not collide).
    OpenEmployeeId,
    NationalId,
    FullName,
    OrganizationId,
    MonthlyCredit,
    MaxInstalments,
    PurchasingPower,
    ActivatesAt,
    Suspended,
    ClosedAt,
    CreatedAt,
    Version,
}

/// A facility's card (R21).
#[derive(DeriveIden)]
enum Card {
    Table,
    FacilityId,
    EmployeeId,
    CustomerNumber,
    MaskedPan,
    PinHash,
    PinMustChange,
    FailedAttempts,
    Locked,
    UpdatedAt,
}

/// A purchase with its schedule (R15) and its holds in M and P (R16-R18).
#[allow(clippy::enum_variant_names)]
#[derive(DeriveIden)]
enum Purchase {
    Table,
    Id,
    FacilityId,
    EmployeeId,
    MerchantId,
    MerchantName,
    Kind,
    Amount,
    RefundedAmount,
    Months,
    PurchasePeriod,
    /// JSON array of `{seq, period, amount}`: what stays due.
    Schedule,
    CreatedAt,
    CreatedMicros,
    SettledAt,
    HoldMonthly,
    HoldTotal,
    /// A credit purchase's release instant (R17); NULL for instalment purchases.
    HoldReleaseAt,
    /// Settled while the organization's contract was not in force (R18).
    HoldWaitsForContract,
    /// Released before its time: refunded wholly (R20) or settled (R18).
    HoldReleasedAt,
}

/// A refund (R20).
#[derive(DeriveIden)]
enum Refund {
    Table,
    Id,
    PurchaseId,
    Amount,
    CreatedAt,
}

/// An idempotency record (R19): per caller and key, the request's hash and the answer.
#[derive(DeriveIden)]
enum IdempotencyRecord {
    Table,
    Caller,
    IdempotencyKey,
    RequestHash,
    Response,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Facility::Table)
                    .if_not_exists()
                    .col(string_len(Facility::Id, 36).primary_key())
                    .col(string_uniq(Facility::CreditRequestId))
                    .col(string(Facility::EmployeeId))
                    .col(string_null(Facility::OpenEmployeeId).unique_key())
                    .col(string_len(Facility::NationalId, 10))
                    .col(string(Facility::FullName))
                    .col(string(Facility::OrganizationId))
                    .col(big_integer(Facility::MonthlyCredit))
                    .col(integer(Facility::MaxInstalments))
                    .col(big_integer(Facility::PurchasingPower))
                    .col(timestamp_with_time_zone(Facility::ActivatesAt))
                    .col(boolean(Facility::Suspended).default(false))
                    .col(timestamp_with_time_zone_null(Facility::ClosedAt))
                    .col(timestamp_with_time_zone(Facility::CreatedAt))
                    .col(big_integer(Facility::Version).default(0))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_facility_employee")
                    .table(Facility::Table)
                    .col(Facility::EmployeeId)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Card::Table)
                    .if_not_exists()
                    .col(string_len(Card::FacilityId, 36).primary_key())
                    .col(string(Card::EmployeeId))
                    .col(string_len_uniq(Card::CustomerNumber, 16))
                    .col(string(Card::MaskedPan))
                    .col(text(Card::PinHash))
                    .col(boolean(Card::PinMustChange).default(true))
                    .col(integer(Card::FailedAttempts).default(0))
                    .col(boolean(Card::Locked).default(false))
                    .col(timestamp_with_time_zone(Card::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_card_facility")
                            .from(Card::Table, Card::FacilityId)
                            .to(Facility::Table, Facility::Id),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Purchase::Table)
                    .if_not_exists()
                    .col(string_len(Purchase::Id, 36).primary_key())
                    .col(string_len(Purchase::FacilityId, 36))
                    .col(string(Purchase::EmployeeId))
                    .col(string(Purchase::MerchantId))
                    .col(string(Purchase::MerchantName))
                    .col(string_len(Purchase::Kind, 16))
                    .col(big_integer(Purchase::Amount))
                    .col(big_integer(Purchase::RefundedAmount).default(0))
                    .col(integer(Purchase::Months))
                    .col(string_len(Purchase::PurchasePeriod, 7))
                    .col(text(Purchase::Schedule))
                    .col(timestamp_with_time_zone(Purchase::CreatedAt))
                    .col(big_integer(Purchase::CreatedMicros))
                    .col(timestamp_with_time_zone_null(Purchase::SettledAt))
                    .col(big_integer(Purchase::HoldMonthly))
                    .col(big_integer(Purchase::HoldTotal))
                    .col(timestamp_with_time_zone_null(Purchase::HoldReleaseAt))
                    .col(boolean(Purchase::HoldWaitsForContract).default(false))
                    .col(timestamp_with_time_zone_null(Purchase::HoldReleasedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_purchase_facility")
                            .from(Purchase::Table, Purchase::FacilityId)
                            .to(Facility::Table, Facility::Id),
                    )
                    .to_owned(),
            )
            .await?;
        for (name, columns) in [
            (
                "idx_purchase_facility",
                vec![Purchase::FacilityId, Purchase::HoldReleasedAt],
            ),
            (
                "idx_purchase_employee",
                vec![Purchase::EmployeeId, Purchase::CreatedMicros],
            ),
        ] {
            let mut index = Index::create();
            index.name(name).table(Purchase::Table).if_not_exists();
            for column in columns {
                index.col(column);
            }
            manager.create_index(index.to_owned()).await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(Refund::Table)
                    .if_not_exists()
                    .col(string_len(Refund::Id, 36).primary_key())
                    .col(string_len(Refund::PurchaseId, 36))
                    .col(big_integer(Refund::Amount))
                    .col(timestamp_with_time_zone(Refund::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_refund_purchase")
                            .from(Refund::Table, Refund::PurchaseId)
                            .to(Purchase::Table, Purchase::Id),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(IdempotencyRecord::Table)
                    .if_not_exists()
                    .col(string(IdempotencyRecord::Caller))
                    .col(string(IdempotencyRecord::IdempotencyKey))
                    .col(string_len(IdempotencyRecord::RequestHash, 64))
                    .col(blob(IdempotencyRecord::Response))
                    .col(timestamp_with_time_zone(IdempotencyRecord::CreatedAt))
                    .primary_key(
                        Index::create()
                            .col(IdempotencyRecord::Caller)
                            .col(IdempotencyRecord::IdempotencyKey),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_idempotency_created")
                    .table(IdempotencyRecord::Table)
                    .col(IdempotencyRecord::CreatedAt)
                    .if_not_exists()
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
            IdempotencyRecord::Table.into_iden(),
            Refund::Table.into_iden(),
            Purchase::Table.into_iden(),
            Card::Table.into_iden(),
            Facility::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
