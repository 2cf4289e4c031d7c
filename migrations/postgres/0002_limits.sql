-- Shared limit buckets: every rate limit and budget is one row; instances lease units
-- from it in slices (see crates/limits/src/lease.rs). `used` counts units leased or
-- used; rate buckets refill from `updated_ms` on; `version` makes read-modify-write safe.
CREATE TABLE limit_buckets (
    bucket      TEXT PRIMARY KEY,
    used        BIGINT NOT NULL,
    updated_ms  BIGINT NOT NULL,
    version     BIGINT NOT NULL,
    expires_ms  BIGINT
);
CREATE INDEX limit_buckets_expires ON limit_buckets (expires_ms);

-- Keys stopped by the spend-velocity breaker (stored keys by id, config keys as
-- `config:NAME`). A reset deletes the row.
CREATE TABLE key_breakers (
    key_id         TEXT PRIMARY KEY,
    tripped_at_ms  BIGINT NOT NULL,
    until_ms       BIGINT,
    reason         TEXT NOT NULL
);
