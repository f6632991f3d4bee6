//! The storage service: every byte of originals and variants, in S3 or any S3-compatible store
//! (issue "Storage service").

pub mod config;
pub mod error;

use std::future::Future;
use std::net::SocketAddr;

use photos_proto::storage::v1::storage_service_server::{StorageService, StorageServiceServer};
use photos_runtime::server::{BoundServer, ServerBuilder};

pub use config::StorageConfig;
pub use error::StorageError;

use crate::config::S3Config;

/// RPCs answer UNIMPLEMENTED through the generated default stubs until their issue lands.
struct StorageGrpc {
    #[allow(dead_code)]
    s3: aws_sdk_s3::Client,
    #[allow(dead_code)]
    bucket: String,
}

#[tonic::async_trait]
impl StorageService for StorageGrpc {}

/// An S3 client for `config`: static credentials when given, else the standard AWS chain.
pub async fn s3_client(config: &S3Config) -> aws_sdk_s3::Client {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(config.region.clone()));
    if !config.access_key.is_empty() {
        loader = loader.credentials_provider(aws_sdk_s3::config::Credentials::new(
            config.access_key.expose(),
            config.secret_key.expose(),
            None,
            None,
            "photos-config",
        ));
    }
    if !config.endpoint.is_empty() {
        loader = loader.endpoint_url(&config.endpoint);
    }
    let shared = loader.load().await;
    let s3_config = aws_sdk_s3::config::Builder::from(&shared)
        .force_path_style(config.force_path_style)
        .build();
    aws_sdk_s3::Client::from_conf(s3_config)
}

pub struct Application {
    server: BoundServer,
    s3: aws_sdk_s3::Client,
    s3_config: S3Config,
}

pub async fn build(config: StorageConfig) -> Result<Application, StorageError> {
    let s3 = s3_client(&config.s3).await;
    let service = StorageServiceServer::new(StorageGrpc {
        s3: s3.clone(),
        bucket: config.s3.bucket.clone(),
    })
    .max_decoding_message_size(config.server.max_message_bytes);
    let server = ServerBuilder::new("storage", config.server.clone())
        .add_service(service)
        .descriptor(photos_proto::storage::v1::FILE_DESCRIPTOR_SET)
        .bind()
        .await?;
    Ok(Application {
        server,
        s3,
        s3_config: config.s3,
    })
}

/// Succeeds once the bucket is reachable (creating it first if configured to).
async fn check_bucket(s3: &aws_sdk_s3::Client, config: &S3Config) -> Result<(), StorageError> {
    match s3.head_bucket().bucket(&config.bucket).send().await {
        Ok(_) => Ok(()),
        Err(e)
            if config.create_bucket && e.as_service_error().is_some_and(|s| s.is_not_found()) =>
        {
            s3.create_bucket()
                .bucket(&config.bucket)
                .send()
                .await
                .map(|_| ())
                .map_err(describe)
        }
        Err(e) => Err(describe(e)),
    }
}

fn describe<E: std::error::Error + 'static>(e: E) -> StorageError {
    StorageError::S3(aws_sdk_s3::error::DisplayErrorContext(e).to_string())
}

impl Application {
    pub fn grpc_addr(&self) -> SocketAddr {
        self.server.grpc_addr()
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.server.admin_addr()
    }

    /// Serves until `shutdown` resolves, then drains. SERVING once the bucket is reachable.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), StorageError> {
        let (s3, s3_config) = (self.s3, self.s3_config);
        self.server
            .run(
                move || {
                    let (s3, s3_config) = (s3.clone(), s3_config.clone());
                    async move { check_bucket(&s3, &s3_config).await }
                },
                shutdown,
            )
            .await?;
        Ok(())
    }
}
