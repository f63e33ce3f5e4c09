-- Event numbering (V6) under cached plans (issue 13). PL/pgSQL caches a generic plan
-- for the statements of `sync_number_events` after a few calls; for `tenant_id =
-- tenant` that plan cannot tell a tenant of ten rows from one of millions, and may scan
-- the whole change log. Plans made for the tenant at hand keep it on the index.
ALTER FUNCTION sync_number_events(text) SET plan_cache_mode = force_custom_plan;
