//! The rules of credit requests and guarantees (R7-R13) as pure functions and types:
//! no I/O, no database, no gRPC.

pub mod access;
pub mod messages;
pub mod rules;
pub mod status;

pub use rules::{
    EmployeeProfile, FilingInput, GUARANTEE_LIMIT, RuleFailure, check_filing, check_guarantor,
};
pub use status::RequestStatus;
