-- The scheduler's shared state (see crates/store/src/agents.rs). Keep in step with
-- ../sqlite/0005_agent_state.sql.
--
-- agent_breakers: an agent whose runs keep failing is refused new runs until its breaker
-- half-opens (until_ms) and a probe run succeeds, or an operator resets it. Only open and
-- half-open breakers have a row (a closed one is deleted), so every instance reads the
-- few that matter on each refresh, and they hold across restarts.
-- trips: how often it opened in a row (each re-open doubles the open time).
CREATE TABLE agent_breakers (
    agent               TEXT PRIMARY KEY,
    state               TEXT NOT NULL,   -- open | half_open
    failures            BIGINT NOT NULL,
    trips               BIGINT NOT NULL,
    opened_at_ms        BIGINT NOT NULL,
    until_ms            BIGINT NOT NULL,
    reason              TEXT NOT NULL,
    updated_at_ms       BIGINT NOT NULL
);

-- schedules: the state of an agent's schedule (the cron itself is config). A schedule
-- that a budget or a breaker stopped is paused, with the reason, until paused_until_ms
-- (NULL: until an operator resumes it). last_fire_ms: the newest fire, so a restart
-- neither fires twice nor catches up on fires it missed.
CREATE TABLE schedules (
    agent               TEXT PRIMARY KEY,
    paused              BOOLEAN NOT NULL,
    reason              TEXT,
    paused_until_ms     BIGINT,
    last_fire_ms        BIGINT,
    updated_at_ms       BIGINT NOT NULL
);
