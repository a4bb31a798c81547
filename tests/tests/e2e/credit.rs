//! End-to-end tests of the credit service through the gateway.
