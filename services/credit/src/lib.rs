//! The credit service: facilities, holds, purchases, refunds and cards (R12, R14-R21).

pub mod domain;
pub mod store;
