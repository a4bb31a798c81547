//! The settlement service.
