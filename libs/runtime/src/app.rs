//! The body of every service's `main`: load config (exit 64 naming the key on a bad value),
//! start the tokio runtime, install telemetry, run until SIGTERM, flush spans.

use std::future::Future;
use std::process::ExitCode;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::config::{self, EXIT_CONFIG, TelemetryConfig, Validate};

/// A binary's whole configuration.
pub trait ServiceConfig: Default + Serialize + DeserializeOwned + Validate {
    fn telemetry(&self) -> &TelemetryConfig;
}

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub fn run_main<C, F, Fut>(binary: &'static str, run: F) -> ExitCode
where
    C: ServiceConfig,
    F: FnOnce(C) -> Fut,
    Fut: Future<Output = Result<(), BoxError>>,
{
    let config: C = match config::load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{binary}: {e}");
            return ExitCode::from(EXIT_CONFIG as u8);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{binary}: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let guard = match crate::telemetry::init(binary, config.telemetry()) {
            Ok(g) => g,
            Err(e) => {
                eprintln!("{binary}: {e}");
                return ExitCode::from(EXIT_CONFIG as u8);
            }
        };
        let result = run(config).await;
        guard.shutdown();
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, "{binary} failed");
                eprintln!("{binary}: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
