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
