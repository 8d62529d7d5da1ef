//! Generates the kubelet PodResources v1 gRPC client (and the server trait the tests fake) from the
//! vendored `proto/podresources/v1/api.proto`.
//!
//! `protoc` comes from the `protoc-bin-vendored` crate, so building needs no protoc on the machine.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // prost-build reads PROTOC; a build script runs in its own process, so setting it here touches
    // nothing else.
    std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?);
    println!("cargo:rerun-if-changed=proto");
    tonic_prost_build::configure()
        // No `connect(url)` helper: the client is only ever built on a Unix-socket channel.
        .build_transport(false)
        .compile_protos(&["proto/podresources/v1/api.proto"], &["proto"])?;
    Ok(())
}
