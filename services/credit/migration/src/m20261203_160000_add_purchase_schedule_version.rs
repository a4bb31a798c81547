//! A purchase's schedule version and whether a remittance has settled part of it (R20).
//!
//! `schedule_version` is 1 for the purchase and grows by one per refund; every message
//! about the schedule carries it, and settlement applies a version only over an older one.
//! Existing purchases get `1 + their refunds`. `partly_settled_at` is set when settlement
//! tells credit that a remittance settled one of the purchase's instalments: from then on
//! the purchase is refunded no more.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Purchase {
    Table,
    ScheduleVersion,
    PartlySettledAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Purchase::Table)
                    .add_column(
                        ColumnDef::new(Purchase::ScheduleVersion)
                            .integer()
                            .not_null()
                            .default(1),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Purchase::Table)
                    .add_column(
                        ColumnDef::new(Purchase::PartlySettledAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .get_connection()
            .execute_unprepared(
                "UPDATE purchase SET schedule_version = 1 + \
                 (SELECT COUNT(*) FROM refund WHERE refund.purchase_id = purchase.id)",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [Purchase::PartlySettledAt, Purchase::ScheduleVersion] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Purchase::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
