-- One row per booking, lines included. Placing a booking is the hottest
-- write there is, and every table it touches costs a b-tree insert and, at
-- each group commit, its right-most pages written and fsynced again:
--
-- * a booking's lines (at most 100, always read and written with it) move
--   into the booking row as a JSON array `[{"pool_id":..,"quantity":..}]`
--   sorted by pool, and the booking_lines table goes;
-- * the state CHECK is written as comparisons instead of `IN (...)`:
--   SQLite evaluates a constant IN list of more than two values through a
--   temporary b-tree it builds for every inserted row, which cost as much
--   as the insert itself. The rule is unchanged.
--
-- Rebuilt the documented way (create, copy, drop, rename), with foreign
-- keys off while migrations run and checked before they commit.
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
    lines          TEXT    NOT NULL,
    customer_name  TEXT    NOT NULL,
    customer_phone TEXT,
    customer_email TEXT,
    expires_at_ms  INTEGER,
    reason         TEXT,
    created_at_ms  INTEGER NOT NULL,
    updated_at_ms  INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
INSERT INTO bookings_new
SELECT b.id, b.code, b.owner, b.requested_by, b.charged_to, b.channel, b.state,
       (SELECT json_group_array(json_object('pool_id', l.pool_id, 'quantity', l.quantity)
                                ORDER BY l.pool_id)
          FROM booking_lines AS l WHERE l.booking_id = b.id),
       b.customer_name, b.customer_phone, b.customer_email, b.expires_at_ms, b.reason,
       b.created_at_ms, b.updated_at_ms
  FROM bookings AS b;
DROP TABLE booking_lines;
DROP TABLE bookings;
ALTER TABLE bookings_new RENAME TO bookings;
-- Only bookings that can still expire: what the sweeper looks for. (Two
-- values in an IN list are compiled to comparisons.)
CREATE INDEX bookings_pending_by_expiry ON bookings (state, expires_at_ms)
    WHERE state IN ('requested', 'held');
