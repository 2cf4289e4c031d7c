//! Agent runs over the WebSocket: `agent.run` starts one, `run.subscribe` follows one
//! (replayed from the store from any seq, then live), `run.cancel` stops one. A run's
//! events reach the session as `run.*` events, pumped by a task of the session's (not
//! the connection's): a run goes on, and its events wait in the session's window, while
//! the client is away. A client that lost events to the window subscribes again from
//! the last run seq it saw; every event is kept in the store, so nothing is lost.

use std::sync::Arc;

use serde_json::Value;
use sluice_protocol::runs::{AgentRun, RunAccepted, RunRef, RunSubscribe};
use sluice_protocol::{ErrorBody, codes};
use sluice_scheduler::{Follow, Origin, Submission};

use super::connection::{Conn, error};
use super::methods::{StreamSlot, params_of};
use super::session::Session;

pub(super) async fn run(conn: &Arc<Conn>, raw: Value) -> Result<Value, ErrorBody> {
    let p: AgentRun = params_of(raw)?;
    // A place for the run's follower among the session's streams, before anything starts.
    let slot = slot(conn)?;
    let accepted = conn
        .state
        .scheduler
        .submit(
            &conn.principal,
            Submission {
                agent: p.agent,
                input: p.input,
                session_key: p.session_key,
                idempotency_key: p.idempotency_key,
                origin: Origin::Ws,
                channel: None,
            },
        )
        .await
        .map_err(|e| e.body())?;
    let (_, follow) = conn
        .state
        .scheduler
        .follow(&conn.principal, &accepted.run_id, 0)
        .await
        .map_err(|e| e.body())?;
    tokio::spawn(pump(conn.session.clone(), follow, slot));
    to_value(&RunAccepted {
        run_id: accepted.run_id,
        status: accepted.status,
        existing: accepted.existing,
    })
}

pub(super) async fn subscribe(conn: &Arc<Conn>, raw: Value) -> Result<Value, ErrorBody> {
    let p: RunSubscribe = params_of(raw)?;
    let slot = slot(conn)?;
    let (status, follow) = conn
        .state
        .scheduler
        .follow(&conn.principal, &p.run_id, p.after_seq.unwrap_or(0))
        .await
        .map_err(|e| e.body())?;
    tokio::spawn(pump(conn.session.clone(), follow, slot));
    to_value(&status)
}

pub(super) async fn cancel(conn: &Arc<Conn>, raw: Value) -> Result<Value, ErrorBody> {
    let p: RunRef = params_of(raw)?;
    let status = conn
        .state
        .scheduler
        .cancel(&conn.principal, &p.run_id)
        .await
        .map_err(|e| e.body())?;
    to_value(&status)
}

fn slot(conn: &Arc<Conn>) -> Result<StreamSlot, ErrorBody> {
    StreamSlot::take(&conn.session, conn.hub.cfg.max_pending_requests).ok_or_else(|| ErrorBody {
        retryable: true,
        ..error(
            codes::TOO_MANY_PENDING,
            "too many calls and runs streaming in this session; wait for one to end",
        )
    })
}

fn to_value<T: serde::Serialize>(v: &T) -> Result<Value, ErrorBody> {
    serde_json::to_value(v).map_err(|e| error(codes::INTERNAL, &e.to_string()))
}

/// The run's events into the session's, until the run ends or the session does.
async fn pump(session: Arc<Session>, mut follow: Follow, _slot: StreamSlot) {
    loop {
        let next = tokio::select! {
            () = session.ended.cancelled() => return,
            next = follow.next() => next,
        };
        let Some(e) = next else { return };
        session.emit(e.event, Value::clone(&e.data));
    }
}
