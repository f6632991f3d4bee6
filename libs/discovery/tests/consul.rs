//! photos-discovery against an in-process Consul agent implementing exactly the documented HTTP
//! endpoints the crate uses, whose gRPC checks really call the instances' grpc.health.v1, and
//! real tonic servers answering real calls through the balanced channel.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use photos_discovery::{
    ConsulClient, ConsulConfig, DiscoveryError, Registration, balanced_channel,
};
use photos_testkit::consul as fake_consul;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Channel, Endpoint};
use tonic_health::ServingStatus;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::health_server::HealthServer;
use tonic_health::server::{HealthReporter, HealthService};

/// Marks calls made by the test through the balancer, so the agent's own checks are not
/// counted as traffic.
const FROM_TEST: &str = "x-from-test";

struct Backend {
    addr: SocketAddr,
    reporter: HealthReporter,
    calls: Arc<AtomicUsize>,
}

async fn backend() -> Backend {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let reporter = HealthReporter::new();
    reporter
        .set_service_status("", ServingStatus::Serving)
        .await;
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let svc = HealthServer::with_interceptor(
        HealthService::from_health_reporter(reporter.clone()),
        move |req: tonic::Request<()>| {
            if req.metadata().contains_key(FROM_TEST) {
                counter.fetch_add(1, Ordering::SeqCst);
            }
            Ok(req)
        },
    );
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    Backend {
        addr,
        reporter,
        calls,
    }
}

fn config(agent: SocketAddr) -> ConsulConfig {
    ConsulConfig {
        address: format!("http://{agent}"),
        check_interval_ms: 50,
        check_timeout_ms: 1_000,
        wait_ms: 5_000,
        retry_ms: 50,
        ..ConsulConfig::default()
    }
}

fn endpoint(addr: SocketAddr) -> Endpoint {
    Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
}

/// Sends `n` real gRPC calls through the balanced channel; every one must succeed.
async fn call_n(channel: &Channel, n: usize) {
    let mut client = HealthClient::new(channel.clone());
    for _ in 0..n {
        let mut req = tonic::Request::new(HealthCheckRequest {
            service: String::new(),
        });
        req.metadata_mut().insert(FROM_TEST, "1".parse().unwrap());
        client.check(req).await.expect("call through the balancer");
    }
}

async fn wait_for_set(
    rx: &mut tokio::sync::watch::Receiver<Vec<SocketAddr>>,
    expected: &[SocketAddr],
) {
    let mut expected = expected.to_vec();
    expected.sort();
    // A generous bound so a broken follower fails the test instead of hanging it.
    let reached =
        tokio::time::timeout(Duration::from_secs(20), rx.wait_for(|set| *set == expected))
            .await
            .is_ok();
    assert!(
        reached,
        "balancer never became {expected:?}, is {:?}",
        *rx.borrow()
    );
}

