//! `tavana-identity [serve|migrate]`: the identity service as its own process.

tavana_kit::service_main!(identity, tavana_identity);
