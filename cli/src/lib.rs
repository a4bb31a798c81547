//! The `tavana` command line: `tavana up` runs the five services and the
//! gateway in one process; `tavana admin …` bootstraps organizations,
//! employees and staff roles, shows and retries outbox messages, and compares credit with
//! settlement (R31).

pub mod admin;
pub mod demo;
pub mod outbox;
pub mod reconcile;
pub mod suite;
