//! Value sets and patterns of the OpenAPI document: what the gateway accepts, stated
//! so that a client (and schemathesis, `.ci/schemathesis`) can tell a valid request
//! from an invalid one. The handlers keep reading plain strings; these types only
//! describe them (`#[schema(value_type = ...)]`).
//!
//! What no schema can state is left to the answer: a national ID's check digit (R2), a
//! card number's Luhn digit, an opaque page token; each route documents the 400 it
//! answers for them.

use utoipa::ToSchema;

/// A staff role that can be granted or revoked (R6).
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum GrantableRole {
    /// `region_admin`: imports and updates the employees of one region (R1); takes a region code.
    RegionAdmin,
    /// `region_finance`: the finance step on requests of one region (R10, R12); takes a region code.
    RegionFinance,
    /// `region_welfare_manager`: proposes merchants of one region (R26); takes a region code.
    RegionWelfareManager,
    /// `support`: national; mobile changes (R5), remittances (R23), period close (R29), audit (R32).
    Support,
    /// `contracts`: national; organization contracts and merchant decisions (R26).
    Contracts,
}

/// `credit` or `instalment` (R14, R15).
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum PurchaseKind {
    /// `credit`: one deduction, from the next month's salary (R15, R17).
    Credit,
    /// `instalment`: `months` monthly deductions, 1 <= months <= the facility's maximum (R15).
    Instalment,
}
