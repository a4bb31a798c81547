//! The rules of the merchant directory (R25-R27): pure types and functions, no I/O.

pub mod api_key;
pub mod merchant;
pub mod normalize;
pub mod proposal;
pub mod search;
