//! Shared plumbing of the Tavana services: clock, money, identifiers, the Jalali calendar,
//! errors, caller identity, storage, the outbox relay, gRPC bootstrap, config and telemetry.

pub mod audit;
pub mod caller;
pub mod clock;
pub mod db;
pub mod error;
pub mod ids;
pub mod jalali;
pub mod jwt_keys;
pub mod ledger_digest;
pub mod money;
pub mod shared;
pub mod store;
pub mod testing;
pub mod trust;

pub use shared::Shared;
pub mod config;
pub mod grpc;
pub mod http;
pub mod metrics;
pub mod outbox;
pub mod paging;
pub mod telemetry;
pub mod upkeep;

pub use caller::{Caller, Role, RoleGrant};
pub use clock::{AdjustableClock, Clock, SecurityClock, SharedClock, SystemClock};
pub use error::{ErrorKind, Problem, Violation};
pub use ids::{Mobile, NationalId, OrganizationId, RegionCode};
pub use jalali::{JalaliDate, JalaliPeriod};
pub use money::Rial;
mod main_macro;
pub mod revocation;
pub mod signal;
