//! The settlement rules as pure types and functions: no I/O, no SeaORM, no tonic.
//!
//! - R22, the deduction list: [`deduction`].
//! - R23, remittances and their matching: [`remittance`].
//! - R24, the employee's view of instalments: [`instalment::StateFilter`].
//! - R20, schedules and refunds: [`instalment::parse_schedule`].

pub mod deduction;
pub mod instalment;
pub mod remittance;
