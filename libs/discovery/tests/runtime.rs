//! The lifecycle the runtime is meant to adopt, with real photos-runtime servers: register once
//! bound, get calls only after readiness reports SERVING, leave the balancer during the drain
//! delay after shutdown (while the listener still accepts), then deregister.

mod fake_consul;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use photos_discovery::{ConsulClient, ConsulConfig, Registration, balanced_channel};
use photos_runtime::ServerConfig;
use photos_runtime::server::ServerBuilder;
use tokio::sync::oneshot;
use tonic::transport::{Channel, Endpoint};
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;

const REFLECTION_CALLS: &str =
    r#"service="grpc.reflection.v1.ServerReflection",method="ServerReflectionInfo",code="0""#;

struct Photos {
    addr: SocketAddr,
    metrics: photos_runtime::metrics::ServerMetrics,
    ready: Arc<AtomicBool>,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<()>,
}

async fn photos_server(ready_now: bool, drain_delay_ms: u64) -> Photos {
    let mut config = ServerConfig::with_ports(0, 0);
    config.drain_delay_ms = drain_delay_ms;
    config.drain_grace_ms = 1_000;
    let server = ServerBuilder::new("discovery-test", config)
        .bind()
        .await
        .unwrap();
    let addr = server.grpc_addr();
    let metrics = server.metrics();
    let ready = Arc::new(AtomicBool::new(ready_now));
    let gate = ready.clone();
    let (stop, stopped) = oneshot::channel::<()>();
    let done = tokio::spawn(async move {
        server
            .run(
                move || {
                    let ok = gate.load(Ordering::SeqCst);
                    async move {
                        if ok {
                            Ok(())
                        } else {
                            Err("dependencies not ready")
                        }
                    }
                },
                async {
                    let _ = stopped.await;
                },
            )
            .await
            .unwrap();
    });
    Photos {
        addr,
        metrics,
        ready,
        stop: Some(stop),
        done,
    }
}

/// Successful reflection calls this server answered (the agent's checks call Health, not this).
fn answered(p: &Photos) -> u64 {
    p.metrics
        .encode()
        .lines()
        .find(|l| {
            l.starts_with("photos_grpc_server_requests_total") && l.contains(REFLECTION_CALLS)
        })
        .and_then(|l| l.rsplit(' ').next())
        .map(|n| n.parse().unwrap())
        .unwrap_or(0)
}

async fn call_n(channel: &Channel, n: usize) {
    let mut client = ServerReflectionClient::new(channel.clone());
    for _ in 0..n {
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut stream = client
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .expect("call through the balancer")
            .into_inner();
        assert!(stream.message().await.unwrap().is_some());
    }
}

async fn wait_for_set(
    rx: &mut tokio::sync::watch::Receiver<Vec<SocketAddr>>,
    expected: &[SocketAddr],
) {
    let mut expected = expected.to_vec();
    expected.sort();
    let reached = tokio::time::timeout(Duration::from_secs(20), rx.wait_for(|s| *s == expected))
        .await
        .is_ok();
    assert!(
        reached,
        "balancer never became {expected:?}, is {:?}",
        *rx.borrow()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn photos_servers_join_when_serving_and_leave_during_the_drain() {
    let agent = fake_consul::start().await;
    let consul = ConsulClient::new(ConsulConfig {
        address: format!("http://{}", agent.addr),
        check_interval_ms: 50,
        wait_ms: 5_000,
        retry_ms: 50,
        ..ConsulConfig::default()
    })
    .unwrap();
    // B is ready at once; A's readiness fails until its "dependencies" come up.
    let mut a = photos_server(false, 0).await;
    let mut b = photos_server(true, 5_000).await;
    consul
        .register(&Registration::grpc(
            "photos-test",
            "127.0.0.1",
            a.addr.port(),
        ))
        .await
        .unwrap();
    let reg_b = consul
        .register(&Registration::grpc(
            "photos-test",
            "127.0.0.1",
            b.addr.port(),
        ))
        .await
        .unwrap();
    let mut discovered = balanced_channel(consul.clone(), "photos-test", |addr| {
        Endpoint::from_shared(format!("http://{addr}")).unwrap()
    });

    // Registered but not SERVING: A's check is critical, so only B gets calls.
    wait_for_set(&mut discovered.instances, &[b.addr]).await;
    call_n(&discovered.channel, 10).await;
    assert_eq!((answered(&a), answered(&b)), (0, 10));

    a.ready.store(true, Ordering::SeqCst);
    wait_for_set(&mut discovered.instances, &[a.addr, b.addr]).await;
    call_n(&discovered.channel, 60).await;
    let (to_a, to_b) = (answered(&a), answered(&b) - 10);
    assert_eq!(to_a + to_b, 60);
    assert!(to_a > 0 && to_b > 0, "both serve: a={to_a} b={to_b}");

    // SIGTERM on B: NOT_SERVING at once, listener open for the 5 s drain delay. B leaves the
    // balancer within the delay, so no call fails and none reaches B.
    b.stop.take().unwrap().send(()).unwrap();
    wait_for_set(&mut discovered.instances, &[a.addr]).await;
    assert!(
        !b.done.is_finished(),
        "B left the balancer before its drain delay ended"
    );
    let before = (answered(&a), answered(&b));
    call_n(&discovered.channel, 20).await;
    assert_eq!((answered(&a) - before.0, answered(&b) - before.1), (20, 0));

    (&mut b.done).await.unwrap();
    reg_b.deregister().await.unwrap();
    assert_eq!(agent.service_ids().len(), 1);
    a.stop.take().unwrap().send(()).unwrap();
    (&mut a.done).await.unwrap();
}
