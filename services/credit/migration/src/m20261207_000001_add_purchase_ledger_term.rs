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
use tavana_kit::ledger_digest::{add_term_column, drop_term_column};

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
        add_term_column(manager, "purchase").await?;
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
        drop_term_column(manager, "purchase").await
    }
}
