//! Generates the code for every contract under `proto/` at build time (no generated code is
//! checked in), plus one file descriptor set per package so each server's reflection lists
//! exactly its own API.
use std::path::PathBuf;

const PACKAGES: &[(&str, &str)] = &[
    ("catalog", "photos/catalog/v1/catalog.proto"),
    ("media", "photos/media/v1/media.proto"),
    ("storage", "photos/storage/v1/storage.proto"),
    ("cache_admin", "photos/cache_admin/v1/cache_admin.proto"),
    ("metrics", "photos/metrics/v1/metrics.proto"),
    ("jobs", "photos/jobs/v1/jobs.proto"),
    ("testing", "photos/testing/v1/echo.proto"),
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read at run time, not baked in with env!(): two clones sharing one target directory
    // share this compiled script, and each must read its own contracts.
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    // prost-build prints no rerun-if-changed of its own: without this, proto edits are ignored.
    println!("cargo:rerun-if-changed={}", root.display());
    println!("cargo:rerun-if-env-changed=PROTOC");
    // A vendored protoc unless one is named explicitly: nothing to install to build.
    let protoc = match std::env::var_os("PROTOC") {
        Some(path) => PathBuf::from(path),
        None => protoc_bin_vendored::protoc_bin_path()?,
    };
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    for (name, file) in PACKAGES {
        let mut config = prost_build::Config::new();
        config.protoc_executable(&protoc);
        tonic_prost_build::configure()
            .file_descriptor_set_path(out.join(format!("{name}_descriptor.bin")))
            // RPCs whose issue has not landed answer UNIMPLEMENTED instead of failing to build.
            .generate_default_stubs(true)
            .compile_with_config(config, &[root.join(file)], std::slice::from_ref(&root))?;
    }
    Ok(())
}
