-- Agent runs and their events (see crates/store/src/runs.rs). Keep in step with
-- ../postgres/0004_runs.sql.
--
-- The runs and run_events of 0001 were never written by any code; they are rebuilt here
-- because an idempotency key is unique per gateway key, not across the store, and SQLite
-- cannot drop a column's UNIQUE.
--
-- key_id: the gateway key that owns the run (a stored key's id, or `config:NAME`); only
-- it may follow or cancel the run. (key_id, idempotency_key) is unique: the same key
-- asking again with the same idempotency key gets the run that exists. NULL keys never
-- collide.
-- request_hash: what was asked (agent, input, session), so a reused idempotency key with a
-- different request is refused rather than answered with another request's run.
-- cost_nanos, prompt_tokens, completion_tokens: the run's own model calls; the ledger
-- (spend rows with this run_id) is the truth they are settled from.
-- last_seq: the seq of the run's newest event (run_events.seq is 1, 2, 3… per run).
DROP TABLE run_events;
DROP TABLE runs;
CREATE TABLE runs (
    id                  TEXT PRIMARY KEY,
    key_id              TEXT NOT NULL,
    user_id             TEXT,
    agent               TEXT NOT NULL,
    parent_run_id       TEXT REFERENCES runs (id) ON DELETE CASCADE,
    root_run_id         TEXT NOT NULL,
    depth               BIGINT NOT NULL DEFAULT 0,
    session_id          TEXT REFERENCES sessions (id) ON DELETE SET NULL,
    origin              TEXT NOT NULL,   -- ws | http | schedule | channel | agent
    idempotency_key     TEXT,
    request_hash        TEXT,
    status              TEXT NOT NULL,   -- queued | running | completed | failed | cancelled | interrupted
    input               TEXT NOT NULL,   -- JSON
    output              TEXT,            -- JSON
    error_code          TEXT,
    error_message       TEXT,
    breaker             TEXT,            -- the breaker's name when error_code = breaker_tripped
    steps               BIGINT NOT NULL DEFAULT 0,
    llm_calls           BIGINT NOT NULL DEFAULT 0,
    tool_calls          BIGINT NOT NULL DEFAULT 0,
    prompt_tokens       BIGINT NOT NULL DEFAULT 0,
    completion_tokens   BIGINT NOT NULL DEFAULT 0,
    cost_nanos          BIGINT NOT NULL DEFAULT 0,
    last_seq            BIGINT NOT NULL DEFAULT 0,
    owner_instance      TEXT,
    lease_until_ms      BIGINT,
    created_at_ms       BIGINT NOT NULL,
    finished_at_ms      BIGINT,
    updated_at_ms       BIGINT NOT NULL
);
CREATE UNIQUE INDEX runs_key_idempotency ON runs (key_id, idempotency_key);
CREATE INDEX runs_status ON runs (status);
CREATE INDEX runs_agent_created ON runs (agent, created_at_ms);
CREATE INDEX runs_parent ON runs (parent_run_id);
CREATE INDEX runs_session ON runs (session_id);

CREATE TABLE run_events (
    run_id              TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq                 BIGINT NOT NULL,
    event               TEXT NOT NULL,   -- run.started | run.delta | …
    data                TEXT NOT NULL,   -- JSON, as sent to clients
    created_at_ms       BIGINT NOT NULL,
    PRIMARY KEY (run_id, seq)
);

-- A run's cost from the ledger (interrupted runs are settled from it).
CREATE INDEX spend_run ON spend (run_id);
