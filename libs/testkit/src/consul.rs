//! An in-process stand-in for a Consul agent (no Consul binary is obtainable here): only the
//! HTTP endpoints photos-discovery uses, with the semantics Consul's HTTP API reference documents
//! for them:
//!
//! - `PUT /v1/agent/service/register` (JSON body: `ID` defaulting to `Name`, `Address`, `Port`,
//!   `Check.GRPC` = `host:port[/service]`, `Check.Interval`); a new check starts `critical` and
//!   the agent runs it every interval with grpc.health.v1 `Check`: SERVING = passing.
//! - `PUT /v1/agent/service/deregister/:service_id` (404 for an unknown ID).
//! - `GET /v1/health/service/:service?passing&index=&wait=`: an array of `{Node, Service,
//!   Checks}` entries, `X-Consul-Index` on every answer; with `index` it blocks until the index
//!   moves past it or `wait` elapses.
//!
//! It is not Consul: no catalog sync, no anti-entropy, no ACLs (the token is only recorded).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

#[derive(Debug, Clone)]
pub struct HealthQuery {
    pub passing: bool,
    pub index: Option<u64>,
    pub wait: Option<String>,
}

struct Service {
    name: String,
    address: String,
    port: u16,
    passing: bool,
    checker: JoinHandle<()>,
}

#[derive(Default)]
struct Inner {
    services: BTreeMap<String, Service>,
    registrations: Vec<(Value, Option<String>)>,
    health_queries: Vec<HealthQuery>,
}

#[derive(Clone)]
struct Agent {
    inner: Arc<Mutex<Inner>>,
    /// The Raft-like modify index; bumped on every change that alters a health answer.
    index: Arc<watch::Sender<u64>>,
}

impl Agent {
    fn bump(&self) {
        self.index.send_modify(|i| *i += 1);
    }
}

pub struct FakeConsul {
    pub addr: SocketAddr,
    agent: Agent,
    server: JoinHandle<()>,
}

impl FakeConsul {
    pub fn registrations(&self) -> Vec<(Value, Option<String>)> {
        self.agent.inner.lock().unwrap().registrations.clone()
    }
    pub fn health_queries(&self) -> Vec<HealthQuery> {
        self.agent.inner.lock().unwrap().health_queries.clone()
    }
    pub fn service_ids(&self) -> Vec<String> {
        self.agent
            .inner
            .lock()
            .unwrap()
            .services
            .keys()
            .cloned()
            .collect()
    }
    /// Stops accepting connections (an agent outage).
    pub async fn stop(&mut self) {
        let server = std::mem::replace(&mut self.server, tokio::spawn(async {}));
        server.abort();
        let _ = server.await;
    }

    /// Serves again on the same address, with the state it had (the outage is over).
    pub async fn restart(&mut self) {
        self.stop().await;
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        self.server = serve(listener, self.agent.clone());
    }
}

impl Drop for FakeConsul {
    fn drop(&mut self) {
        self.server.abort();
        for s in self.agent.inner.lock().unwrap().services.values() {
            s.checker.abort();
        }
    }
}

pub async fn start() -> FakeConsul {
    let agent = Agent {
        inner: Arc::default(),
        index: Arc::new(watch::channel(1).0),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = serve(listener, agent.clone());
    FakeConsul {
        addr,
        agent,
        server,
    }
}

fn serve(listener: tokio::net::TcpListener, agent: Agent) -> JoinHandle<()> {
    let app = Router::new()
        .route("/v1/agent/service/register", put(register))
        .route("/v1/agent/service/deregister/{id}", put(deregister))
        .route("/v1/health/service/{name}", get(health))
        .with_state(agent);
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    })
}

/// Go durations as Consul accepts them; the crate sends `<n>ms`, `<n>s` is common too.
fn parse_duration(s: &str) -> Option<Duration> {
    if let Some(ms) = s.strip_suffix("ms") {
        return ms.parse().ok().map(Duration::from_millis);
    }
    if let Some(secs) = s.strip_suffix('s') {
        return secs.parse().ok().map(Duration::from_secs);
    }
    if let Some(mins) = s.strip_suffix('m') {
        return mins
            .parse::<u64>()
            .ok()
            .map(|m| Duration::from_secs(m * 60));
    }
    None
}

fn bad_request(message: &str) -> Response {
    (StatusCode::BAD_REQUEST, message.to_owned()).into_response()
}

