//! End-to-end tests of the guarantee service through the gateway.
