use std::process::ExitCode;

use photos_cache_admin::CacheAdminConfig;

fn main() -> ExitCode {
    photos_runtime::app::run_main(
        "photos-cache-admin",
        |config: CacheAdminConfig| async move {
            photos_cache_admin::build(config)
                .await?
                .run_until_stopped(photos_runtime::shutdown::signal())
                .await?;
            Ok(())
        },
    )
}
