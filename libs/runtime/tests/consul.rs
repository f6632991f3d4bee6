//! Consul wiring end to end, against the in-process agent of `photos_testkit::consul` (no real
//! Consul agent can run here): echo servers register themselves once SERVING (the agent's gRPC
//! check calls their health service), a `consul://` channel balances over the passing ones,
//! an instance that turns NOT_SERVING leaves the balancer and returns when it serves again, and
//! a draining instance deregisters before its listener closes.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use photos_proto::testing::v1::EchoRequest;
use photos_proto::testing::v1::echo_service_client::EchoServiceClient;
use photos_runtime::client::Channel;
use photos_runtime::metrics::ServerMetrics;
use photos_runtime::server::ServerError;
use photos_runtime::{ConsulConfig, UpstreamConfig};
use photos_testkit::consul::{self as fake_consul, FakeConsul};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

const SERVICE: &str = "photos-echo";
const ECHO_CALLS: &str = r#"service="photos.testing.v1.EchoService",method="Echo",code="0"}"#;

struct Instance {
    grpc: SocketAddr,
    metrics: ServerMetrics,
    health: HealthReporter,
    ready: Arc<AtomicBool>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), ServerError>>,
}

impl Instance {
    /// Echo calls this instance answered.
    fn answered(&self) -> u64 {
        self.metrics
            .encode()
            .lines()
            .find(|l| l.starts_with("photos_grpc_server_requests_total") && l.contains(ECHO_CALLS))
            .and_then(|l| l.rsplit(' ').next())
            .map(|n| n.parse().unwrap())
            .unwrap_or(0)
    }

    fn id(&self) -> String {
        format!("{SERVICE}-127.0.0.1-{}", self.grpc.port())
    }
}

/// An echo server registering with `agent`; its readiness check passes once `ready` is set.
async fn start(agent: &FakeConsul, ready_now: bool, drain_delay_ms: u64) -> Instance {
    let mut config = common::test_server_config();
    config.drain_delay_ms = drain_delay_ms;
    config.drain_grace_ms = 1_000;
    config.consul = ConsulConfig {
        address: format!("http://{}", agent.addr),
        service: SERVICE.to_owned(),
        check_interval_ms: 50,
        retry_ms: 50,
        ..ConsulConfig::default()
    };
    let server = common::bind_echo(config).await;
    let (grpc, metrics, health) = (server.grpc_addr(), server.metrics(), server.health());
    let ready = Arc::new(AtomicBool::new(ready_now));
    let gate = ready.clone();
    let stop = CancellationToken::new();
    let stopped = stop.clone().cancelled_owned();
    let task = tokio::spawn(async move {
        server
            .run(
                move || {
                    let ok = gate.load(Ordering::SeqCst);
                    async move { if ok { Ok(()) } else { Err("not ready") } }
                },
                stopped,
            )
            .await
    });
    Instance {
        grpc,
        metrics,
        health,
        ready,
        stop,
        task,
    }
}

async fn wait_for_set(found: &mut watch::Receiver<Vec<SocketAddr>>, expected: &[SocketAddr]) {
    let mut expected = expected.to_vec();
    expected.sort();
    let reached = tokio::time::timeout(Duration::from_secs(30), found.wait_for(|s| *s == expected))
        .await
        .is_ok();
    assert!(
        reached,
        "balancer never became {expected:?}, is {:?}",
        *found.borrow()
    );
}

async fn call_n(channel: &Channel, n: u64) {
    let mut client = EchoServiceClient::new(channel.clone());
    for i in 0..n {
        client
            .echo(EchoRequest {
                message: format!("call {i}"),
                delay_ms: 0,
                forward_to: String::new(),
            })
            .await
            .expect("call through the consul:// channel");
    }
}

