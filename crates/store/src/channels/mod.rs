//! Chat channels (Slack, Telegram, WhatsApp): the outbox of replies to accepted messages
//! (`channel_deliveries` and their `channel_delivery_parts`, in `deliveries.rs`) and who
//! may talk to a `pairing` channel (`channel_pairings`, in `pairings.rs`).
//!
//! Guarantees:
//! - An acknowledged message is answered, and a retried one is not answered twice: its
//!   `webhook_seen` row and its delivery are written in one transaction
//!   ([`Store::accept_message`]), and of any number of concurrent accepts of one event id
//!   or one message key, on any instance, exactly one is [`Accepted::New`].
//! - Every state change of a delivery or of a part names the prior states it comes from
//!   and is refused (`false`, nothing written) from any other. The outbox's "never twice"
//!   rests on this: of two tasks that both think they own a step, one loses, and an
//!   `uncertain` row is sent again only by an operator's forced retry.
//! - A pairing request and its notice are written in one transaction, and pairing
//!   requests are taken one at a time, so `max_pending` holds under concurrent requests
//!   and one user never holds two codes.
//!
//! Ids, codes, texts and times are the caller's, as everywhere in the store.

mod deliveries;
mod pairings;

use sqlx::AnyConnection;

use crate::{Store, StoreError};

/// A delivery's states. Terminal: sent, failed; `uncertain` waits for an operator.
pub mod state {
    /// Acknowledged; its run not yet submitted.
    pub const ACCEPTED: &str = "accepted";
    /// Its run submitted (`run_id` set).
    pub const RUNNING: &str = "running";
    /// `text` is the reply; nothing or part of it sent.
    pub const READY: &str = "ready";
    pub const SENT: &str = "sent";
    pub const FAILED: &str = "failed";
    /// A send whose outcome is unknown; never sent again without an operator.
    pub const UNCERTAIN: &str = "uncertain";
}

/// A delivery part's states: Slack and Telegram go posting → posted → final; WhatsApp
/// (and the fallback when an edit is impossible) goes sending → sent | uncertain.
pub mod part_state {
    pub const POSTING: &str = "posting";
    pub const POSTED: &str = "posted";
    pub const FINAL: &str = "final";
    pub const SENDING: &str = "sending";
    pub const SENT: &str = "sent";
    pub const UNCERTAIN: &str = "uncertain";
}

/// A pairing's states.
pub mod pairing_state {
    pub const PENDING: &str = "pending";
    pub const APPROVED: &str = "approved";
    pub const REVOKED: &str = "revoked";
}

/// What a delivery carries.
pub mod kind {
    /// The agent's answer to a message.
    pub const ANSWER: &str = "answer";
    /// A fixed text (a pairing code, "you're approved", a refusal), born ready.
    pub const NOTICE: &str = "notice";
}

/// A delivery to insert: an accepted message (state `accepted`, no text yet) or a notice
/// (state `ready`, with its text).
#[derive(Debug, Clone, PartialEq)]
pub struct NewDelivery {
    pub id: String,
    /// `slack`, `telegram` or `whatsapp`.
    pub channel: String,
    /// `slack`, the Telegram bot's config name, or `whatsapp`.
    pub bot: String,
    /// The inbound message's identity on its platform: one delivery per message.
    pub message_key: String,
    /// One of [`kind`].
    pub kind: String,
    /// The session key of the conversation.
    pub conversation: String,
    pub platform_user: String,
    /// JSON: where the reply goes.
    pub target: String,
    /// The user's text (answers).
    pub input: Option<String>,
    /// The reply (notices are born ready with it).
    pub text: Option<String>,
    /// [`state::ACCEPTED`] for answers, [`state::READY`] for notices.
    pub state: String,
    pub created_at_ms: i64,
}

/// A delivery as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryRow {
    pub id: String,
    pub channel: String,
    pub bot: String,
    pub message_key: String,
    pub kind: String,
    pub conversation: String,
    pub platform_user: String,
    pub target: String,
    pub input: Option<String>,
    pub run_id: Option<String>,
    /// One of [`state`].
    pub state: String,
    pub text: Option<String>,
    pub attempts: i64,
    pub next_attempt_at_ms: i64,
    pub last_error: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub done_at_ms: Option<i64>,
}

/// One part of a reply cut to the platform's message length.
#[derive(Debug, Clone, PartialEq)]
pub struct PartRow {
    pub delivery_id: String,
    pub idx: i64,
    /// One of [`part_state`].
    pub state: String,
    /// The platform's id of the message that carries (or will carry) this part.
    pub message_id: Option<String>,
    /// The part's text digest, so a restart edits exactly the same text.
    pub text_sha256: String,
    pub updated_at_ms: i64,
}

/// What [`Store::accept_message`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// The event and its message were new: a delivery was written.
    New,
    /// The event id or the message key was seen before: no delivery written.
    Duplicate,
}

/// A pairing as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct PairingRow {
    pub channel: String,
    pub bot: String,
    pub user_id: String,
    /// One of [`pairing_state`].
    pub state: String,
    /// The code an operator approves with, while pending.
    pub code: Option<String>,
    pub code_expires_at_ms: Option<i64>,
    pub display_name: Option<String>,
    /// JSON: where to say "you're approved".
    pub target: Option<String>,
    pub approved_at_ms: Option<i64>,
    pub approved_by: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// What [`Store::request_pairing`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paired {
    /// A pending request and its notice were written.
    New,
    /// The user has an unexpired pending request: nothing written.
    Pending,
    /// The channel has `max_pending` unexpired pending requests: nothing written.
    Full,
    /// The user is approved already: nothing written.
    Approved,
}

impl Store {
    /// Runs `f` in one transaction, under the write permit, on a connection of its own,
    /// and commits when it returns `Ok`. On any failure the connection is closed rather
    /// than handed back to the pool, for the reason given at [`Store::insert_spend`].
    ///
    /// On SQLite, `f` must write before it reads: the transaction is deferred, and one
    /// that read first and writes second fails at once (not after the busy timeout) when
    /// another connection committed in between.
    async fn write_transaction<T>(
        &self,
        f: impl AsyncFnOnce(&mut AnyConnection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        use sqlx::Connection;
        let _write = self.write_permit().await?;
        let mut conn = self.pool().acquire().await?;
        let result = async {
            let mut tx = conn.begin().await?;
            let out = f(&mut tx).await?;
            tx.commit().await?;
            Ok(out)
        }
        .await;
        if result.is_err() {
            // Closing rolls back whatever SQLite or the server still holds open.
            let _ = conn.close().await;
        }
        result
    }
}
