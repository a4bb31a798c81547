//! The credit rules as pure types and functions: no I/O.
//!
//! - R12 facilities: [`facility`]
//! - R14, R15, R20 purchases, schedules and refunds: [`purchase`]
//! - R16, R17, R18 holds and budgets: [`budget`]
//! - R19 idempotency: [`idempotency`]
//! - R21 cards: [`card`]

pub mod budget;
pub mod card;
pub mod error;
pub mod facility;
pub mod idempotency;
pub mod purchase;

pub use error::CreditError;

#[cfg(test)]
mod model_tests;
