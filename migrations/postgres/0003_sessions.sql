-- WebSocket sessions (see crates/store/src/sessions.rs). Keep in step with
-- ../sqlite/0003_sessions.sql.
--
-- key_id: the gateway key that owns the session (a stored key's id, or `config:NAME`),
-- so a key's live sessions can be counted against its cap and nobody else's key can
-- resume them. NULL for sessions made before this column existed.
--
-- last_seq: the seq of the session's newest message (0: none). Appending bumps it with
-- an UPDATE of the session row, which serialises the writers of one session (a row lock
-- on Postgres, the write lock on SQLite) and hands each its seqs without a gap or a
-- duplicate, however many instances write.
ALTER TABLE sessions ADD COLUMN key_id TEXT;
ALTER TABLE sessions ADD COLUMN last_seq BIGINT NOT NULL DEFAULT 0;
UPDATE sessions SET last_seq = COALESCE(
    (SELECT MAX(seq) FROM messages WHERE messages.session_id = sessions.id), 0);
CREATE INDEX sessions_key_updated ON sessions (key_id, updated_at_ms);
