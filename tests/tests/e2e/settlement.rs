//! End-to-end tests of the settlement service through the gateway.
