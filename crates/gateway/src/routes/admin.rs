//! `/admin/*`: keys, spend reports, auth-profile state, spend breakers, schedules. Behind
//! `[server] admin_token`, its own bearer token; the whole API answers 404
//! `admin_disabled` when no token is set.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sluice_store::keys::{KeySpec, parse_span};
use sluice_store::spend::{GroupBy, SpendLine};
use subtle::ConstantTimeEq;

use sluice_service::ids::now_ms;

use crate::auth::bearer;
use crate::{ApiError, AppState};

pub fn routes() -> axum::Router<Arc<AppState>> {
    axum::Router::new()
        .route("/admin/keys", get(list_keys).post(create_key))
        .route("/admin/keys/{id}", get(show_key).delete(revoke_key))
        .route("/admin/spend", get(spend))
        .route("/admin/spend-breakers", get(spend_breakers))
        .route("/admin/groups", get(groups))
        .route("/admin/cache", get(cache_state).delete(cache_clear))
        .route(
            "/admin/spend-breakers/{key}/reset",
            axum::routing::post(reset_spend_breaker),
        )
        .route("/admin/breakers", get(breakers))
        .route(
            "/admin/providers/{target}/breaker/reset",
            post(reset_provider_breaker),
        )
        .route(
            "/admin/agents/{name}/breaker/reset",
            post(reset_agent_breaker),
        )
        .route("/admin/schedules", get(schedules))
        .route("/admin/schedules/{agent}/resume", post(resume_schedule))
        .route("/admin/auth-profiles", get(auth_profiles))
        .route(
            "/admin/auth-profiles/{provider}/reset",
            post(reset_profiles),
        )
}

/// Refuses a path parameter with control characters (400 naming it): such text is no id,
/// and it must not reach the log as it is.
fn plain_text(field: &str, value: &str) -> Result<(), ApiError> {
    if sluice_store::keys::has_control_chars(value) {
        return Err(ApiError::invalid(format!(
            "{field}: must not contain control characters"
        )));
    }
    Ok(())
}

/// Middleware: the admin token, compared in constant time.
pub async fn require_admin(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let Some(expected) = state.admin_token else {
        return Err(ApiError::AdminDisabled);
    };
    let token = bearer(&req)?.ok_or(ApiError::AdminUnauthorized)?;
    let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    if !bool::from(presented.ct_eq(&expected)) {
        return Err(ApiError::AdminUnauthorized);
    }
    Ok(next.run(req).await)
}

async fn list_keys(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let keys = state.service.store().list_keys().await?;
    Ok(Json(json!({"object": "list", "data": keys})))
}

async fn create_key(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let spec: KeySpec = super::body::parse(body, state.max_body_bytes)?;
    let now = now_ms();
    let problems = spec.problems(now);
    if !problems.is_empty() {
        return Err(ApiError::invalid(problems.join("; ")));
    }
    let (secret, key) = spec.issue(now);
    state.service.store().insert_key(&key).await?;
    // This instance knows the key at once; the others within their refresh interval.
    if let Err(e) = state.service.keys().refresh(state.service.store()).await {
        tracing::warn!("key created but not reloaded yet: {e}");
    }
    tracing::info!(key_id = %key.id, name = %key.name, "API key created");
    let body =
        json!({"key": key, "secret": secret, "note": "the secret is shown once; store it now"});
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

async fn show_key(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    plain_text("id", &id)?;
    let key = state
        .service
        .store()
        .get_key(&id)
        .await?
        .ok_or_else(|| ApiError::NotFoundEntity(format!("no key `{id}`")))?;
    Ok(Json(json!(key)))
}

async fn revoke_key(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    plain_text("id", &id)?;
    let Some(key) = state.service.store().get_key(&id).await? else {
        return Err(ApiError::NotFoundEntity(format!("no key `{id}`")));
    };
    let revoked = state.service.store().revoke_key(&id, now_ms()).await?;
    if let Err(e) = state.service.keys().refresh(state.service.store()).await {
        tracing::warn!("key revoked but not reloaded yet: {e}");
    }
    if revoked {
        tracing::info!(key_id = %key.id, "API key revoked");
    }
    Ok(Json(
        json!({"id": id, "revoked": true, "already_revoked": !revoked}),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpendQuery {
    by: Option<String>,
    /// A span back from now: `7d`, `24h`.
    since: Option<String>,
    from_ms: Option<i64>,
    to_ms: Option<i64>,
}

async fn spend(
    State(state): State<Arc<AppState>>,
    query: Result<Query<SpendQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::invalid(e.body_text()))?;
    let by_name = q.by.as_deref().unwrap_or("model");
    let by = GroupBy::parse(by_name).ok_or_else(|| {
        ApiError::invalid(format!(
            "by: `{by_name}` is not one of key, user, agent, run, model, provider, day, channel, channel_user, session"
        ))
    })?;
    let now = now_ms();
    let from = match (&q.since, q.from_ms) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid("give since or from_ms, not both"));
        }
        (Some(s), None) => {
            now - parse_span(s).ok_or_else(|| {
                ApiError::invalid(format!("since: `{s}` is not a span like 7d, 24h or 30m"))
            })?
        }
        (None, Some(f)) => f,
        (None, None) => now - 7 * 86_400_000,
    };
    let to = q.to_ms.unwrap_or(now + 1);
    if to <= from {
        return Err(ApiError::invalid(
            "the range is empty: to_ms must be after the start",
        ));
    }
    let rows = state.service.store().spend_report(by, from, to).await?;
    let wants_csv = headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/csv"));
    if wants_csv {
        let mut resp = csv(by_name, &rows).into_response();
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/csv; charset=utf-8"),
        );
        return Ok(resp);
    }
    Ok(Json(json!({"by": by_name, "from_ms": from, "to_ms": to, "data": rows})).into_response())
}

