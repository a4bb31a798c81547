//! The `tavana` command line: `tavana up` runs the five services and the
//! gateway in one process; `tavana admin …` bootstraps organizations,
//! employees and staff roles.

pub mod admin;
pub mod demo;
pub mod suite;
