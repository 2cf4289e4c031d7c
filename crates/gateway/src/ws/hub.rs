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
    pub nodes: Arc<super::nodes::Nodes>,
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
    pub fn new(cfg: WebSocketConfig, nodes: Arc<super::nodes::Nodes>) -> Hub {
        Hub {
            cfg,
            sessions: DashMap::new(),
            per_key: DashMap::new(),
            stopping: CancellationToken::new(),
            nodes,
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
        who: &Arc<Principal>,
        restore: Option<(String, u64)>,
    ) -> Result<Opened, TooManySessions> {
        let (id, first_seq, restored) = match restore {
            Some((id, first)) => (id, first, true),
            None => (sluice_service::ids::request_id(), 1, false),
        };
        // Two reconnects restoring one stored session at once: the second finds the
        // first's session and resumes it (one session, counted once).
        let entry = match self.sessions.entry(id.clone()) {
            dashmap::Entry::Occupied(e) if e.get().principal.key_ref == who.key_ref => {
                return Ok(Opened::Resumed(e.get().clone()));
            }
            dashmap::Entry::Occupied(_) => return Err(TooManySessions),
            dashmap::Entry::Vacant(v) => v,
        };
        {
            let mut held = self.per_key.entry(who.key_ref.clone()).or_insert(0);
            if *held >= self.cfg.max_sessions_per_key {
                return Err(TooManySessions);
            }
            *held += 1;
        }
        let session = Arc::new(Session::new(
            id,
            who.clone(),
            self.window(),
            first_seq,
            restored,
        ));
        entry.insert(session.clone());
        Ok(if restored {
            Opened::Restored(session)
        } else {
            Opened::New(session)
        })
    }

    /// The session's connection went away: unless a client resumes it within the grace,
    /// it ends (its calls are cancelled and settle). A stop does not cut the grace short:
    /// calls run on within the stop's own grace, and `stop` ends every session after.
    pub fn detached(self: &Arc<Self>, session: &Arc<Session>, generation: u64) {
        if !session.detach(generation) {
            return;
        }
        let hub = self.clone();
        let session = session.clone();
        let grace = self.cfg.resume_grace;
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            // Ended only if nobody attached since this detach (a later detach has its
            // own timer, and its own full grace).
            if session.end_if_away_since(generation) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(key: &str) -> Arc<Principal> {
        Arc::new(Principal {
            key_name: key.into(),
            key_id: None,
            key_ref: Arc::from(key),
            key_scope: Arc::from(format!("key:{key}")),
            user_id: None,
            allowed_models: None,
            limits: Default::default(),
        })
    }

    fn hub(max_sessions_per_key: usize) -> Hub {
        Hub::new(
            sluice_config::WebSocketConfig {
                heartbeat: std::time::Duration::from_secs(15),
                connect_timeout: std::time::Duration::from_secs(10),
                max_frame_bytes: 1 << 20,
                replay_events: 16,
                replay_bytes: 1 << 20,
                resume_grace: std::time::Duration::from_secs(60),
                max_sessions_per_key,
                max_pending_requests: 8,
                allowed_origins: Vec::new(),
            },
            Arc::default(),
        )
    }

    #[test]
    fn two_restores_of_one_session_make_one_session_counted_once() {
        let hub = hub(2);
        let who = principal("k");
        let first = hub.open(&who, Some(("s1".into(), 5))).unwrap();
        assert!(matches!(first, Opened::Restored(_)));
        let second = hub.open(&who, Some(("s1".into(), 5))).unwrap();
        let (Opened::Restored(a), Opened::Resumed(b)) = (first, second) else {
            panic!("the second restore resumes the first's session");
        };
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(hub.len(), 1);
        // The key still has room for one more: the restore was counted once.
        assert!(hub.open(&who, None).is_ok());
        assert!(hub.open(&who, None).is_err());
        // Another key cannot take the id.
        assert!(
            hub.open(&principal("other"), Some(("s1".into(), 1)))
                .is_err()
        );
    }

    #[test]
    fn an_ended_session_cannot_be_attached_and_frees_its_place() {
        let hub = hub(1);
        let who = principal("k");
        let Opened::New(s) = hub.open(&who, None).unwrap() else {
            panic!("a new session");
        };
        let a = s.attach(None).unwrap();
        assert!(s.detach(a.generation));
        assert!(s.end_if_away_since(a.generation));
        hub.end(&s);
        assert!(s.attach(None).is_none(), "ended: a resume starts over");
        assert!(hub.open(&who, None).is_ok(), "its place is free");
    }

    #[test]
    fn a_grace_timer_from_an_earlier_detach_does_not_end_a_session_resumed_since() {
        let hub = hub(1);
        let Opened::New(s) = hub.open(&principal("k"), None).unwrap() else {
            panic!("a new session");
        };
        let a = s.attach(None).unwrap();
        s.detach(a.generation);
        let b = s.attach(Some(0)).unwrap();
        s.detach(b.generation);
        assert!(
            !s.end_if_away_since(a.generation),
            "the first timer is stale"
        );
        assert!(s.end_if_away_since(b.generation));
    }
}
