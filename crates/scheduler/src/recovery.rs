//! At start: runs the store says are in flight were run by a process that is gone.

use std::sync::Arc;

use sluice_protocol::runs::{RunFailed, RunUsage, events, usd};
use sluice_service::ids::now_ms;
use sluice_store::runs::RunEventRow;

use crate::Inner;
use crate::error::RunFailure;

/// At start: runs the store says are in flight were run by a process that is gone. The
/// ledger is flushed first (it replayed its spill file at start), so what they spent is
/// read from it; each gets a final `run.failed` with code `interrupted`.
pub(crate) async fn recover(inner: &Arc<Inner>) -> Result<(), crate::SchedulerError> {
    let store = inner.service.store();
    if let Err(e) = inner.service.ledger().flush().await {
        tracing::warn!("ledger not flushed before interrupted runs were settled: {e}");
    }
    let err = |e: sluice_store::StoreError| crate::SchedulerError::Store(e.to_string());
    let ids = store.interrupt_runs(now_ms()).await.map_err(err)?;
    for id in &ids {
        let Some(row) = store.run(id).await.map_err(err)? else {
            continue;
        };
        let seq = store.run_last_event_seq(id).await.map_err(err)? + 1;
        let c = row.counters;
        let u = |v: i64| u64::try_from(v).unwrap_or(0);
        let failed = RunFailed {
            run_id: id.clone(),
            seq: u(seq),
            parent_run_id: row.parent_run_id.clone(),
            error: RunFailure::interrupted().error,
            breaker: None,
            usage: RunUsage {
                steps: u32::try_from(c.steps).unwrap_or(0),
                llm_calls: u(c.llm_calls),
                tool_calls: u(c.tool_calls),
                prompt_tokens: u(c.prompt_tokens),
                completion_tokens: u(c.completion_tokens),
                cost_usd: usd(u(c.cost_nanos)),
                total_cost_usd: usd(u(c.cost_nanos)),
            },
        };
        let event = RunEventRow {
            run_id: id.clone(),
            seq,
            event: events::FAILED.to_owned(),
            data: serde_json::to_value(&failed).unwrap_or(serde_json::Value::Null),
            created_at_ms: now_ms(),
        };
        store.append_run_events(&[event]).await.map_err(err)?;
    }
    if !ids.is_empty() {
        tracing::warn!(
            runs = ids.len(),
            "runs in flight when the gateway last stopped were marked interrupted"
        );
    }
    Ok(())
}
