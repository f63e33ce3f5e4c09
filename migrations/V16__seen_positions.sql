-- What a BridgeCore device has seen: the transaction of the newest change its event
-- position covers (event ids follow (xid, seq) order). A change a client sends without
-- a version it tracks (BridgeCore's example clients always send 1) is based on the
-- newest version of its row at or before that point, or the device's own.
ALTER TABLE offline_sync_state ADD COLUMN seen_xid xid8;