fn take(calls: &AtomicUsize) -> usize {
    calls.swap(0, Ordering::SeqCst)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unhealthy_instance_leaves_the_balancer_and_returns_when_healthy() {
    let agent = fake_consul::start().await;
    let a = backend().await;
    let b = backend().await;
    let client = ConsulClient::new(config(agent.addr)).unwrap();
    let reg_a = client
        .register(&Registration::grpc("echo", "127.0.0.1", a.addr.port()))
        .await
        .unwrap();
    client
        .register(&Registration::grpc("echo", "127.0.0.1", b.addr.port()))
        .await
        .unwrap();

    let mut discovered = balanced_channel(client.clone(), "echo", endpoint);
    wait_for_set(&mut discovered.instances, &[a.addr, b.addr]).await;
    call_n(&discovered.channel, 60).await;
    let (to_a, to_b) = (take(&a.calls), take(&b.calls));
    assert_eq!(to_a + to_b, 60);
    assert!(
        to_a > 0 && to_b > 0,
        "both instances serve: a={to_a} b={to_b}"
    );

    // B's check turns critical in the agent, the blocking query returns, B leaves the balancer.
    b.reporter
        .set_service_status("", ServingStatus::NotServing)
        .await;
    wait_for_set(&mut discovered.instances, &[a.addr]).await;
    call_n(&discovered.channel, 40).await;
    assert_eq!((take(&a.calls), take(&b.calls)), (40, 0));

    // Healthy again: B is back and gets calls.
    b.reporter
        .set_service_status("", ServingStatus::Serving)
        .await;
    wait_for_set(&mut discovered.instances, &[a.addr, b.addr]).await;
    call_n(&discovered.channel, 60).await;
    let (to_a, to_b) = (take(&a.calls), take(&b.calls));
    assert_eq!(to_a + to_b, 60);
    assert!(to_a > 0 && to_b > 0, "b returned: a={to_a} b={to_b}");

    // Deregistration (shutdown) removes A even though its server still answers.
    reg_a.deregister().await.unwrap();
    wait_for_set(&mut discovered.instances, &[b.addr]).await;
    call_n(&discovered.channel, 20).await;
    assert_eq!((take(&a.calls), take(&b.calls)), (0, 20));

    // The follower used blocking queries, not polling: every query after the first carried
    // the index of the previous answer and a wait.
    let queries = agent.health_queries();
    assert!(queries.len() >= 4, "{queries:?}");
    assert_eq!(queries[0].index, None);
    assert!(
        queries[1..]
            .iter()
            .all(|q| q.index.is_some_and(|i| i > 0) && q.wait.is_some() && q.passing)
    );
}

#[tokio::test]
async fn registration_sends_the_documented_body_and_token() {
    let agent = fake_consul::start().await;
    let b = backend().await;
    let client = ConsulClient::new(ConsulConfig {
        token: "acl-token".to_owned(),
        ..config(agent.addr)
    })
    .unwrap();
    let mut reg = Registration::grpc("photos-catalog", "127.0.0.1", b.addr.port());
    reg.health_service = "photos.catalog.v1.CatalogService".to_owned();
    let registered = client.register(&reg).await.unwrap();

    let seen = agent.registrations();
    assert_eq!(seen.len(), 1);
    let (body, token) = &seen[0];
    assert_eq!(token.as_deref(), Some("acl-token"));
    assert_eq!(body["Name"], "photos-catalog");
    assert_eq!(body["ID"], registered.id());
    assert_eq!(body["Port"], b.addr.port());
    assert_eq!(
        body["Check"]["GRPC"],
        format!(
            "127.0.0.1:{}/photos.catalog.v1.CatalogService",
            b.addr.port()
        )
    );

    // The named health service is unknown to the backend, so that check stays critical, while a
    // second instance checked on the whole server passes: only it is reported.
    let mut plain = Registration::grpc("photos-catalog", "localhost", b.addr.port());
    plain.id = "plain".to_owned();
    client.register(&plain).await.unwrap();
    let mut index = 0;
    let passing = loop {
        let (passing, returned) = client
            .passing_instances("photos-catalog", index, Duration::from_secs(5))
            .await
            .unwrap();
        if !passing.is_empty() || returned == index {
            break passing;
        }
        index = photos_discovery::next_index(index, returned);
    };
    assert_eq!(
        passing,
        vec![photos_discovery::Instance {
            id: "plain".to_owned(),
            address: "localhost".to_owned(),
            port: b.addr.port()
        }]
    );

    registered.deregister().await.unwrap();
    assert_eq!(agent.service_ids(), vec!["plain".to_owned()]);
}

#[tokio::test]
async fn agent_errors_name_the_status_and_path() {
    let agent = fake_consul::start().await;
    let client = ConsulClient::new(config(agent.addr)).unwrap();
    let err = client.deregister("no-such-id").await.unwrap_err();
    match &err {
        DiscoveryError::Status { status, path, .. } => {
            assert_eq!(status.as_u16(), 404);
            assert_eq!(path, "/v1/agent/service/deregister/no-such-id");
        }
        other => panic!("unexpected {other:?}"),
    }

    // Nothing listening: a transport error, not a panic or a hang.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = listener.local_addr().unwrap();
    drop(listener);
    let client = ConsulClient::new(config(closed)).unwrap();
    let err = client
        .passing_instances("echo", 0, Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(matches!(err, DiscoveryError::Transport { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_outage_keeps_the_last_known_instances() {
    let mut agent = fake_consul::start().await;
    let a = backend().await;
    let client = ConsulClient::new(config(agent.addr)).unwrap();
    client
        .register(&Registration::grpc("echo", "127.0.0.1", a.addr.port()))
        .await
        .unwrap();
    let mut discovered = balanced_channel(client, "echo", endpoint);
    wait_for_set(&mut discovered.instances, &[a.addr]).await;

    agent.stop().await;
    // Calls keep flowing to the known instance while the agent is gone.
    call_n(&discovered.channel, 10).await;
    assert_eq!(take(&a.calls), 10);
    assert_eq!(*discovered.instances.borrow(), vec![a.addr]);
}
