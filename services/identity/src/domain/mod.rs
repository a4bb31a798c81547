//! The rules of identity as pure functions and types: HR data (R1, R2), login codes (R3),
//! access and refresh tokens, who may do what (R5, R6) and the SMS texts (R28).

pub mod access;
pub mod employee;
pub mod fields;
pub mod hr_csv;
pub mod login;
pub mod sms;
pub mod tokens;

pub use tavana_kit::jalali::tehran_today;
