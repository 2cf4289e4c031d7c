-- Sluice schema, PostgreSQL flavour. Keep in step with ../sqlite/0001_init.sql: the same
-- tables, columns and meaning. Times are Unix milliseconds (BIGINT); money is integer
-- nano-dollars (1e-9 USD), so sums are exact.

-- Gateway keys managed at run time (beside the bootstrap [[keys]] of the config).
-- The secret is never stored: only its SHA-256 (hex) and a display prefix.
CREATE TABLE api_keys (
    id                  TEXT PRIMARY KEY,
    name                TEXT NOT NULL,
    key_hash            TEXT NOT NULL UNIQUE,
    key_prefix          TEXT NOT NULL,
    user_id             TEXT,
    allowed_models      TEXT,            -- JSON array of model names; NULL = all
    rpm_limit           BIGINT,
    tpm_limit           BIGINT,
    budget_usd_day_nanos    BIGINT,
    budget_usd_month_nanos  BIGINT,
    budget_usd_total_nanos  BIGINT,
    budget_tokens_day       BIGINT,
    budget_tokens_month     BIGINT,
    created_at_ms       BIGINT NOT NULL,
    updated_at_ms       BIGINT NOT NULL,
    expires_at_ms       BIGINT,
    revoked_at_ms       BIGINT
);
CREATE INDEX api_keys_updated ON api_keys (updated_at_ms);

-- One row per provider call. (request_id, call_seq) makes a retried write harmless.
CREATE TABLE spend (
    id                  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    request_id          TEXT NOT NULL,
    call_seq            BIGINT NOT NULL,
    key_id              TEXT,
    user_id             TEXT,
    agent_id            TEXT,
    run_id              TEXT,
    provider            TEXT NOT NULL,
    model               TEXT NOT NULL,
    prompt_tokens       BIGINT NOT NULL,
    completion_tokens   BIGINT NOT NULL,
    cached_tokens       BIGINT NOT NULL,
    cost_nanos          BIGINT NOT NULL,
    estimated           BOOLEAN NOT NULL,
    status              TEXT NOT NULL,
    latency_ms          BIGINT NOT NULL,
    created_at_ms       BIGINT NOT NULL,
    UNIQUE (request_id, call_seq)
);
CREATE INDEX spend_created ON spend (created_at_ms);
CREATE INDEX spend_key_created ON spend (key_id, created_at_ms);

-- Provider API keys' state, by a stable non-secret id (sha256 prefix); secrets stay in
-- config/env.
CREATE TABLE auth_profiles (
    provider            TEXT NOT NULL,
    profile_id          TEXT NOT NULL,
    state               TEXT NOT NULL,   -- ready | cooling_down | billing | disabled
    until_ms            BIGINT NOT NULL,
    failures            BIGINT NOT NULL,
    reason              TEXT,
    updated_at_ms       BIGINT NOT NULL,
    PRIMARY KEY (provider, profile_id)
);

CREATE TABLE sessions (
    id                  TEXT PRIMARY KEY,
    session_key         TEXT NOT NULL UNIQUE,
    agent               TEXT,
    channel             TEXT,
    metadata            TEXT,            -- JSON
    created_at_ms       BIGINT NOT NULL,
    updated_at_ms       BIGINT NOT NULL
);

CREATE TABLE messages (
    id                  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    session_id          TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    seq                 BIGINT NOT NULL,
    role                TEXT NOT NULL,
    content             TEXT NOT NULL,   -- JSON: the canonical message
    created_at_ms       BIGINT NOT NULL,
    UNIQUE (session_id, seq)
);

CREATE TABLE runs (
    id                  TEXT PRIMARY KEY,
    session_id          TEXT REFERENCES sessions (id) ON DELETE SET NULL,
    agent               TEXT NOT NULL,
    idempotency_key     TEXT UNIQUE,
    status              TEXT NOT NULL,   -- queued | running | completed | failed | cancelled
    input               TEXT NOT NULL,   -- JSON
    output              TEXT,            -- JSON
    error_code          TEXT,
    prompt_tokens       BIGINT NOT NULL DEFAULT 0,
    completion_tokens   BIGINT NOT NULL DEFAULT 0,
    cost_nanos          BIGINT NOT NULL DEFAULT 0,
    steps               BIGINT NOT NULL DEFAULT 0,
    owner_instance      TEXT,
    lease_until_ms      BIGINT,
    created_at_ms       BIGINT NOT NULL,
    updated_at_ms       BIGINT NOT NULL
);
CREATE INDEX runs_session ON runs (session_id);

CREATE TABLE run_events (
    run_id              TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq                 BIGINT NOT NULL,
    event               TEXT NOT NULL,
    data                TEXT NOT NULL,   -- JSON
    created_at_ms       BIGINT NOT NULL,
    PRIMARY KEY (run_id, seq)
);

-- Platform retries of one webhook delivery are answered once.
CREATE TABLE webhook_seen (
    channel             TEXT NOT NULL,
    event_id            TEXT NOT NULL,
    seen_at_ms          BIGINT NOT NULL,
    PRIMARY KEY (channel, event_id)
);
CREATE INDEX webhook_seen_at ON webhook_seen (seen_at_ms);
