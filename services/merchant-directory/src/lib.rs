//! The merchant-directory service.
