//! End-to-end tests: the whole suite in one process, driven through the
//! gateway's HTTP API as a client would.

mod credit;
mod gateway;
mod guarantee;
mod identity;
mod merchants;
mod settlement;
mod topology;
