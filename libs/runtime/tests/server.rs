//! The server runtime against real sockets: health, reflection, admin endpoints, drain,
//! deadlines and load shedding.

mod common;

use std::time::Duration;

use common::*;
use photos_proto::testing::v1::EchoRequest;
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const ECHO: &str = "photos.testing.v1.EchoService";

#[tokio::test]
async fn not_serving_until_ready_then_serving() {
    let server = bind_echo(test_server_config()).await;
    let (grpc, admin) = (server.grpc_addr(), server.admin_addr());
    let ready = CancellationToken::new();
    let stop = CancellationToken::new();
    let (r, s) = (ready.clone(), stop.clone());
    let task = tokio::spawn(async move {
        server
            .run(
                move || {
                    let r = r.clone();
                    async move {
                        if r.is_cancelled() {
                            Ok(())
                        } else {
                            Err("database not reachable yet")
                        }
                    }
                },
                s.cancelled_owned(),
            )
            .await
    });

    let mut health = HealthClient::new(channel(grpc).await);
    let check = |name: &str| HealthCheckRequest {
        service: name.to_owned(),
    };
    assert_eq!(
        health.check(check(ECHO)).await.unwrap().into_inner().status,
        ServingStatus::NotServing as i32
    );
    assert_eq!(
        health.check(check("")).await.unwrap().into_inner().status,
        ServingStatus::NotServing as i32
    );
    assert_eq!(http_get(admin, "/ready").await.0, 503);
    assert_eq!(http_get(admin, "/live").await.0, 200);

    ready.cancel();
    wait_serving(grpc, ECHO).await;
    wait_serving(grpc, "").await;
    assert_eq!(http_get(admin, "/ready").await.0, 200);

    stop.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn reflection_lists_only_this_servers_api() {
    use photos_proto::testing::v1::echo_service_client::EchoServiceClient;
    use tokio_stream::StreamExt;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let server = spawn_echo(test_server_config()).await;
    let grpc = server.grpc;

    let mut reflection = ServerReflectionClient::new(channel(grpc).await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let Some(Ok(response)) = responses.next().await else {
        panic!("no reflection answer")
    };
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer")
    };
    let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
            ECHO
        ]
    );
    // And the service really answers.
    let mut echo = EchoServiceClient::connect(url(grpc)).await.unwrap();
    let answer = echo
        .echo(EchoRequest {
            message: "hi".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.message, "hi");
    server.stop().await;
}

