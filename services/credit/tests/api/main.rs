//! Integration tests of the credit service: the gRPC API against a real database (SQLite
//! by default, PostgreSQL with `TAVANA_TEST_DB=postgres`) and fake peers.

// A failed step fails the test: the helpers as well as the tests unwrap (clippy's
// allow-unwrap-in-tests covers only `#[test]` functions).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod arrears;
mod cards;
mod facilities;
mod helpers;
mod holds;
mod idempotency;
mod outbox;
mod property;
mod purchases;
mod refunds;
mod settled;
mod trust;
