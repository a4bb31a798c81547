//! R31's stored term of an instalment (`ledger_term`): its purchase, the period credit
//! scheduled it in and its amount reduced to one number (`tavana_kit::ledger_digest`),
//! written when the instalment is inserted, and 0 once it is cancelled (a cancelled
//! instalment holds nothing). An instalment's amount never changes, and a re-age (R29)
//! keeps the first period in `due_period`, so the term stays right for the row's life.
//! Empty (NULL) for the instalments written before this migration: a range with one is
//! digested from its rows, as before.
//!
//! The reconciliation sums a range of purchases' terms in the database, so the index it
//! reads them by, a purchase's instalments in order (`ix_instalment_purchase_seq`), also
//! holds the term: the sum is read from the index alone. Settling an instalment writes
//! neither column, so it stays an update in place (HOT); only a cancel, which is rare,
//! writes the term.

use sea_orm_migration::prelude::*;
use tavana_kit::db::swap_index;
use tavana_kit::ledger_digest::{add_term_column, drop_term_column};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum Instalment {
    Table,
    PurchaseId,
    Seq,
    LedgerTerm,
}

/// The index of a purchase's instalments in order, with the terms or without.
fn by_purchase(name: &str, with_terms: bool) -> IndexCreateStatement {
    let mut index = Index::create();
    index
        .name(name)
        .table(Instalment::Table)
        .col(Instalment::PurchaseId)
        .col(Instalment::Seq);
    if with_terms {
        index.col(Instalment::LedgerTerm);
    }
    index
}

const WITH_TERMS: &str = "ix_instalment_purchase_seq_term";
const WITHOUT: &str = "ix_instalment_purchase_seq";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        add_term_column(manager, "instalment").await?;
        swap_index(
            manager,
            Instalment::Table,
            by_purchase(WITH_TERMS, true),
            WITHOUT,
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        swap_index(
            manager,
            Instalment::Table,
            by_purchase(WITHOUT, false),
            WITH_TERMS,
        )
        .await?;
        drop_term_column(manager, "instalment").await
    }
}
