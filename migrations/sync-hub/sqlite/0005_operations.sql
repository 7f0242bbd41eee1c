-- Operations: the fleet dashboard's operators and their sessions, and the
-- alerts the hub raised.

-- People who sign in to the fleet dashboard. The password is an Argon2id
-- PHC string; failed sign-ins lock the account for a while.
CREATE TABLE operators (
    name             TEXT    PRIMARY KEY,
    password_hash    TEXT    NOT NULL,
    created_at_ms    INTEGER NOT NULL,
    failed_attempts  INTEGER NOT NULL DEFAULT 0,
    locked_until_ms  INTEGER
) STRICT;

-- A signed-in browser: the SHA-256 of its cookie, never the cookie.
CREATE TABLE operator_sessions (
    token_hash    TEXT    PRIMARY KEY,
    operator      TEXT    NOT NULL REFERENCES operators (name) ON DELETE CASCADE,
    csrf          TEXT    NOT NULL,
    created_at_ms INTEGER NOT NULL,
    last_seen_ms  INTEGER NOT NULL
) STRICT;
CREATE INDEX operator_sessions_by_operator ON operator_sessions (operator);

-- Every alert raised; an open one has no cleared_at_ms. At most one open
-- alert per key (kind and subject), so among several hub processes one
-- raises it.
CREATE TABLE alerts (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    key           TEXT    NOT NULL,
    kind          TEXT    NOT NULL,
    subject       TEXT    NOT NULL,
    message       TEXT    NOT NULL,
    raised_at_ms  INTEGER NOT NULL,
    cleared_at_ms INTEGER
) STRICT;
CREATE UNIQUE INDEX alerts_open ON alerts (key) WHERE cleared_at_ms IS NULL;

-- Pools whose bookings use more than their capacity: few (none, if escrow
-- holds), and read on every look at the fleet.
CREATE INDEX view_pools_overbooked ON view_pools (owner) WHERE used > capacity;
