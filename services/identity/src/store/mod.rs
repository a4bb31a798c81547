//! Identity's queries: the only code that touches its database, one module per
//! aggregate.

mod employee;
pub mod entities;
mod mobile_change;
mod organization;
mod role;
mod session;
mod sms;

pub use self::employee::*;
pub use self::mobile_change::*;
pub use self::organization::*;
pub use self::role::*;
pub use self::session::*;
pub use self::sms::*;