#[tokio::test]
async fn drain_reports_not_serving_finishes_in_flight_calls_and_exits_within_grace() {
    let mut config = test_server_config();
    config.drain_delay_ms = 200;
    config.drain_grace_ms = 5_000;
    let grace = config.drain_grace();
    let server = spawn_echo(config).await;
    let grpc = server.grpc;

    // An open health watch, as a load balancer keeps.
    let mut health = HealthClient::new(channel(grpc).await);
    let mut watch = health
        .watch(HealthCheckRequest {
            service: ECHO.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        watch.message().await.unwrap().unwrap().status,
        ServingStatus::Serving as i32
    );

    // A slow call in flight when the shutdown signal arrives.
    let mut echo = client(grpc).await;
    let slow = tokio::spawn(async move {
        echo.echo(EchoRequest {
            message: "slow".into(),
            delay_ms: 1_500,
            ..Default::default()
        })
        .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await; // let the call reach the handler
    let signalled = tokio::time::Instant::now();
    server.signal_stop();

    assert_eq!(
        watch.message().await.unwrap().unwrap().status,
        ServingStatus::NotServing as i32,
        "health must turn NOT_SERVING first"
    );
    let answer = slow.await.unwrap().expect("the in-flight call completes");
    assert_eq!(answer.into_inner().message, "slow");

    // The open watch stream keeps a connection busy; the server still exits by the grace.
    tokio::time::timeout(grace + Duration::from_secs(2), server.join())
        .await
        .expect("the server exits within the drain grace period")
        .unwrap();
    assert!(signalled.elapsed() <= grace + Duration::from_secs(2));

    // Nothing listens any more.
    assert!(tokio::net::TcpStream::connect(grpc).await.is_err());
}

#[tokio::test]
async fn a_calls_deadline_is_honoured_and_reported() {
    let server = spawn_echo(test_server_config()).await;
    let grpc = server.grpc;

    // Through the platform's client: whichever side's timer fires first, the caller sees
    // DEADLINE_EXCEEDED.
    let mut echo = photos_proto::testing::v1::echo_service_client::EchoServiceClient::new(
        photos_runtime::client::Channel::connect_lazy(&photos_runtime::UpstreamConfig::new(url(
            grpc,
        )))
        .unwrap(),
    );
    let mut request = tonic::Request::new(EchoRequest {
        message: "x".into(),
        delay_ms: 2_000,
        ..Default::default()
    });
    request.set_timeout(Duration::from_millis(100));
    let status = echo.echo(request).await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");

    let mut request = tonic::Request::new(EchoRequest {
        message: "x".into(),
        ..Default::default()
    });
    request.set_timeout(Duration::from_millis(1_500));
    let seen = echo
        .echo(request)
        .await
        .unwrap()
        .into_inner()
        .remaining_deadline_ms;
    assert!(
        seen > 0 && seen <= 1_500,
        "handler saw a deadline of {seen} ms"
    );

    server.stop().await;
}

#[tokio::test]
async fn the_deadline_is_passed_on_to_the_next_hop() {
    let (a, b) = (
        spawn_echo(test_server_config()).await,
        spawn_echo(test_server_config()).await,
    );
    let (a_addr, b_addr) = (a.grpc, b.grpc);

    let mut echo = client(a_addr).await;
    let mut request = tonic::Request::new(EchoRequest {
        message: "hop".into(),
        delay_ms: 300,
        forward_to: url(b_addr),
    });
    request.set_timeout(Duration::from_millis(2_000));
    let seen = echo
        .echo(request)
        .await
        .unwrap()
        .into_inner()
        .remaining_deadline_ms;
    // B sees what is left after A slept 300 ms: not its own 30 s default, not the full 2 s.
    assert!(seen > 0 && seen <= 1_700, "second hop saw {seen} ms");

    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn over_the_concurrency_limit_calls_are_shed_but_health_still_answers() {
    let mut config = test_server_config();
    config.concurrency_limit = 1;
    let server = spawn_echo(config).await;
    let (grpc, admin) = (server.grpc, server.admin);

    let mut first = client(grpc).await;
    let slow = tokio::spawn(async move {
        first
            .echo(EchoRequest {
                message: "a".into(),
                delay_ms: 1_000,
                ..Default::default()
            })
            .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut second = client(grpc).await;
    let status = second
        .echo(EchoRequest {
            message: "b".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert!(
        status.message().contains("limit of 1"),
        "{}",
        status.message()
    );
    wait_serving(grpc, ECHO).await; // health bypasses the limit
    slow.await.unwrap().expect("the admitted call completes");

    let (code, metrics) = http_get(admin, "/metrics").await;
    assert_eq!(code, 200);
    assert!(
        metrics.contains("photos_grpc_server_shed_total{server=\"echo\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("photos_grpc_server_requests_total{server=\"echo\",service=\"photos.testing.v1.EchoService\",method=\"Echo\",code=\"0\"} 1"),
        "{metrics}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_dns_upstream_is_resolved_and_balanced_client_side() {
    use photos_proto::testing::v1::echo_service_client::EchoServiceClient;
    use photos_runtime::UpstreamConfig;
    use photos_runtime::client::Channel;

    let server = spawn_echo(test_server_config()).await;
    let grpc = server.grpc;

    // `localhost` may also resolve to ::1, where nothing listens: the balancer must route
    // around the dead address rather than fail.
    let mut upstream = UpstreamConfig::new(format!("dns://localhost:{}", grpc.port()));
    upstream.dns_refresh_ms = 100;
    let mut echo = EchoServiceClient::new(Channel::connect_lazy(&upstream).unwrap());
    for i in 0..5 {
        let answer = echo
            .echo(EchoRequest {
                message: format!("via dns {i}"),
                ..Default::default()
            })
            .await
            .expect("a call through the DNS-balanced channel succeeds");
        assert_eq!(answer.into_inner().message, format!("via dns {i}"));
    }
    server.stop().await;
}

#[tokio::test]
async fn a_call_to_an_unresolvable_upstream_fails_at_its_deadline_instead_of_hanging() {
    use photos_proto::testing::v1::echo_service_client::EchoServiceClient;
    use photos_runtime::UpstreamConfig;
    use photos_runtime::client::Channel;

    let mut upstream = UpstreamConfig::new("dns://no-such-host.invalid:50051");
    upstream.request_timeout_ms = 300;
    let mut echo = EchoServiceClient::new(Channel::connect_lazy(&upstream).unwrap());
    let status = echo
        .echo(EchoRequest::default())
        .await
        .expect_err("nothing can answer");
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
}
