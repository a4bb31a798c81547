//! The guarantee service.
