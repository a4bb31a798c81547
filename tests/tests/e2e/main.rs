//! End-to-end tests: the whole suite in one process, driven through the
//! gateway's HTTP API as a client would.

// The workspace lints hold outside tests (STYLE.md): test code may leave helpers
// undocumented and convert small counts with `as`.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap
)]

mod arrears;
mod credit;
mod gateway;
mod guarantee;
mod identity;
mod merchants;
mod money;
mod operations;
mod settlement;
mod topology;
mod trust;
