//! The settlement service: instalment schedules, deduction lists, remittances and their
//! reconciliation (R22-R24).

pub mod domain;
