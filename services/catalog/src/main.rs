use std::process::ExitCode;

use photos_catalog::CatalogConfig;

fn main() -> ExitCode {
    photos_runtime::app::run_main("photos-catalog", |config: CatalogConfig| async move {
        photos_catalog::build(config)
            .await?
            .run_until_stopped(photos_runtime::shutdown::signal())
            .await?;
        Ok(())
    })
}
