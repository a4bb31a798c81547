//! Indexes that keep a purchase and a balance read off a facility's past purchases and a
//! caller's past idempotency records.
//!
//! `Store::held_room` sums the unreleased holds of one facility per release in two range
//! scans: `hold_release_at > now`, and `hold_release_at IS NULL`. They touch only the
//! holds that may still be in effect: a credit purchase's `hold_released_at` stays NULL
//! after the clock released it (R17), so the facility's older purchases lie outside both
//! ranges. Every column read is in the index: the scans are index-only on SQLite, and on
//! PostgreSQL wherever vacuum has marked the pages all-visible. The index replaces
//! `idx_purchase_facility` (facility, `hold_released_at`), which is a prefix of it.
//!
//! Every purchase also deletes its caller's idempotency records older than twice
//! `KEEP_HOURS` (R19). The primary key (caller, key) found the caller's records but not
//! their age, so each purchase visited every record the caller made in the last two days;
//! `idx_idempotency_caller_created` is a range scan of just the old ones.

use sea_orm_migration::prelude::*;
use tavana_kit::db::swap_index;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Purchase {
    Table,
    FacilityId,
    HoldMonthly,
    HoldTotal,
    HoldReleaseAt,
    HoldWaitsForContract,
    HoldReleasedAt,
}

#[derive(DeriveIden)]
enum IdempotencyRecord {
    Table,
    Caller,
    CreatedAt,
}

const OLD_INDEX: &str = "idx_purchase_facility";
const NEW_INDEX: &str = "idx_purchase_facility_holds";
const IDEMPOTENCY_INDEX: &str = "idx_idempotency_caller_created";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let holds = Index::create()
            .name(NEW_INDEX)
            .table(Purchase::Table)
            .col(Purchase::FacilityId)
            .col(Purchase::HoldReleasedAt)
            .col(Purchase::HoldReleaseAt)
            .col(Purchase::HoldWaitsForContract)
            .col(Purchase::HoldMonthly)
            .col(Purchase::HoldTotal)
            .to_owned();
        swap_index(manager, Purchase::Table, holds, OLD_INDEX).await?;
        manager
            .create_index(
                Index::create()
                    .name(IDEMPOTENCY_INDEX)
                    .table(IdempotencyRecord::Table)
                    .col(IdempotencyRecord::Caller)
                    .col(IdempotencyRecord::CreatedAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name(IDEMPOTENCY_INDEX)
                    .table(IdempotencyRecord::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await?;
        let facility = Index::create()
            .name(OLD_INDEX)
            .table(Purchase::Table)
            .col(Purchase::FacilityId)
            .col(Purchase::HoldReleasedAt)
            .to_owned();
        swap_index(manager, Purchase::Table, facility, NEW_INDEX).await
    }
}
