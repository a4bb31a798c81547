//! Instalments found without an index that names their state, so that settling one writes
//! no index entry.
//!
//! A remittance settles every instalment it pays (R23): `state`, `settled_at` and
//! `remittance_id` change, nothing else. While an index names one of those columns, each
//! settled row is a new entry in every index of the table (PostgreSQL) or in each index
//! naming the state (SQLite). With none naming them, PostgreSQL updates the row in place
//! on its page (a HOT update) when the page has room, and SQLite touches no index. The
//! readers that selected by state now select by the other columns of their condition and
//! read the state from the row:
//!
//! - remittance matching (R23) reads an organization's period by national ID, as the
//!   deduction list does (`ix_instalment_org_period_national_id`); the employees an
//!   organization knows, and what they owe after a period (R29), by national ID
//!   (`ix_instalment_org_national_id_period`, replacing the index led by the state);
//! - a purchase's instalments, its completion (R18) and reconciliation (R31) by purchase,
//!   in instalment order (`ix_instalment_purchase_seq`, replacing `(purchase_id, state)`);
//! - the overdue instalments (R29) among those a period close re-aged, the only rows with a
//!   `due_period`, by employee (`ix_instalment_reaged_employee`, partial, replacing
//!   `(state, employee_id)`); the overdue lists read all of them, as they read every
//!   overdue instalment before. It is the only index on `due_period`: during a period
//!   close the planner's statistics still count no re-aged row, and a second partial
//!   index looked empty enough to be scanned whole for each employee's arrears instead of
//!   probed (2.2 s against 3 ms per 1,000 employees).
//!
//! On PostgreSQL the instalments' pages are also filled to half (`fillfactor`): a remittance
//! settles all of an organization's period in one transaction, which may be every row of a
//! page, and each new version must find room on its page to be written in place. The
//! schedules, which a remittance marks completed the same way, get the same room.
//! Existing pages keep their fill until rewritten; new rows get the room.

use sea_orm_migration::prelude::*;
use tavana_kit::db::{set_page_fill, swap_index};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum Instalment {
    Table,
    OrganizationId,
    NationalId,
    EmployeeId,
    PurchaseId,
    State,
    Period,
    Seq,
    DuePeriod,
}

/// Percent of a PostgreSQL page that inserts fill, leaving the rest for settled versions.
const FILLFACTOR: u32 = 50;
/// Percent the tables had (PostgreSQL's default).
const FULL: u32 = 100;

/// An index on the instalments.
fn index(name: &str, columns: &[Instalment]) -> IndexCreateStatement {
    let mut index = Index::create();
    index.name(name).table(Instalment::Table);
    for column in columns {
        index.col(*column);
    }
    index
}

/// An index this migration makes and the one, naming the state, that it replaces.
struct Replacement {
    index: IndexCreateStatement,
    name: &'static str,
    replaced: IndexCreateStatement,
    replaced_name: &'static str,
}

fn replacements() -> [Replacement; 3] {
    use Instalment::*;
    let replacement =
        |name, columns: &[Instalment], replaced_name, replaced: &[Instalment]| Replacement {
            index: index(name, columns),
            name,
            replaced: index(replaced_name, replaced),
            replaced_name,
        };
    let mut reaged = replacement(
        "ix_instalment_reaged_employee",
        &[EmployeeId],
        "ix_instalment_state_employee",
        &[State, EmployeeId],
    );
    reaged.index.and_where(Expr::col(DuePeriod).is_not_null());
    [
        replacement(
            "ix_instalment_org_national_id_period",
            &[OrganizationId, NationalId, Period],
            "ix_instalment_org_state_national_id_period",
            &[OrganizationId, State, NationalId, Period, Seq],
        ),
        replacement(
            "ix_instalment_purchase_seq",
            &[PurchaseId, Seq],
            "ix_instalment_purchase",
            &[PurchaseId, State],
        ),
        reaged,
    ]
}

/// Sets the fill of the instalments' and schedules' pages, on PostgreSQL.
async fn fill(manager: &SchemaManager<'_>, percent: u32) -> Result<(), DbErr> {
    for table in ["instalment", "purchase_schedule"] {
        set_page_fill(manager, table, percent).await?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for Replacement {
            index,
            replaced_name,
            ..
        } in replacements()
        {
            swap_index(manager, Instalment::Table, index, replaced_name).await?;
        }
        fill(manager, FILLFACTOR).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        fill(manager, FULL).await?;
        for Replacement { replaced, name, .. } in replacements() {
            swap_index(manager, Instalment::Table, replaced, name).await?;
        }
        Ok(())
    }
}