/// The report as CSV (RFC 4180: fields with a comma, quote or newline are quoted).
pub fn csv(by: &str, rows: &[SpendLine]) -> String {
    let mut out = format!(
        "{by},calls,prompt_tokens,completion_tokens,cached_tokens,cost_usd,estimated_calls,saved_usd\r\n"
    );
    for r in rows {
        let group = if r.group.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", r.group.replace('"', "\"\""))
        } else {
            r.group.clone()
        };
        out.push_str(&format!(
            "{group},{},{},{},{},{},{},{}\r\n",
            r.calls,
            r.prompt_tokens,
            r.completion_tokens,
            r.cached_tokens,
            usd(r.cost_nanos),
            r.estimated_calls,
            usd(r.saved_nanos)
        ));
    }
    out
}

/// Nano-dollars as a decimal USD string, exactly.
pub fn usd(nanos: i64) -> String {
    let sign = if nanos < 0 { "-" } else { "" };
    format!("{sign}{}", sluice_protocol::runs::usd(nanos.unsigned_abs()))
}

async fn auth_profiles(State(state): State<Arc<AppState>>) -> Json<Value> {
    let router = &state.service.snapshot().router;
    let data: Vec<Value> = router
        .provider_ids()
        .into_iter()
        .map(|provider| {
            let keys: Vec<Value> = router
                .key_states(&provider)
                .into_iter()
                .map(|(id, st, left, failures)| {
                    json!({"profile_id": id, "state": st.as_str(), "retry_in_ms": left.as_millis() as u64, "failures": failures})
                })
                .collect();
            json!({"provider": provider, "keys": keys})
        })
        .collect();
    Json(json!({"object": "list", "data": data}))
}

async fn reset_profiles(
    State(state): State<Arc<AppState>>,
    Path(provider): Path<String>,
) -> Result<Json<Value>, ApiError> {
    plain_text("provider", &provider)?;
    if !state.service.snapshot().router.reset_keys(&provider) {
        return Err(ApiError::NotFoundEntity(format!(
            "no provider `{provider}`"
        )));
    }
    tracing::info!(%provider, "auth profiles reset by an operator");
    Ok(Json(json!({"provider": provider, "reset": true})))
}

/// Balanced groups: each target's weight, in-flight calls, latency averages, headroom and
/// breaker state (this instance's view).
async fn groups(State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({"data": state.service.snapshot().router.groups()}))
}

/// The response cache of this instance: entries, bytes, whether semantic lookups run.
async fn cache_state(State(state): State<Arc<AppState>>) -> Json<Value> {
    let c = state.service.cache();
    Json(json!({"entries": c.len(), "bytes": c.bytes(), "semantic": c.semantic()}))
}