/// Calls each instance answered while `n` calls were made.
async fn spread(channel: &Channel, n: u64, a: &Instance, b: &Instance) -> (u64, u64) {
    let before = (a.answered(), b.answered());
    call_n(channel, n).await;
    (a.answered() - before.0, b.answered() - before.1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consul_instances_join_when_serving_leave_when_not_and_deregister_on_drain() {
    let agent = fake_consul::start().await;
    let a = start(&agent, true, 0).await;
    let b = start(&agent, false, 5_000).await;
    let channel = Channel::connect_lazy(&UpstreamConfig {
        consul: ConsulConfig {
            address: format!("http://{}", agent.addr),
            wait_ms: 5_000,
            retry_ms: 50,
            ..ConsulConfig::default()
        },
        ..UpstreamConfig::new(format!("consul://{SERVICE}"))
    })
    .unwrap();
    let mut found = channel.discovered().expect("a consul:// channel discovers");

    // A is SERVING and registered itself; B's readiness has not passed, so it is not even in
    // the catalog yet.
    wait_for_set(&mut found, &[a.grpc]).await;
    assert_eq!(agent.service_ids(), vec![a.id()]);
    let (body, _token) = agent.registrations().remove(0);
    assert_eq!(body["Name"], SERVICE);
    assert_eq!(body["Port"], a.grpc.port());
    assert_eq!(
        body["Check"]["GRPC"],
        format!("127.0.0.1:{}", a.grpc.port())
    );
    assert_eq!(body["Meta"]["server"], "echo");
    assert_eq!(spread(&channel, 10, &a, &b).await, (10, 0));

    b.ready.store(true, Ordering::SeqCst);
    wait_for_set(&mut found, &[a.grpc, b.grpc]).await;
    let (to_a, to_b) = spread(&channel, 60, &a, &b).await;
    assert_eq!(to_a + to_b, 60);
    assert!(to_a > 0 && to_b > 0, "both serve: a={to_a} b={to_b}");

    // B reports NOT_SERVING: its check turns critical, the blocking query returns, B leaves.
    b.health
        .set_service_status("", ServingStatus::NotServing)
        .await;
    wait_for_set(&mut found, &[a.grpc]).await;
    assert_eq!(spread(&channel, 40, &a, &b).await, (40, 0));

    // Healthy again: back in the balancer, without registering anew.
    b.health
        .set_service_status("", ServingStatus::Serving)
        .await;
    wait_for_set(&mut found, &[a.grpc, b.grpc]).await;
    let (to_a, to_b) = spread(&channel, 60, &a, &b).await;
    assert_eq!(to_a + to_b, 60);
    assert!(to_a > 0 && to_b > 0, "both serve again: a={to_a} b={to_b}");
    assert_eq!(agent.registrations().len(), 2, "one registration each");

    // SIGTERM on B: NOT_SERVING and deregistered at once, while its 5 s drain delay keeps the
    // listener open. No call fails and none reaches B.
    b.stop.cancel();
    wait_for_set(&mut found, &[a.grpc]).await;
    assert_eq!(agent.service_ids(), vec![a.id()], "B deregistered itself");
    assert!(
        !b.task.is_finished(),
        "B was out of the catalog before its drain delay ended"
    );
    assert_eq!(spread(&channel, 20, &a, &b).await, (20, 0));
    b.task.await.unwrap().unwrap();

    a.stop.cancel();
    a.task.await.unwrap().unwrap();
    assert!(agent.service_ids().is_empty(), "A deregistered itself");
}

/// The agent is down when the server becomes ready: the server serves anyway and registers as
/// soon as the agent answers; shutting down before that registers nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_is_retried_until_the_agent_answers() {
    let mut agent = fake_consul::start().await;
    agent.stop().await;
    let server = start(&agent, true, 0).await;
    common::wait_serving(server.grpc, "photos.testing.v1.EchoService").await;
    agent.restart().await;
    photos_testkit::wait::until(
        "the instance to register",
        Duration::from_secs(30),
        Duration::from_millis(20),
        || {
            let ids = agent.service_ids();
            async move {
                if ids.is_empty() {
                    Err("not registered yet")
                } else {
                    Ok(())
                }
            }
        },
    )
    .await
    .unwrap();
    assert_eq!(agent.service_ids(), vec![server.id()]);
    server.stop.cancel();
    server.task.await.unwrap().unwrap();
    assert!(agent.service_ids().is_empty());
}

#[tokio::test]
async fn a_server_on_an_unspecified_address_must_advertise_one() {
    let mut config = common::test_server_config();
    config.host = [0, 0, 0, 0].into();
    config.consul.address = "http://127.0.0.1:8500".to_owned();
    let err = photos_runtime::server::ServerBuilder::new("echo", config)
        .bind()
        .await
        .err()
        .expect("refused");
    assert!(
        err.to_string().contains("server.consul.advertise_address"),
        "{err}"
    );
}
