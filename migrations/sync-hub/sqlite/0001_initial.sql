-- The hub's store on embedded SQLite: locations and their devices, every
-- log the hub holds (the locations' and its own), and the materialized view
-- of catalog, bookings and availability derived from those logs. STRICT
-- tables; times are UTC milliseconds.

CREATE TABLE locations (
    id                TEXT    PRIMARY KEY,
    name              TEXT    NOT NULL,
    timezone          TEXT    NOT NULL,
    -- The enrolled device's Ed25519 public key (base64); NULL until enrolled.
    public_key        TEXT,
    epoch             INTEGER NOT NULL DEFAULT 0,
    -- The first seq that must carry `epoch`.
    epoch_start_seq   INTEGER NOT NULL DEFAULT 1,
    status            TEXT    NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'active', 'quarantined')),
    quarantine_reason TEXT,
    head_seq          INTEGER NOT NULL DEFAULT 0,
    head_hash         TEXT    NOT NULL DEFAULT '0000000000000000000000000000000000000000000000000000000000000000',
    -- The device's signature over its head, from the batch that reached it.
    head_signature    TEXT,
    last_seen_at_ms   INTEGER,
    -- Last time the device reported nothing waiting to sync.
    synced_at_ms      INTEGER,
    clock_offset_ms   INTEGER,
    backlog_events    INTEGER,
    created_at_ms     INTEGER NOT NULL,
    enrolled_at_ms    INTEGER
) STRICT;

CREATE TABLE enrollment_tokens (
    token_hash    TEXT    PRIMARY KEY,
    location_id   TEXT    NOT NULL REFERENCES locations (id),
    expires_at_ms INTEGER NOT NULL,
    used_at_ms    INTEGER
) STRICT;

CREATE TABLE api_keys (
    key_hash      TEXT    PRIMARY KEY,
    name          TEXT    NOT NULL,
    created_at_ms INTEGER NOT NULL
) STRICT;

-- Nonces of signed requests seen within the freshness window.
CREATE TABLE nonces (
    location_id   TEXT    NOT NULL,
    nonce         TEXT    NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    PRIMARY KEY (location_id, nonce)
) STRICT, WITHOUT ROWID;
CREATE INDEX nonces_by_expiry ON nonces (expires_at_ms);

-- Every log: each location's, and the hub's own under origin 'hub'.
-- `recipient` is set on hub events addressed to one location (its inbox).
CREATE TABLE events (
    origin         TEXT    NOT NULL,
    seq            INTEGER NOT NULL,
    epoch          INTEGER NOT NULL,
    id             TEXT    NOT NULL,
    prev           TEXT    NOT NULL,
    hash           TEXT    NOT NULL,
    at_ms          INTEGER NOT NULL,
    kind           TEXT    NOT NULL,
    body           TEXT    NOT NULL,
    recipient      TEXT,
    received_at_ms INTEGER NOT NULL,
    PRIMARY KEY (origin, seq)
) STRICT, WITHOUT ROWID;
CREATE INDEX events_inbox ON events (recipient, seq) WHERE recipient IS NOT NULL;

-- The materialized view.
CREATE TABLE view_resources (
    id            TEXT    PRIMARY KEY,
    owner         TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    kind          TEXT    NOT NULL,
    created_at_ms INTEGER NOT NULL
) STRICT;

-- `used` counts units consumed by bookings of every participant; the hub
-- sells only from `hub_allotted - hub_used`.
CREATE TABLE view_pools (
    id            TEXT    PRIMARY KEY,
    resource_id   TEXT    NOT NULL,
    owner         TEXT    NOT NULL,
    capacity      INTEGER NOT NULL,
    starts_at_ms  INTEGER,
    ends_at_ms    INTEGER,
    used          INTEGER NOT NULL DEFAULT 0,
    hub_allotted  INTEGER NOT NULL DEFAULT 0,
    hub_used      INTEGER NOT NULL DEFAULT 0,
    updated_at_ms INTEGER NOT NULL
) STRICT;
CREATE INDEX view_pools_by_owner ON view_pools (owner, starts_at_ms);

-- Units held by participants other than the owner.
CREATE TABLE view_allotments (
    pool_id TEXT    NOT NULL,
    holder  TEXT    NOT NULL,
    units   INTEGER NOT NULL,
    PRIMARY KEY (pool_id, holder)
) STRICT, WITHOUT ROWID;

CREATE TABLE view_bookings (
    id            TEXT    PRIMARY KEY,
    owner         TEXT    NOT NULL,
    requested_by  TEXT    NOT NULL,
    charged_to    TEXT    NOT NULL,
    channel       TEXT    NOT NULL,
    state         TEXT    NOT NULL,
    lines         TEXT    NOT NULL,
    customer      TEXT    NOT NULL,
    expires_at_ms INTEGER,
    reason        TEXT,
    decided_by    TEXT,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
