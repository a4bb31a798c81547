//! `tavana-guarantee [serve|migrate]`: the guarantee service as its own process.

tavana_kit::service_main!(guarantee, tavana_guarantee);
