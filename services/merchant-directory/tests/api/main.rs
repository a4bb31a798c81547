//! Integration tests of the merchant directory over gRPC, on SQLite or PostgreSQL
//! (`TAVANA_TEST_DB`), with Redis when `TAVANA_TEST_REDIS_URL` is set.

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

mod cache;
mod helpers;
mod keys;
mod name_index;
mod proposals;
mod search;
mod trust;
