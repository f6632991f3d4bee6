//! Helpers shared by the end-to-end tests.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use photos_mesh::{Mesh, MeshConfig};

pub async fn start_mesh(dir: &std::path::Path) -> Mesh {
    Mesh::start(MeshConfig::ephemeral(dir))
        .await
        .expect("start the mesh")
}

pub async fn channel(addr: SocketAddr) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("connect")
}

pub async fn wait_serving(addr: SocketAddr) {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
    let mut health = HealthClient::new(channel(addr).await);
    for _ in 0..1000 {
        if let Ok(r) = health
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            && r.into_inner().status == ServingStatus::Serving as i32
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{addr} never became SERVING");
}

pub use photos_testkit::http::request;

/// A request with raw extra header lines: (status, head and body as text).
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    extra_headers: &str,
) -> (u16, String) {
    let headers: Vec<(&str, &str)> = extra_headers
        .split("\r\n")
        .filter_map(|l| l.split_once(": "))
        .collect();
    let (status, head, body) = request(addr, method, path, &headers, None).await;
    (status, format!("{head}\r\n\r\n{body}"))
}
