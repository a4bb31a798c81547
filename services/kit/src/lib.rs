//! Shared plumbing of the Tavana services: clock, money, identifiers, the Jalali calendar,
//! errors, caller identity, storage, the outbox relay, gRPC bootstrap, config and telemetry.

pub mod caller;
pub mod clock;
pub mod error;
pub mod ids;
pub mod jalali;
pub mod money;
pub mod db;
pub mod store;
pub mod testing;
pub mod shared;

pub use shared::Shared;
pub mod outbox;
