//! A test-only echo service mounted on the real server runtime: a slow call for drain tests and
//! a call chain (A → B) for trace and deadline propagation tests.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use photos_proto::testing::v1::echo_service_client::EchoServiceClient;
use photos_proto::testing::v1::echo_service_server::{EchoService, EchoServiceServer};
use photos_proto::testing::v1::{EchoRequest, EchoResponse};
use photos_runtime::client::Channel;
use photos_runtime::server::{BoundServer, ServerBuilder};
use photos_runtime::{ServerConfig, UpstreamConfig, propagation};
use tonic::{Request, Response, Status};

pub struct Echo;

#[tonic::async_trait]
impl EchoService for Echo {
    async fn echo(&self, request: Request<EchoRequest>) -> Result<Response<EchoResponse>, Status> {
        let request = request.into_inner();
        let my_trace = propagation::trace_id(&tracing::Span::current()).unwrap_or_default();
        if request.delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(request.delay_ms.into())).await;
        }
        if request.forward_to.is_empty() {
            return Ok(Response::new(EchoResponse {
                message: request.message,
                remaining_deadline_ms: propagation::remaining()
                    .map(|d| d.as_millis() as u64)
                    .unwrap_or(0),
                trace_ids: vec![my_trace],
            }));
        }
        let channel = Channel::connect_lazy(&UpstreamConfig::new(request.forward_to.clone()))
            .map_err(|e| Status::internal(e.to_string()))?;
        let mut next = EchoServiceClient::new(channel);
        let mut answer = next
            .echo(EchoRequest {
                message: request.message,
                delay_ms: 0,
                forward_to: String::new(),
            })
            .await?
            .into_inner();
        answer.trace_ids.insert(0, my_trace);
        Ok(Response::new(answer))
    }
}

pub fn test_server_config() -> ServerConfig {
    ServerConfig::with_ports(0, 0)
}

pub async fn bind_echo(config: ServerConfig) -> BoundServer {
    ServerBuilder::new("echo", config)
        .add_service(EchoServiceServer::new(Echo))
        .descriptor(photos_proto::testing::v1::FILE_DESCRIPTOR_SET)
        .bind()
        .await
        .expect("bind echo server")
}

pub fn url(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

/// A plain tonic channel (no photos layers), as an outside client would use.
pub async fn channel(addr: SocketAddr) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(url(addr))
        .unwrap()
        .connect()
        .await
        .expect("connect")
}

pub async fn client(addr: SocketAddr) -> EchoServiceClient<tonic::transport::Channel> {
    EchoServiceClient::connect(url(addr))
        .await
        .expect("connect")
}

/// Polls the health service until `service` reports SERVING.
pub async fn wait_serving(addr: SocketAddr, service: &str) {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
    let mut health = HealthClient::new(channel(addr).await);
    for _ in 0..500 {
        let status = health
            .check(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await
            .map(|r| r.into_inner().status);
        if matches!(status, Ok(s) if s == ServingStatus::Serving as i32) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{service} at {addr} never became SERVING");
}

#[allow(unused_imports)] // not every test binary reads admin endpoints
pub use photos_testkit::http::get as http_get;

/// An echo server that is ready at once, already SERVING.
pub struct Running {
    pub grpc: SocketAddr,
    pub admin: SocketAddr,
    stop: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<Result<(), photos_runtime::server::ServerError>>,
}

impl Running {
    /// Signals shutdown without waiting (drain tests watch what happens next).
    pub fn signal_stop(&self) {
        self.stop.cancel();
    }

    /// Signals shutdown and waits for a clean drain.
    pub async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap().unwrap();
    }

    /// Waits for the server task (after `signal_stop`).
    pub async fn join(self) -> Result<(), photos_runtime::server::ServerError> {
        self.task.await.unwrap()
    }
}

pub async fn spawn_echo(config: ServerConfig) -> Running {
    let server = bind_echo(config).await;
    let (grpc, admin) = (server.grpc_addr(), server.admin_addr());
    let stop = tokio_util::sync::CancellationToken::new();
    let s = stop.clone();
    let task = tokio::spawn(async move {
        server
            .run(|| async { Ok::<_, String>(()) }, s.cancelled_owned())
            .await
    });
    wait_serving(grpc, "photos.testing.v1.EchoService").await;
    Running {
        grpc,
        admin,
        stop,
        task,
    }
}
