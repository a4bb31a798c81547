//! An index that reads an organization's unsettled instalments in national ID order, for
//! remittance matching (R23).
//!
//! A remittance reads, chunk by chunk, the unsettled instalments due up to its period of a
//! range of national IDs (or of a list of them, for a small remittance). With the state
//! before the national ID, that is one contiguous index range: the employees' settled
//! history is never visited, and the plan needs no planner statistics (all columns of the
//! condition are leading columns of the index). The index replaces
//! `ix_instalment_org_national_id_state_period` (organization, national ID, state, period,
//! seq), whose only reader it was; the remittance's check for employees never seen in the
//! organization names every state and so uses this one too.

use sea_orm_migration::prelude::*;
use tavana_kit::db::swap_index;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Instalment {
    Table,
    OrganizationId,
    NationalId,
    State,
    Period,
    Seq,
}

const OLD_INDEX: &str = "ix_instalment_org_national_id_state_period";
const NEW_INDEX: &str = "ix_instalment_org_state_national_id_period";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let state_first = Index::create()
            .name(NEW_INDEX)
            .table(Instalment::Table)
            .col(Instalment::OrganizationId)
            .col(Instalment::State)
            .col(Instalment::NationalId)
            .col(Instalment::Period)
            .col(Instalment::Seq)
            .to_owned();
        swap_index(manager, Instalment::Table, state_first, OLD_INDEX).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let national_id_first = Index::create()
            .name(OLD_INDEX)
            .table(Instalment::Table)
            .col(Instalment::OrganizationId)
            .col(Instalment::NationalId)
            .col(Instalment::State)
            .col(Instalment::Period)
            .col(Instalment::Seq)
            .to_owned();
        swap_index(manager, Instalment::Table, national_id_first, NEW_INDEX).await
    }
}
