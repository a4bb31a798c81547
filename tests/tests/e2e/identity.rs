//! End-to-end tests of the identity service through the gateway.
