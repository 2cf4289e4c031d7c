//! The sessions of this gateway: found by id on resume, counted per key, ended when their
//! client stays away past the resume grace, and told to reconnect when the gateway stops.

use std::sync::Arc;

use dashmap::DashMap;
use sluice_config::WebSocketConfig;
use sluice_service::Principal;
use tokio_util::sync::CancellationToken;

use super::session::{Session, Window};

pub struct Hub {
    pub cfg: WebSocketConfig,
    sessions: DashMap<String, Arc<Session>>,
    /// Sessions held per key (attached or waiting for a resume).
    per_key: DashMap<Arc<str>, usize>,
    /// Cancelled when the gateway stops: every connection closes with `1012`.
    pub stopping: CancellationToken,
    /// The tool nodes connected.
    pub nodes: super::nodes::Nodes,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("sessions", &self.sessions.len())
            .finish()
    }
}

/// How a session was found for a connection.
pub enum Opened {
    New(Arc<Session>),
    /// Continued from memory: the window is intact.
    Resumed(Arc<Session>),
    /// Continued from the store after the session left memory (a restart, or the grace
    /// passed): its events are gone, its history is not.
    Restored(Arc<Session>),
}

#[derive(Debug)]
pub struct TooManySessions;

impl Hub {
    pub fn new(cfg: WebSocketConfig) -> Hub {
        Hub {
            cfg,
            sessions: DashMap::new(),
            per_key: DashMap::new(),
            stopping: CancellationToken::new(),
            nodes: super::nodes::Nodes::default(),
        }
    }

    fn window(&self) -> Window {
        Window {
            events: self.cfg.replay_events,
            bytes: self.cfg.replay_bytes,
        }
    }

    /// The session to resume, if it is in memory and belongs to the principal's key.
    pub fn resumable(&self, id: &str, who: &Principal) -> Option<Arc<Session>> {
        self.sessions
            .get(id)
            .map(|s| s.clone())
            .filter(|s| s.principal.key_ref == who.key_ref)
    }

    /// Opens a session for `who`: `restore` names a stored session to continue (events
    /// numbered from `first_seq`), else a new one with a fresh id.
    pub fn open(
        &self,
        who: &Principal,
        restore: Option<(String, u64)>,
    ) -> Result<Opened, TooManySessions> {
        {
            let mut held = self.per_key.entry(who.key_ref.clone()).or_insert(0);
            if *held >= self.cfg.max_sessions_per_key {
                return Err(TooManySessions);
            }
            *held += 1;
        }
        let (id, first_seq, restored) = match restore {
            Some((id, first)) => (id, first, true),
            None => (sluice_service::ids::request_id(), 1, false),
        };
        let session = Arc::new(Session::new(
            id.clone(),
            who.clone(),
            self.window(),
            first_seq,
        ));
        self.sessions.insert(id, session.clone());
        Ok(if restored {
            Opened::Restored(session)
        } else {
            Opened::New(session)
        })
    }

    /// The session's connection went away: unless a client resumes it within the grace,
    /// it ends (its calls are cancelled and settle).
    pub fn detached(self: &Arc<Self>, session: &Arc<Session>, generation: u64) {
        if !session.detach(generation) {
            return;
        }
        let hub = self.clone();
        let session = session.clone();
        let grace = self.cfg.resume_grace;
        tokio::spawn(async move {
            tokio::select! {
                () = tokio::time::sleep(grace) => {}
                () = hub.stopping.cancelled() => {}
            }
            if session.is_detached() {
                hub.end(&session);
            }
        });
    }

    /// Ends a session: its calls stop, it leaves memory and its key's count.
    pub fn end(&self, session: &Arc<Session>) {
        if self
            .sessions
            .remove_if(&session.id, |_, s| Arc::ptr_eq(s, session))
            .is_none()
        {
            return;
        }
        session.ended.cancel();
        if let Some(mut n) = self.per_key.get_mut(&session.principal.key_ref) {
            *n = n.saturating_sub(1);
        }
        self.per_key
            .remove_if(&session.principal.key_ref, |_, n| *n == 0);
        tracing::debug!(session = %session.id, "session ended");
    }

    /// The gateway stops: connections close with `1012` (reconnect), sessions end.
    pub fn stop(&self) {
        self.stopping.cancel();
        let all: Vec<Arc<Session>> = self.sessions.iter().map(|s| s.clone()).collect();
        for s in all {
            self.end(&s);
        }
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }
}
