use std::process::ExitCode;

use photos_media::MediaConfig;

fn main() -> ExitCode {
    photos_runtime::app::run_main("photos-media", |config: MediaConfig| async move {
        photos_media::build(config)
            .await?
            .run_until_stopped(photos_runtime::shutdown::signal())
            .await?;
        Ok(())
    })
}
