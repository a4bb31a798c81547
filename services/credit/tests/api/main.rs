//! Integration tests of the credit service: the gRPC API against a real database (SQLite
//! by default, PostgreSQL with `TAVANA_TEST_DB=postgres`) and fake peers.

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
