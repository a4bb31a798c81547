//! Database migrations of the identity service.
