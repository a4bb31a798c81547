//! `tavana-merchant-directory [serve|migrate]`: the merchant-directory service as its own process.

tavana_kit::service_main!(merchant_directory, tavana_merchant_directory);
