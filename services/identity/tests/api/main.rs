//! Integration tests of the identity service over gRPC, on SQLite or PostgreSQL
//! (`TAVANA_TEST_DB`) and the in-process store or Redis (`TAVANA_TEST_REDIS_URL`).

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

mod duties;
mod helpers;
mod hr;
mod login;
mod organizations;
mod sessions;
mod sms;
mod trust;
