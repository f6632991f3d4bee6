//! A tiny health probe for container `HEALTHCHECK`s: the runtime images hold no shell, curl or
//! grpc_health_probe (not obtainable here), so each image ships this binary next to the service.
//!
//!   photos-health-probe grpc://127.0.0.1:50051[/service]   grpc.health.v1 Check == SERVING
//!   photos-health-probe http://127.0.0.1:8080/healthz        HTTP status 2xx
//!
//! Exit 0 when healthy, 1 when not (the reason on stderr), 2 on a bad argument.

use std::process::ExitCode;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const TIMEOUT: Duration = Duration::from_secs(3);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [target] = args.as_slice() else {
        eprintln!("usage: photos-health-probe grpc://HOST:PORT[/SERVICE] | http://HOST:PORT/PATH");
        return ExitCode::from(2);
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        match tokio::time::timeout(TIMEOUT, probe(target)).await {
            Ok(result) => result,
            Err(_) => Err(Failure::Unhealthy(format!("no answer within {TIMEOUT:?}"))),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(message)) => {
            eprintln!("{message}");
            ExitCode::from(2)
        }
        Err(Failure::Unhealthy(message)) => {
            eprintln!("unhealthy: {message}");
            ExitCode::from(1)
        }
    }
}

enum Failure {
    Usage(String),
    Unhealthy(String),
}

async fn probe(target: &str) -> Result<(), Failure> {
    if let Some(rest) = target.strip_prefix("grpc://") {
        let (authority, service) = rest.split_once('/').unwrap_or((rest, ""));
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{authority}"))
            .map_err(|e| Failure::Usage(format!("invalid target {target:?}: {e}")))?;
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| Failure::Unhealthy(format!("cannot connect to {authority}: {e}")))?;
        let response = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await
            .map_err(|s| Failure::Unhealthy(format!("{:?}: {}", s.code(), s.message())))?;
        let status = response.into_inner().status();
        if status == ServingStatus::Serving {
            Ok(())
        } else {
            Err(Failure::Unhealthy(status.as_str_name().to_owned()))
        }
    } else if let Some(rest) = target.strip_prefix("http://") {
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        // HTTP/1.0 with Connection: close keeps this a few lines with no HTTP client crate.
        let mut stream = tokio::net::TcpStream::connect(authority)
            .await
            .map_err(|e| Failure::Unhealthy(format!("cannot connect to {authority}: {e}")))?;
        let request =
            format!("GET /{path} HTTP/1.0\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| Failure::Unhealthy(e.to_string()))?;
        let mut head = [0u8; 64];
        let mut read = 0;
        while read < 12 {
            let n = stream
                .read(&mut head[read..])
                .await
                .map_err(|e| Failure::Unhealthy(e.to_string()))?;
            if n == 0 {
                break;
            }
            read += n;
        }
        let line = String::from_utf8_lossy(&head[..read]);
        let status = line.split_whitespace().nth(1).unwrap_or_default();
        if status.starts_with('2') {
            Ok(())
        } else {
            Err(Failure::Unhealthy(format!(
                "http status {:?}",
                line.lines().next().unwrap_or_default()
            )))
        }
    } else {
        Err(Failure::Usage(format!(
            "target {target:?} must start with grpc:// or http://"
        )))
    }
}
