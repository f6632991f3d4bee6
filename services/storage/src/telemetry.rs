//! What every S3 call did, seen from inside the SDK: an interceptor that opens a client span
//! per operation (in the caller's trace) and counts operations, retries and bytes for
//! `/metrics`. An interceptor rather than a wrapper at each call site, so a new call cannot be
//! forgotten.

use aws_sdk_s3::config::interceptors::{
    BeforeSerializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
    FinalizerInterceptorContextRef,
};
use aws_sdk_s3::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::retries::RequestAttempts;
use aws_smithy_types::config_bag::{Storable, StoreReplace};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationOnly {
    operation: String,
}

/// Counters shared by every S3 client of one server. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct S3Telemetry {
    operations: Family<OperationLabels, Counter>,
    retries: Family<OperationOnly, Counter>,
    bytes_sent: Counter,
    bytes_received: Counter,
}

impl S3Telemetry {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "storage_s3_operations",
            "S3 operations, by operation and outcome",
            self.operations.clone(),
        );
        registry.register(
            "storage_s3_retries",
            "S3 attempts beyond the first (retried after a throttle, 5xx or timeout)",
            self.retries.clone(),
        );
        registry.register(
            "storage_s3_bytes_sent",
            "Request body bytes sent to S3 (every attempt)",
            self.bytes_sent.clone(),
        );
        registry.register(
            "storage_s3_bytes_received",
            "Response body bytes announced by S3 (Content-Length)",
            self.bytes_received.clone(),
        );
    }
}

/// The operation's span, kept in the call's config bag so it closes when the call ends.
#[derive(Debug, Clone)]
struct CallSpan(tracing::Span);

impl Storable for CallSpan {
    type Storer = StoreReplace<Self>;
}

fn operation(cfg: &ConfigBag) -> String {
    cfg.load::<Metadata>()
        .map_or_else(|| "unknown".to_owned(), |m| m.name().to_owned())
}

impl Intercept for S3Telemetry {
    fn name(&self) -> &'static str {
        "photos-storage-telemetry"
    }

    // Not `read_before_execution`: the operation's metadata is in the bag only from here on.
    fn read_before_serialization(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let operation = operation(cfg);
        let span = tracing::info_span!(
            "s3",
            otel.name = %format!("S3 {operation}"),
            otel.kind = "client",
            rpc.system = "aws-api",
            rpc.service = "S3",
            rpc.method = %operation,
            aws.s3.attempts = tracing::field::Empty,
            http.request.body.size = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        cfg.interceptor_state().store_put(CallSpan(span));
        Ok(())
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let attempts = cfg.load::<RequestAttempts>().map_or(1, |a| a.attempts());
        if attempts > 1 {
            self.retries
                .get_or_create(&OperationOnly {
                    operation: operation(cfg),
                })
                .inc();
        }
        let sent = context.request().body().content_length().unwrap_or(0);
        self.bytes_sent.inc_by(sent);
        if let Some(CallSpan(span)) = cfg.load::<CallSpan>() {
            span.record("aws.s3.attempts", attempts);
            span.record("http.request.body.size", sent);
        }
        Ok(())
    }

    fn read_after_execution(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let failed = matches!(context.output_or_error(), Some(Err(_)) | None);
        if let Some(length) = context
            .response()
            .and_then(|r| r.headers().get("content-length"))
            .and_then(|v| v.parse::<u64>().ok())
        {
            self.bytes_received.inc_by(length);
        }
        self.operations
            .get_or_create(&OperationLabels {
                operation: operation(cfg),
                outcome: if failed { "error" } else { "ok" },
            })
            .inc();
        if failed && let Some(CallSpan(span)) = cfg.load::<CallSpan>() {
            span.record("otel.status_code", "ERROR");
        }
        Ok(())
    }
}
