//! What every photos server and client shares: configuration loading, telemetry, the gRPC server
//! bootstrap (health, reflection, tower stack, admin port, drain), client channels with trace and
//! deadline propagation, and the one table that maps error kinds to gRPC codes and HTTP statuses.

pub mod app;
pub mod client;
pub mod config;
mod consul;
pub mod error;
pub mod layers;
pub mod metrics;
pub mod propagation;
pub mod server;
pub mod shutdown;
pub mod telemetry;
pub mod tracking;

pub use config::{
    ConfigError, ConsulConfig, Secret, ServerConfig, TelemetryConfig, UpstreamConfig,
};
pub use error::ErrorKind;
pub use server::{BoundServer, ServerBuilder};
