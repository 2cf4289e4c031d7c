-- Chat channels (see crates/store/src/channels.rs and docs/channels.md). Keep in step with
-- ../sqlite/0006_channels.sql.
--
-- channel_deliveries: one row per accepted inbound chat message (or a notice such as a
-- pairing code), carrying its reply until it is sent. It is written in the same
-- transaction as the message's webhook_seen row, so an acknowledged webhook is always
-- answered, and a retried one never twice.
-- state: accepted (acked, run not yet submitted) | running (run_id set) | ready (text is
-- the reply, nothing or part of it sent) | sent | failed | uncertain (a send whose outcome
-- is unknown; never sent again without an operator).
CREATE TABLE channel_deliveries (
    id                  TEXT PRIMARY KEY,
    channel             TEXT NOT NULL,   -- slack | telegram | whatsapp
    bot                 TEXT NOT NULL,   -- slack | the Telegram bot's config name | whatsapp
    message_key         TEXT NOT NULL,   -- the inbound message's identity on its platform
    kind                TEXT NOT NULL,   -- answer | notice
    conversation        TEXT NOT NULL,   -- the session key of the conversation
    platform_user       TEXT NOT NULL,
    target              TEXT NOT NULL,   -- JSON: where the reply goes
    input               TEXT,            -- the user's text (answer rows)
    run_id              TEXT,
    state               TEXT NOT NULL,
    text                TEXT,            -- the reply, from ready on
    attempts            BIGINT NOT NULL DEFAULT 0,
    next_attempt_at_ms  BIGINT NOT NULL,
    last_error          TEXT,
    created_at_ms       BIGINT NOT NULL,
    updated_at_ms       BIGINT NOT NULL,
    done_at_ms          BIGINT
);
CREATE UNIQUE INDEX channel_deliveries_message ON channel_deliveries (channel, bot, message_key);
CREATE INDEX channel_deliveries_due ON channel_deliveries (state, next_attempt_at_ms);
CREATE INDEX channel_deliveries_conversation ON channel_deliveries (conversation, created_at_ms);
CREATE INDEX channel_deliveries_run ON channel_deliveries (run_id);

-- channel_delivery_parts: a reply cut to the platform's message length, one row per part.
-- Slack and Telegram: posting (placeholder POST in flight) -> posted (message_id known) ->
-- final (its text is this part, edit confirmed). WhatsApp: sending -> sent | uncertain.
CREATE TABLE channel_delivery_parts (
    delivery_id         TEXT NOT NULL REFERENCES channel_deliveries (id) ON DELETE CASCADE,
    idx                 BIGINT NOT NULL,
    state               TEXT NOT NULL,
    message_id          TEXT,
    text_sha256         TEXT NOT NULL,
    updated_at_ms       BIGINT NOT NULL,
    PRIMARY KEY (delivery_id, idx)
);

-- channel_pairings: who asked to talk to a `pairing` channel, and who an operator let in
-- (the approved rows are a dynamic allowlist). A code lives while pending, then is cleared.
CREATE TABLE channel_pairings (
    channel             TEXT NOT NULL,
    bot                 TEXT NOT NULL,
    user_id             TEXT NOT NULL,
    state               TEXT NOT NULL,   -- pending | approved | revoked
    code                TEXT,
    code_expires_at_ms  BIGINT,
    display_name        TEXT,
    target              TEXT,            -- JSON: where to say "you're approved"
    approved_at_ms      BIGINT,
    approved_by         TEXT,
    created_at_ms       BIGINT NOT NULL,
    updated_at_ms       BIGINT NOT NULL,
    PRIMARY KEY (channel, bot, user_id)
);
CREATE UNIQUE INDEX channel_pairings_code ON channel_pairings (code);

-- The ledger says where a call came from (NULL outside channels and sessions).
ALTER TABLE spend ADD COLUMN channel TEXT;        -- slack | telegram:BOT | whatsapp
ALTER TABLE spend ADD COLUMN channel_user TEXT;   -- slack:T…:U… | telegram:BOT:ID | whatsapp:WA_ID
ALTER TABLE spend ADD COLUMN session_id TEXT;     -- the conversation's session
CREATE INDEX spend_channel_user ON spend (channel_user, created_at_ms);
