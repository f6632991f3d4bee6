//! Carrying a job's trace across the queue: the W3C context of the span that started it is
//! stored with the job, and the span that runs it is parented on that context, so the job's
//! work appears in the trace of the call that asked for it, whichever process runs it.

use http::{HeaderMap, HeaderValue};

use crate::model::TraceContext;

/// The context of `span`, empty when it is not part of a sampled trace.
pub fn capture(span: &tracing::Span) -> TraceContext {
    let mut headers = HeaderMap::new();
    photos_runtime::propagation::inject(span, &mut headers);
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    TraceContext {
        traceparent: get("traceparent"),
        tracestate: get("tracestate"),
    }
}

/// Makes the stored context the parent of `span` (nothing happens for an empty context).
pub fn restore(context: &TraceContext, span: &tracing::Span) {
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("traceparent", &context.traceparent),
        ("tracestate", &context.tracestate),
    ] {
        if let Ok(v) = HeaderValue::from_str(value)
            && !value.is_empty()
        {
            headers.insert(name, v);
        }
    }
    photos_runtime::propagation::extract_into(&headers, span);
}
