//! Database migrations of the settlement service.