async fn register(State(agent): State<Agent>, headers: HeaderMap, body: Bytes) -> Response {
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return bad_request("Request decode failed");
    };
    let token = headers
        .get("X-Consul-Token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let Some(name) = body["Name"].as_str().map(str::to_owned) else {
        return bad_request("Missing service name");
    };
    let id = body["ID"].as_str().unwrap_or(&name).to_owned();
    let address = body["Address"].as_str().unwrap_or_default().to_owned();
    let port = body["Port"].as_u64().unwrap_or_default() as u16;
    let Some(target) = body["Check"]["GRPC"].as_str().map(str::to_owned) else {
        return bad_request("only gRPC checks are implemented here");
    };
    let Some(interval) = body["Check"]["Interval"].as_str().and_then(parse_duration) else {
        return bad_request("Check.Interval must be a duration");
    };
    let timeout = body["Check"]["Timeout"]
        .as_str()
        .and_then(parse_duration)
        .unwrap_or(Duration::from_secs(10));
    let checker = tokio::spawn(run_check(
        agent.clone(),
        id.clone(),
        target,
        interval,
        timeout,
    ));
    let mut inner = agent.inner.lock().unwrap();
    inner.registrations.push((body, token));
    if let Some(old) = inner.services.insert(
        id,
        Service {
            name,
            address,
            port,
            passing: false,
            checker,
        },
    ) {
        old.checker.abort();
    }
    drop(inner);
    agent.bump();
    StatusCode::OK.into_response()
}

async fn deregister(State(agent): State<Agent>, Path(id): Path<String>) -> Response {
    let removed = agent.inner.lock().unwrap().services.remove(&id);
    match removed {
        Some(s) => {
            s.checker.abort();
            agent.bump();
            StatusCode::OK.into_response()
        }
        None => (
            StatusCode::NOT_FOUND,
            format!("Unknown service ID {id:?}. Ensure that the service ID is passed, not the service name."),
        )
            .into_response(),
    }
}

/// The agent's gRPC check: `grpc.health.v1.Health/Check` on `host:port[/service]`.
async fn run_check(
    agent: Agent,
    id: String,
    target: String,
    interval: Duration,
    timeout: Duration,
) {
    let (authority, service) = target.split_once('/').unwrap_or((&target, ""));
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{authority}"))
        .unwrap()
        .timeout(timeout)
        .connect_timeout(timeout);
    let channel = endpoint.connect_lazy();
    loop {
        let passing = matches!(
            HealthClient::new(channel.clone())
                .check(HealthCheckRequest {
                    service: service.to_owned(),
                })
                .await,
            Ok(r) if r.get_ref().status() == ServingStatus::Serving
        );
        let changed = {
            let mut inner = agent.inner.lock().unwrap();
            match inner.services.get_mut(&id) {
                Some(s) if s.passing != passing => {
                    s.passing = passing;
                    true
                }
                Some(_) => false,
                None => return,
            }
        };
        if changed {
            agent.bump();
        }
        tokio::time::sleep(interval).await;
    }
}

async fn health(
    State(agent): State<Agent>,
    Path(name): Path<String>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Response {
    // `?passing` with no value, or any value but "false", filters to passing checks.
    let passing = params.get("passing").is_some_and(|v| v != "false");
    let index = match params.get("index").map(|v| v.parse::<u64>()) {
        Some(Ok(i)) => Some(i),
        Some(Err(_)) => return bad_request("Invalid index"),
        None => None,
    };
    let wait = params.get("wait").cloned();
    agent
        .inner
        .lock()
        .unwrap()
        .health_queries
        .push(HealthQuery {
            passing,
            index,
            wait: wait.clone(),
        });
    if let Some(index) = index {
        let wait = wait
            .as_deref()
            .and_then(parse_duration)
            .unwrap_or(Duration::from_secs(300));
        let mut rx = agent.index.subscribe();
        let _ = tokio::time::timeout(wait, rx.wait_for(|current| *current > index)).await;
    }
    let current = *agent.index.borrow();
    let entries: Vec<Value> = agent
        .inner
        .lock()
        .unwrap()
        .services
        .iter()
        .filter(|(_, s)| s.name == name && (!passing || s.passing))
        .map(|(id, s)| {
            json!({
                "Node": {"ID": "fake", "Node": "fake-agent", "Address": "127.0.0.1", "Datacenter": "dc1"},
                "Service": {"ID": id, "Service": s.name, "Tags": ["grpc"], "Address": s.address, "Port": s.port},
                "Checks": [{"CheckID": format!("{id}:grpc"), "ServiceID": id,
                            "Status": if s.passing { "passing" } else { "critical" }}],
            })
        })
        .collect();
    let mut response = axum::Json(entries).into_response();
    response
        .headers_mut()
        .insert("X-Consul-Index", current.to_string().parse().unwrap());
    response
}
