//! A job's spans join the trace of the call that started it, exported to a real OTLP receiver.
//! (Its own test binary: telemetry is process-global.)

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use photos_jobs::*;
use photos_runtime::TelemetryConfig;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_spans_continue_the_starting_trace() {
    let mut receiver = photos_testkit::otlp::start().await.unwrap();
    let telemetry = photos_runtime::telemetry::init(
        "jobs-test",
        &TelemetryConfig {
            otlp_endpoint: receiver.endpoint(),
            ..TelemetryConfig::default()
        },
    )
    .unwrap();
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller = "00f067aa0ba902b7";

    // What a StartJob handler does: capture the context of the span it runs in.
    let handler = tracing::info_span!("start job");
    let incoming = TraceContext {
        traceparent: format!("00-{trace_id}-{caller}-01"),
        tracestate: String::new(),
    };
    photos_jobs::trace::restore(&incoming, &handler);
    let captured = photos_jobs::trace::capture(&handler);
    assert_eq!(captured.trace_id(), Some(trace_id));
    assert_ne!(
        captured.traceparent, incoming.traceparent,
        "the handler's own span id"
    );

    let t = store(Backend::Sqlite).await;
    let s = t.store.clone();
    let counts = Arc::new(Counts::default());
    let runner = Runner::new(s.clone(), runner_config("w", 1_000))
        .register("count", Arc::new(CountingExecutor::new(items(2), counts)));
    let stop = CancellationToken::new();
    let task = tokio::spawn(runner.run(stop.clone()));
    let (job, _) = s
        .create(&NewJob {
            trace: captured.clone(),
            ..new_job("count")
        })
        .await
        .unwrap();
    wait_job(&s, job.id, "finished", |j| j.state.is_final()).await;
    stop.cancel();
    task.await.unwrap();
    drop(handler);

    telemetry.flush();
    let spans = receiver.exported_spans(4, Duration::from_secs(10)).await;
    let in_trace: Vec<_> = spans.iter().filter(|s| s.trace_id == trace_id).collect();
    let job_span = in_trace
        .iter()
        .find(|s| s.name == "job count")
        .unwrap_or_else(|| panic!("no job span in the trace: {spans:#?}"));
    let handler_span_id = captured.traceparent.split('-').nth(2).unwrap();
    assert_eq!(
        job_span.parent_span_id, handler_span_id,
        "the job span is a child of the span that started it"
    );
    let items: Vec<_> = in_trace.iter().filter(|s| s.name == "job item").collect();
    assert_eq!(items.len(), 2, "{in_trace:#?}");
    for item in items {
        assert_eq!(item.parent_span_id, job_span.span_id);
    }
    telemetry.shutdown();
}
