//! `GET /metrics`: the Prometheus text format. The service and the gateway count through
//! the `metrics` facade (a no-op until a recorder is installed); this module installs the
//! Prometheus recorder once per process, the first time a gateway that serves metrics
//! starts, and renders it on the gateway's own port (no second listener to secure).

use std::sync::{Arc, OnceLock};

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::{ApiError, AppState};

/// The process's recorder, `None` when another recorder was installed first (an
/// embedding program's own): the gateway then serves no `/metrics` and says so.
pub(crate) fn handle() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| match PrometheusBuilder::new().install_recorder() {
            Ok(handle) => {
                describe();
                Some(handle)
            }
            Err(e) => {
                tracing::warn!(error = %e, "metrics recorder not installed: /metrics is off");
                None
            }
        })
        .as_ref()
}

/// Help lines for what the gateway counts.
fn describe() {
    metrics::describe_counter!(
        "sluice_guard_screened_total",
        "Chat calls whose prompts the guard screened (its action not off)"
    );
    metrics::describe_counter!(
        "sluice_guard_prompts_total",
        "Chat calls at or over the guard's threshold, by verdict (blocked, flagged, logged)"
    );
    metrics::describe_counter!(
        "sluice_guard_detections_total",
        "Detectors that fired on calls at or over the guard's threshold, by detector and verdict"
    );
    metrics::describe_counter!(
        "sluice_cache_lookups_total",
        "Chat calls under an alias that caches, by result (hit, semantic-hit, miss, bypass)"
    );
    metrics::describe_counter!(
        "sluice_cache_coalesced_total",
        "Chat calls that waited for an identical call in flight and were answered with its answer"
    );
    metrics::describe_gauge!(
        "sluice_cache_entries",
        "Answers in the response cache after the last store"
    );
    metrics::describe_counter!(
        "sluice_guard_output_findings_total",
        "Canary leaks, secrets and PII found in answers, by kind and action (redacted, blocked)"
    );
}

pub(crate) async fn render(State(state): State<Arc<AppState>>) -> Response {
    match state.metrics {
        Some(handle) => (
            [(
                http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            handle.render(),
        )
            .into_response(),
        None => ApiError::NotFound("/metrics".to_owned()).into_response(),
    }
}
