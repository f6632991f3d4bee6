//! `photos`: the whole mesh in one process on embedded defaults.
#![allow(clippy::print_stdout)] // printing the addresses is this binary's job

use std::process::ExitCode;

use photos_mesh::{Mesh, MeshConfig};

fn main() -> ExitCode {
    photos_runtime::app::run_main("photos", |config: MeshConfig| async move {
        let data_dir = config.data_dir.clone();
        let embedded = config.embedded;
        let mesh = Mesh::start(config).await?;
        let a = &mesh.addresses;
        println!(
            "photos is running{}",
            if embedded {
                format!(" on embedded backends (data in {})", data_dir.display())
            } else {
                String::new()
            }
        );
        println!("  gateway      http://{}", a.gateway);
        for (name, addr) in a.grpc() {
            println!("  {name:<12} grpc://{addr}");
        }
        if let Some(store) = a.object_store {
            println!("  object store http://{store} (local S3)");
        }
        if let Some(token) = &mesh.admin_token {
            println!("  admin token (24 h, this run only):");
            println!("    Authorization: Bearer {token}");
        }
        println!("Ctrl-C stops it.");
        mesh.run_until_stopped(photos_runtime::shutdown::signal())
            .await?;
        Ok(())
    })
}
