//! Database migrations of the merchant-directory service.
