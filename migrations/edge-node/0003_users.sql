-- Staff and managers of the LAN UI, and browser sessions.

-- PINs are stored as Argon2id PHC strings. After 5 failed attempts a user is
-- locked for a delay that doubles with every further failure.
CREATE TABLE users (
    id              INTEGER PRIMARY KEY,
    name            TEXT    NOT NULL UNIQUE COLLATE NOCASE,
    role            TEXT    NOT NULL CHECK (role IN ('staff', 'manager')),
    pin_hash        TEXT    NOT NULL,
    failed_attempts INTEGER NOT NULL DEFAULT 0,
    locked_until_ms INTEGER,
    created_at_ms   INTEGER NOT NULL
) STRICT;

-- Browser sessions, by SHA-256 of the cookie's secret. A session ends when
-- signed out or idle for `idle_timeout_ms`.
CREATE TABLE sessions (
    id_hash         TEXT    PRIMARY KEY,
    role            TEXT    NOT NULL CHECK (role IN ('kiosk', 'staff', 'manager')),
    user_name       TEXT,
    created_at_ms   INTEGER NOT NULL,
    last_seen_at_ms INTEGER NOT NULL,
    idle_timeout_ms INTEGER NOT NULL
) STRICT;
