-- Bounded history (src/sync/retention.rs). The change log keeps one entry per row, so
-- only tombstones (entries of deleted rows) accumulate; this index finds the old ones
-- without scanning the live rows' entries. The floor of what was pruned lives in
-- server_meta ('retained_from', "xid:seq"): cursors below it answer RESYNC_REQUIRED.
CREATE INDEX sync_changes_tombstones ON sync_changes (changed_at) WHERE deleted;
