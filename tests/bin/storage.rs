//! The storage service as a process of its own, for the end-to-end tests that kill it
//! (`reliability_storage_kill.rs`). The same calls as `services/storage/src/main.rs`: Cargo
//! gives a test the path of its own package's binaries only (`CARGO_BIN_EXE_*`), so the e2e
//! crate cannot name `photos-storage`'s, and a test that found it in the target directory would
//! run whatever was built there last.

use std::process::ExitCode;

use photos_storage::StorageConfig;

fn main() -> ExitCode {
    photos_runtime::app::run_main("photos-storage", |config: StorageConfig| async move {
        photos_storage::build(config)
            .await?
            .run_until_stopped(photos_runtime::shutdown::signal())
            .await?;
        Ok(())
    })
}