/// Empties this instance's response cache (after a model or prompt change, say).
async fn cache_clear(State(state): State<Arc<AppState>>) -> Json<Value> {
    let removed = state.service.cache().clear();
    tracing::info!(removed, "response cache cleared by the admin API");
    Json(json!({"removed": removed}))
}

/// Keys stopped by the spend-velocity breaker (this instance's view, refreshed from the
/// store every `key_refresh_ms`).
async fn spend_breakers(State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({"data": state.service.spend_breaker().open()}))
}

/// Closes a key's spend breaker (a stored key's id, or `config:NAME`) on every instance.
async fn reset_spend_breaker(
    State(state): State<Arc<AppState>>,
    Path(key): Path<String>,
) -> Result<Json<Value>, ApiError> {
    plain_text("key", &key)?;
    if !state
        .service
        .spend_breaker()
        .reset(state.service.store(), &key)
        .await?
    {
        return Err(ApiError::NotFoundEntity(format!(
            "the spend breaker of `{key}` is not open"
        )));
    }
    tracing::info!(%key, "spend breaker reset by an operator");
    Ok(Json(json!({"key": key, "reset": true})))
}

/// Every breaker that is not closed: providers' (this instance's view), keys' spend
/// breakers and agents' (both as every instance shares them through the store).
async fn breakers(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let providers: Vec<Value> = state
        .service
        .snapshot()
        .router
        .open_breakers()
        .into_iter()
        .map(|(target, s)| json!({"target": target, "state": s}))
        .collect();
    let agents = state.scheduler.agent_breakers().await?;
    Ok(Json(json!({
        "providers": providers,
        "keys": state.service.spend_breaker().open(),
        "agents": agents,
    })))
}

/// Closes a chain entry's circuit breaker (`provider:model`) on this instance.
async fn reset_provider_breaker(
    State(state): State<Arc<AppState>>,
    Path(target): Path<String>,
) -> Result<Json<Value>, ApiError> {
    plain_text("target", &target)?;
    if !state.service.snapshot().router.reset_breaker(&target) {
        return Err(ApiError::NotFoundEntity(format!(
            "the breaker of `{target}` is not open on this instance"
        )));
    }
    tracing::info!(%target, "provider breaker reset by an operator");
    Ok(Json(json!({"target": target, "reset": true})))
}

/// Closes an agent's breaker on every instance (within its refresh).
async fn reset_agent_breaker(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    plain_text("name", &name)?;
    if !state.scheduler.reset_agent_breaker(&name).await? {
        return Err(ApiError::NotFoundEntity(format!(
            "the breaker of agent `{name}` is not open"
        )));
    }
    tracing::info!(agent = %name, "agent breaker reset by an operator");
    Ok(Json(json!({"agent": name, "reset": true})))
}

/// Every schedule of the config: its pattern, next fire, and whether it is paused and why
/// (the state every instance shares, from the store).
async fn schedules(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({"data": state.scheduler.schedules().await?})))
}

/// Resumes an agent's paused schedule on every instance: its next fire starts a run again.
/// A schedule that was not paused is left as it is (`"resumed": false`).
async fn resume_schedule(
    State(state): State<Arc<AppState>>,
    Path(agent): Path<String>,
) -> Result<Json<Value>, ApiError> {
    plain_text("agent", &agent)?;
    let Some(done) = state.scheduler.resume_schedule(&agent).await? else {
        return Err(ApiError::NotFoundEntity(format!(
            "agent `{agent}` has no schedule"
        )));
    };
    Ok(Json(json!(done)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usd_is_exact() {
        assert_eq!(usd(1_500), "0.000001500");
        assert_eq!(usd(12_345_000_000), "12.345000000");
        assert_eq!(usd(-5), "-0.000000005");
    }

    #[test]
    fn csv_quotes_awkward_groups() {
        let line = SpendLine {
            group: "a,\"b\"".into(),
            calls: 1,
            prompt_tokens: 2,
            completion_tokens: 3,
            cached_tokens: 0,
            cost_nanos: 0,
            saved_nanos: 2_000,
            estimated_calls: 0,
        };
        let out = csv("key", &[line]);
        assert!(
            out.contains("\"a,\"\"b\"\"\",1,2,3,0,0.000000000,0,0.000002000\r\n"),
            "{out}"
        );
    }
}
