-- Another participant's catalog is learned from the inbox and kept in the
-- state tables, not copied into this node's own log: in a fleet of
-- thousands of stores, a copy of every store's catalog in every store's
-- log would grow with the square of the fleet (and the hub, which keeps
-- every log, would store it once per store).
--
-- The event as the hub sent it stays with the row until this node first
-- names the pool in an event of its own (a request for it, units granted
-- from it): then the event goes into our log as `observed`, just before,
-- so that our log alone still rebuilds every pool it names. A rebuild
-- pulls the inbox again from the start, so the rest is learned again.
--
-- `learned` is the hub's seq of the event, `learned_event` the event
-- (JSON); both NULL for rows our own log made.
ALTER TABLE resources ADD COLUMN learned INTEGER;
ALTER TABLE resources ADD COLUMN learned_event TEXT;
ALTER TABLE pools ADD COLUMN learned INTEGER;
ALTER TABLE pools ADD COLUMN learned_event TEXT;

-- After a rebuild from our own log, the inbox is pulled again from the
-- start, but below `relearn_until` (the last hub seq our log recorded) only
-- to learn the catalog and who joined again: everything else there our log
-- already took in.
ALTER TABLE sync_state ADD COLUMN relearn_until INTEGER NOT NULL DEFAULT 0;
