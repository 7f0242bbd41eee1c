-- Staff mark a confirmed slot booking whose customer did not come as
-- `no_show`, so the state CHECK gains that value. Rebuilt the documented
-- way (create, copy, drop, rename), as in 0005.
CREATE TABLE bookings_new (
    id             TEXT    PRIMARY KEY,
    code           TEXT    NOT NULL,
    owner          TEXT    NOT NULL,
    requested_by   TEXT    NOT NULL,
    charged_to     TEXT    NOT NULL,
    channel        TEXT    NOT NULL,
    state          TEXT    NOT NULL CHECK (
        state = 'requested' OR state = 'held' OR state = 'confirmed' OR state = 'rejected'
        OR state = 'cancelled' OR state = 'fulfilled' OR state = 'expired'
        OR state = 'no_show'),
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
SELECT id, code, owner, requested_by, charged_to, channel, state, lines, customer_name,
       customer_phone, customer_email, expires_at_ms, reason, created_at_ms, updated_at_ms
  FROM bookings;
DROP TABLE bookings;
ALTER TABLE bookings_new RENAME TO bookings;
CREATE INDEX bookings_pending_by_expiry ON bookings (state, expires_at_ms)
    WHERE state IN ('requested', 'held');

-- Every change of a booking's state after it was made, and who made it
-- (`by`: the signed-in staff member's name, NULL for a device token, the
-- system or another participant). A booking's first state is the
-- `from_state` of its first change, or its state if it never changed: so
-- placing a booking, the hottest write there is, adds no row here.
-- Written by the projection, so a rebuild from the log writes it again.
CREATE TABLE booking_history (
    id          INTEGER PRIMARY KEY,
    booking_id  TEXT    NOT NULL,
    at_ms       INTEGER NOT NULL,
    from_state  TEXT    NOT NULL,
    to_state    TEXT    NOT NULL,
    by          TEXT
) STRICT;
CREATE INDEX booking_history_by_booking ON booking_history (booking_id, id);

-- Confirmed bookings not yet handed over, for the staff queue: with the
-- pending index above, every open booking is read through an index, so
-- the queue costs what is open, not every booking ever made.
CREATE INDEX bookings_confirmed ON bookings (id) WHERE state = 'confirmed';
