//! Integration tests of the identity service over gRPC, on SQLite or PostgreSQL
//! (`TAVANA_TEST_DB`) and the in-process store or Redis (`TAVANA_TEST_REDIS_URL`).

mod helpers;
mod hr;
mod login;
mod organizations;
mod sessions;
mod sms;
