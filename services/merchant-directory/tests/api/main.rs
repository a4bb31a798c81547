//! Integration tests of the merchant directory over gRPC, on SQLite or PostgreSQL
//! (`TAVANA_TEST_DB`), with Redis when `TAVANA_TEST_REDIS_URL` is set.

mod cache;
mod helpers;
mod keys;
mod name_index;
mod proposals;
mod search;
