//! End-to-end tests of the merchants service through the gateway.
