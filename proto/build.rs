//! Compiles every `.proto` under `tavana/` with the pure-Rust `protox`
//! compiler, so a fresh machine needs no system `protoc`.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let services = [
        "identity",
        "guarantee",
        "credit",
        "settlement",
        "merchant_directory",
        "audit",
    ];
    let files: Vec<String> = services
        .iter()
        .map(|service| format!("tavana/{service}/v1/{service}.proto"))
        .collect();
    let descriptors = protox::compile(&files, ["."])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("tavana_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    for file in &files {
        println!("cargo:rerun-if-changed={file}");
    }
    Ok(())
}
