//! Database migrations of the guarantee service.
