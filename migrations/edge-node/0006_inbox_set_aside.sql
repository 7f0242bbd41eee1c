-- Inbox events this node could not apply: refused by the checks every
-- receiver makes, or naming what does not exist here. Each is set aside
-- (an `inbox_set_aside` event of this node's own log, which the hub
-- receives too) so the events behind it go on being applied; the manager
-- sees them here. Filled from those events, so a rebuild restores it.
CREATE TABLE inbox_set_aside (
    hub_seq          INTEGER PRIMARY KEY,
    origin           TEXT    NOT NULL,
    kind             TEXT    NOT NULL,
    reason           TEXT    NOT NULL,
    set_aside_at_ms  INTEGER NOT NULL
) STRICT;
