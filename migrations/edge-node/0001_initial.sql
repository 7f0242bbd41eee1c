-- The edge node's local store: catalog, bookings, the outbox event log,
-- idempotency records and LAN API tokens. STRICT tables so a wrong type is
-- an error rather than a silent conversion. Times are UTC milliseconds.

-- Who this node is. Exactly one row.
CREATE TABLE node (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    location_id   TEXT    NOT NULL,
    timezone      TEXT    NOT NULL,
    epoch         INTEGER NOT NULL CHECK (epoch >= 0),
    created_at_ms INTEGER NOT NULL
) STRICT;

CREATE TABLE resources (
    id            TEXT    PRIMARY KEY,
    owner         TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    kind          TEXT    NOT NULL CHECK (kind IN ('stock', 'slot')),
    created_at_ms INTEGER NOT NULL
) STRICT;

-- One row per pool this node knows. `allotted` is the units charged to this
-- node (the owner starts with the capacity), `used` the units its own held,
-- confirmed and fulfilled bookings consume. Available here = allotted - used.
CREATE TABLE pools (
    id            TEXT    PRIMARY KEY,
    resource_id   TEXT    NOT NULL REFERENCES resources (id),
    owner         TEXT    NOT NULL,
    capacity      INTEGER NOT NULL CHECK (capacity >= 0),
    starts_at_ms  INTEGER,
    ends_at_ms    INTEGER,
    allotted      INTEGER NOT NULL,
    used          INTEGER NOT NULL CHECK (used >= 0),
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    CHECK ((starts_at_ms IS NULL) = (ends_at_ms IS NULL)),
    CHECK (starts_at_ms IS NULL OR starts_at_ms < ends_at_ms)
) STRICT;
CREATE INDEX pools_by_resource ON pools (resource_id, starts_at_ms);

-- Units this node, as owner, has granted to others and not had back.
CREATE TABLE allotments (
    pool_id TEXT    NOT NULL REFERENCES pools (id),
    grantee TEXT    NOT NULL,
    units   INTEGER NOT NULL CHECK (units >= 0),
    PRIMARY KEY (pool_id, grantee)
) STRICT, WITHOUT ROWID;

-- WITHOUT ROWID and few indexes: every index is another b-tree write in
-- the writer's hot path. Ids are UUIDv7, so `ORDER BY id` is creation order.
CREATE TABLE bookings (
    id             TEXT    PRIMARY KEY,
    code           TEXT    NOT NULL,
    owner          TEXT    NOT NULL,
    requested_by   TEXT    NOT NULL,
    charged_to     TEXT    NOT NULL,
    channel        TEXT    NOT NULL,
    state          TEXT    NOT NULL CHECK (state IN
        ('requested', 'held', 'confirmed', 'rejected', 'cancelled', 'fulfilled', 'expired')),
    customer_name  TEXT    NOT NULL,
    customer_phone TEXT,
    customer_email TEXT,
    expires_at_ms  INTEGER,
    reason         TEXT,
    created_at_ms  INTEGER NOT NULL,
    updated_at_ms  INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
-- Only bookings that can still expire: what the sweeper looks for.
CREATE INDEX bookings_pending_by_expiry ON bookings (state, expires_at_ms)
    WHERE state IN ('requested', 'held');

CREATE TABLE booking_lines (
    booking_id TEXT    NOT NULL REFERENCES bookings (id),
    pool_id    TEXT    NOT NULL REFERENCES pools (id),
    quantity   INTEGER NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (booking_id, pool_id)
) STRICT, WITHOUT ROWID;

-- The outbox: this node's own append-only log, written in the same
-- transaction as the change it records. `seq` is gap-free from 1.
CREATE TABLE events (
    seq   INTEGER PRIMARY KEY CHECK (seq >= 1),
    id    TEXT    NOT NULL,
    epoch INTEGER NOT NULL,
    prev  TEXT    NOT NULL,
    hash  TEXT    NOT NULL,
    at_ms INTEGER NOT NULL,
    kind  TEXT    NOT NULL,
    body  TEXT    NOT NULL
) STRICT;

-- Answers to requests that carried an Idempotency-Key, committed with the
-- change they describe, so a retry after a crash sees the same answer.
CREATE TABLE idempotency_keys (
    key           TEXT    PRIMARY KEY,
    request_hash  TEXT    NOT NULL,
    status        INTEGER NOT NULL,
    response      TEXT    NOT NULL,
    created_at_ms INTEGER NOT NULL
) STRICT;
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at_ms);

-- LAN API bearer tokens, stored as SHA-256 of the secret.
CREATE TABLE api_tokens (
    token_hash    TEXT    PRIMARY KEY,
    role          TEXT    NOT NULL CHECK (role IN ('kiosk', 'staff', 'manager')),
    created_at_ms INTEGER NOT NULL
) STRICT;
