-- When the hub last refused a push of a location as fenced: an old copy of
-- its device (replaced or reset) still trying to sync, for the alert.
ALTER TABLE locations ADD COLUMN fenced_at_ms BIGINT;
