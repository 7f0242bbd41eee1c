-- The same bookings table with its state CHECK written as comparisons
-- instead of `IN (...)`: SQLite evaluates a constant IN list of more than
-- two values through a temporary b-tree it builds for every inserted row,
-- which cost as much as the insert itself on the booking path. The rule is
-- unchanged. Rebuilt the documented way (create, copy, drop, rename), with
-- foreign keys off while the migration runs and checked after it.
CREATE TABLE bookings_new (
    id             TEXT    PRIMARY KEY,
    code           TEXT    NOT NULL,
    owner          TEXT    NOT NULL,
    requested_by   TEXT    NOT NULL,
    charged_to     TEXT    NOT NULL,
    channel        TEXT    NOT NULL,
    state          TEXT    NOT NULL CHECK (
        state = 'requested' OR state = 'held' OR state = 'confirmed' OR state = 'rejected'
        OR state = 'cancelled' OR state = 'fulfilled' OR state = 'expired'),
    customer_name  TEXT    NOT NULL,
    customer_phone TEXT,
    customer_email TEXT,
    expires_at_ms  INTEGER,
    reason         TEXT,
    created_at_ms  INTEGER NOT NULL,
    updated_at_ms  INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
INSERT INTO bookings_new SELECT
    id, code, owner, requested_by, charged_to, channel, state, customer_name, customer_phone,
    customer_email, expires_at_ms, reason, created_at_ms, updated_at_ms
FROM bookings;
DROP TABLE bookings;
ALTER TABLE bookings_new RENAME TO bookings;
-- Only bookings that can still expire: what the sweeper looks for. (Two
-- values in an IN list are compiled to comparisons.)
CREATE INDEX bookings_pending_by_expiry ON bookings (state, expires_at_ms)
    WHERE state IN ('requested', 'held');
