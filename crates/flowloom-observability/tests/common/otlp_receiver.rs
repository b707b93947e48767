//! An OTLP/HTTP receiver on 127.0.0.1 for tests: it keeps every trace and metrics export it
//! is sent. Shared by this crate's OTLP test and the workspace's engine-level one (which
//! includes this file by path).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // test code, not every test uses all

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

/// What the receiver was sent.
#[derive(Clone, Default)]
pub struct Received {
    traces: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
    metrics: Arc<Mutex<Vec<ExportMetricsServiceRequest>>>,
}

/// A running receiver: its endpoint (`http://127.0.0.1:PORT`) and what it received.
pub struct Receiver {
    pub endpoint: String,
    pub received: Received,
}

impl Receiver {
    /// Starts a receiver on a free port of 127.0.0.1, serving `/v1/traces` and `/v1/metrics`.
    pub async fn start() -> Self {
        let received = Received::default();
        let app = Router::new()
            .route("/v1/traces", post(traces))
            .route("/v1/metrics", post(metrics))
            .with_state(received.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            endpoint: format!("http://{addr}"),
            received,
        }
    }

    /// Every span of every trace export, in arrival order.
    pub fn spans(&self) -> Vec<Span> {
        self.received
            .traces
            .lock()
            .unwrap()
            .iter()
            .flat_map(|r| r.resource_spans.iter())
            .flat_map(|rs| rs.scope_spans.iter())
            .flat_map(|ss| ss.spans.iter().cloned())
            .collect()
    }

    /// The name of every metric of every metrics export.
    pub fn metric_names(&self) -> Vec<String> {
        self.received
            .metrics
            .lock()
            .unwrap()
            .iter()
            .flat_map(|r| r.resource_metrics.iter())
            .flat_map(|rm| rm.scope_metrics.iter())
            .flat_map(|sm| sm.metrics.iter().map(|m| m.name.clone()))
            .collect()
    }
}

async fn traces(State(r): State<Received>, body: Bytes) -> &'static str {
    let req = ExportTraceServiceRequest::decode(body).expect("a protobuf trace export");
    r.traces.lock().unwrap().push(req);
    ""
}

async fn metrics(State(r): State<Received>, body: Bytes) -> &'static str {
    let req = ExportMetricsServiceRequest::decode(body).expect("a protobuf metrics export");
    r.metrics.lock().unwrap().push(req);
    ""
}

/// An attribute value as text (strings as they are, numbers and booleans printed).
pub fn text(v: &Option<AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        other => format!("{other:?}"),
    }
}

/// A span's attribute `key` as text.
pub fn attr(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .map(|kv| text(&kv.value))
}
