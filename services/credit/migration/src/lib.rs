//! Database migrations of the credit service.
