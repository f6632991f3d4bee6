use std::process::ExitCode;

use photos_metrics::MetricsConfig;

fn main() -> ExitCode {
    photos_runtime::app::run_main("photos-metrics", |config: MetricsConfig| async move {
        photos_metrics::build(config)
            .await?
            .run_until_stopped(photos_runtime::shutdown::signal())
            .await?;
        Ok(())
    })
}
