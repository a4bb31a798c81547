//! The tables of the settlement database, as the migration creates them.
// The variants name the columns; the migration (`tavana-settlement-migration`) documents
// each of them, a second copy here would drift.
#![allow(missing_docs)]

use sea_orm::DeriveIden;

/// One instalment of a purchase.
#[derive(Clone, Copy, Debug, DeriveIden)]
pub enum Instalment {
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
    DuePeriod,
    LedgerTerm,
}

/// One recorded schedule, the idempotency record of `RecordSchedule`.
#[derive(Clone, Copy, Debug, DeriveIden)]
pub enum PurchaseSchedule {
    Table,
    PurchaseId,
    EmployeeId,
    OrganizationId,
    Version,
    CompletedAt,
    CreatedAt,
    MonthlyCredit,
    GuarantorEmployeeId,
    RegionCode,
}

/// One applied refund, the idempotency record of `CancelInstalments`.
// The column is named `refund_id` after credit's id, as the schema has it.
#[allow(clippy::enum_variant_names)]
#[derive(Clone, Copy, Debug, DeriveIden)]
pub enum Refund {
    Table,
    RefundId,
    PurchaseId,
    CreatedAt,
}

/// One row per organization, written first to serialise its money paths.
#[derive(Clone, Copy, Debug, DeriveIden)]
pub enum OrganizationLedger {
    Table,
    OrganizationId,
    Version,
}

/// One recorded remittance.
#[derive(Clone, Copy, Debug, DeriveIden)]
pub enum Remittance {
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

/// A remittance line kept for review.
#[derive(Clone, Copy, Debug, DeriveIden)]
pub enum UnmatchedLine {
    Table,
    RemittanceId,
    Line,
    NationalId,
    Amount,
    Code,
    Status,
    Resolution,
    ResolvedNationalId,
    ResolvedPeriod,
    Note,
    SettledInstalments,
    SettledAmount,
    ResolvedBy,
    ResolvedAt,
}

/// One closed organization period with its first result (R29).
#[derive(Clone, Copy, Debug, DeriveIden)]
pub enum PeriodClose {
    Table,
    OrganizationId,
    Period,
    OverdueInstalments,
    OverdueAmount,
    ClosedBy,
    ClosedAt,
}
