-- The response cache (docs/cache.md): a call answered from the cache is a spend row at
-- zero cost (provider `cache`, status cache_hit | cache_semantic_hit) that notes what the
-- answer cost when it was made.
ALTER TABLE spend ADD COLUMN saved_nanos BIGINT NOT NULL DEFAULT 0;
