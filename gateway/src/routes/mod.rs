//! Routes, one module per service, plus the gateway's own (health, dev).

pub mod audit;
pub mod credit;
pub mod dev;
pub mod guarantee;
pub mod identity;
pub mod merchants;
pub mod settlement;
pub mod system;
