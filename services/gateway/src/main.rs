use std::process::ExitCode;

use photos_gateway::GatewayConfig;

fn main() -> ExitCode {
    photos_runtime::app::run_main("photos-gateway", |config: GatewayConfig| async move {
        photos_gateway::build(config)
            .await?
            .run_until_stopped(photos_runtime::shutdown::signal())
            .await?;
        Ok(())
    })
}
