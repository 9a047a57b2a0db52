//! Compiles the `.proto` files with protox (pure Rust, no system `protoc`)
//! and generates the message types with prost-build.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/winerecord.proto",
        "proto/modeldescriptor.proto",
        "proto/servingresult.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
