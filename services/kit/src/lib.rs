//! Shared plumbing of the Tavana services.
