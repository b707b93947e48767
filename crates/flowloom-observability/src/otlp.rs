//! OpenTelemetry export over OTLP/HTTP (protobuf): traces through `tracing-opentelemetry`,
//! metrics through the global meter provider.

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Subscriber;
use tracing_subscriber::Layer;
use tracing_subscriber::registry::LookupSpan;

use crate::{InitError, ObservabilityConfig, semconv};

/// The tracer and meter providers; shut down by the guard.
#[derive(Debug)]
pub(crate) struct Providers {
    tracer: SdkTracerProvider,
    meter: SdkMeterProvider,
}

fn signal_url(endpoint: &str, path: &str) -> String {
    format!("{}/{path}", endpoint.trim_end_matches('/'))
}

impl Providers {
    /// Builds both exporters against `endpoint` (the OTLP/HTTP base URL, e.g.
    /// `http://127.0.0.1:4318`) and installs the meter provider globally.
    pub(crate) fn new(config: &ObservabilityConfig, endpoint: &str) -> Result<Self, InitError> {
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err(InitError::Config {
                setting: "OTEL_EXPORTER_OTLP_ENDPOINT".into(),
                found: format!("{endpoint:?}"),
                expected: "an http:// or https:// base URL such as http://127.0.0.1:4318".into(),
            });
        }
        let err = |e: &dyn std::fmt::Display| InitError::Otlp {
            endpoint: endpoint.to_owned(),
            message: e.to_string(),
        };
        let resource = Resource::builder()
            .with_service_name(config.service_name.clone())
            .build();
        let spans = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(signal_url(endpoint, "v1/traces"))
            .build()
            .map_err(|e| err(&e))?;
        let tracer = SdkTracerProvider::builder()
            .with_batch_exporter(spans)
            .with_resource(resource.clone())
            .build();
        let metrics = opentelemetry_otlp::MetricExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(signal_url(endpoint, "v1/metrics"))
            .build()
            .map_err(|e| err(&e))?;
        let reader = PeriodicReader::builder(metrics)
            .with_interval(Duration::from_secs(config.metrics_interval_secs.max(1)))
            .build();
        let meter = SdkMeterProvider::builder()
            .with_reader(reader)
            .with_resource(resource)
            .build();
        opentelemetry::global::set_meter_provider(meter.clone());
        Ok(Self { tracer, meter })
    }

    /// The `tracing-opentelemetry` layer exporting spans at the configured level.
    pub(crate) fn layer<S>(
        &self,
        config: &ObservabilityConfig,
    ) -> Result<Box<dyn Layer<S> + Send + Sync + 'static>, InitError>
    where
        S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
    {
        let tracer = self.tracer.tracer(semconv::INSTRUMENTATION_SCOPE);
        Ok(tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(config.env_filter()?)
            .boxed())
    }

    pub(crate) fn flush(&self) -> Result<(), InitError> {
        let t = self.tracer.force_flush();
        let m = self.meter.force_flush();
        t.and(m).map_err(|e| InitError::Shutdown(e.to_string()))
    }

    pub(crate) fn shutdown(self) -> Result<(), InitError> {
        let t = self.tracer.shutdown();
        let m = self.meter.shutdown();
        t.and(m).map_err(|e| InitError::Shutdown(e.to_string()))
    }
}
