//! `tavana-credit [serve|migrate]`: the credit service as its own process.

tavana_kit::service_main!(credit, tavana_credit);
