//! The HTTP/JSON gateway.
