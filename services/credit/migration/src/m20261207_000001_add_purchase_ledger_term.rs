//! R31's stored term of a purchase (`ledger_term`): its schedule reduced to one number
//! (`tavana_kit::ledger_digest`), written with the schedule by the purchase and by every
//! refund, so that the database sums a range's terms for the reconciliation and no row
//! leaves it. Empty (NULL) for a purchase whose schedule does not add up to the amount less
//! refunds and for the purchases written before this migration: a range with such a
//! purchase is digested from its rows, as before.
//!
//! The reconciliation reads the terms of a range of purchases in id order, so an index of
//! the purchases' ids holds the term too (`ix_purchase_id_term`): the sum is read from the
//! index alone. Settling a purchase writes neither column, so it stays an update in place
//! (HOT); a refund, which is rare, writes the term.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Purchase {
    Table,
    Id,
    LedgerTerm,
}

const BY_ID: &str = "ix_purchase_id_term";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Purchase::Table)
                    .add_column(ColumnDef::new(Purchase::LedgerTerm).big_integer().null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(BY_ID)
                    .table(Purchase::Table)
                    .col(Purchase::Id)
                    .col(Purchase::LedgerTerm)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(Index::drop().name(BY_ID).table(Purchase::Table).to_owned())
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Purchase::Table)
                    .drop_column(Purchase::LedgerTerm)
                    .to_owned(),
            )
            .await
    }
}
