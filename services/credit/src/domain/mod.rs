//! The credit rules as pure types and functions: no I/O.
//!
//! - R12 facilities: [`facility`]
//! - R14, R15, R20 purchases, schedules and refunds: [`purchase`]
//! - R16, R17, R18 holds and budgets: [`budget`]
//! - R19 idempotency: [`idempotency`]
//! - R21 cards: [`card`]
//! - R13, R14, R16, R20, R29, R30 decided inside a money transaction: [`rules`]

pub mod budget;
pub mod card;
pub mod facility;
pub mod idempotency;
pub mod purchase;
pub mod rules;

#[cfg(test)]
mod model_tests;
