//! `tavana-settlement [serve|migrate]`: the settlement service as its own process.

tavana_kit::service_main!(settlement, tavana_settlement);
