//! The settlement rules as pure types and functions: no I/O, no SeaORM, no tonic.
//!
//! - R22, the deduction list: [`deduction`].
//! - R23, remittances and their matching: [`remittance`], the bank's file: [`remittance_csv`].
//! - R24, the employee's view of instalments: [`instalment::StateFilter`].
//! - R20, schedules and refunds: [`instalment::parse_schedule`].
//! - R29, overdue instalments re-aged within `M`: [`arrears`].
//! - R31, credit and settlement agree: [`reconcile`].

pub mod arrears;
pub mod deduction;
pub mod instalment;
pub mod reconcile;
pub mod remittance;
pub mod remittance_csv;
