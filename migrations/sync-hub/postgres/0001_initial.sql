-- The hub's store on PostgreSQL: the same tables, columns, keys and
-- indexes as the SQLite migrations 0001..0004 leave (see
-- migrations/sync-hub/sqlite/ for what each holds), plus what several hub
-- processes sharing one database need: the nonces of signed requests, in
-- the database instead of one process's memory.
--
-- Types: times are UTC milliseconds and counts are BIGINT, as SQLite's
-- INTEGER is 64 bits. Ids and hashes are TEXT. Event bodies, booking lines
-- and customers stay TEXT holding JSON, as in SQLite: an event body is
-- stored in the canonical form its hash covers (shared/src/event.rs) and
-- reads back byte for byte, where jsonb would reorder its keys.
--
-- Text that is a key, indexed or sorted on is COLLATE "C", so it compares
-- bytewise as in SQLite whatever the database's default collation, and
-- both backends page and order the same way.
--
-- Left out of SQLite's 0004: the `address_to_everyone` row in hub_meta,
-- which readdresses copies an older SQLite hub made per location. A
-- PostgreSQL database starts with hub events to everyone stored once.

CREATE TABLE locations (
    id                TEXT COLLATE "C" PRIMARY KEY,
    name              TEXT   NOT NULL,
    timezone          TEXT   NOT NULL,
    -- The enrolled device's Ed25519 public key (base64); NULL until enrolled.
    public_key        TEXT,
    epoch             BIGINT NOT NULL DEFAULT 0,
    -- The first seq that must carry `epoch`.
    epoch_start_seq   BIGINT NOT NULL DEFAULT 1,
    status            TEXT   NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'active', 'quarantined')),
    quarantine_reason TEXT,
    head_seq          BIGINT NOT NULL DEFAULT 0,
    head_hash         TEXT   NOT NULL DEFAULT '0000000000000000000000000000000000000000000000000000000000000000',
    -- The device's signature over its head, from the batch that reached it.
    head_signature    TEXT,
    last_seen_at_ms   BIGINT,
    -- Last time the device reported nothing waiting to sync.
    synced_at_ms      BIGINT,
    clock_offset_ms   BIGINT,
    backlog_events    BIGINT,
    created_at_ms     BIGINT NOT NULL,
    enrolled_at_ms    BIGINT
);

CREATE TABLE enrollment_tokens (
    token_hash    TEXT COLLATE "C" PRIMARY KEY,
    location_id   TEXT COLLATE "C" NOT NULL REFERENCES locations (id),
    expires_at_ms BIGINT NOT NULL,
    used_at_ms    BIGINT
);

CREATE TABLE api_keys (
    key_hash      TEXT COLLATE "C" PRIMARY KEY,
    name          TEXT   NOT NULL,
    created_at_ms BIGINT NOT NULL
);

-- Nonces of signed requests seen within the freshness window. One hub
-- process keeps them in memory (SQLite's 0004 dropped this table); hub
-- processes sharing a database must all see every nonce, or a request
-- replayed to another process would pass.
CREATE TABLE nonces (
    location      TEXT COLLATE "C" NOT NULL,
    nonce         TEXT COLLATE "C" NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    PRIMARY KEY (location, nonce)
);
CREATE INDEX nonces_by_expiry ON nonces (expires_at_ms);

-- Every log: each location's, and the hub's own under origin 'hub'.
-- `recipient` is set on hub events addressed to one location (its inbox),
-- or '*' for every location.
CREATE TABLE events (
    origin         TEXT COLLATE "C" NOT NULL,
    seq            BIGINT NOT NULL,
    epoch          BIGINT NOT NULL,
    id             TEXT   NOT NULL,
    prev           TEXT   NOT NULL,
    hash           TEXT   NOT NULL,
    at_ms          BIGINT NOT NULL,
    kind           TEXT   NOT NULL,
    body           TEXT   NOT NULL,
    recipient      TEXT COLLATE "C",
    received_at_ms BIGINT NOT NULL,
    PRIMARY KEY (origin, seq)
);
CREATE INDEX events_inbox ON events (recipient, seq) WHERE recipient IS NOT NULL;

-- The materialized view.
CREATE TABLE view_resources (
    id            TEXT COLLATE "C" PRIMARY KEY,
    owner         TEXT   NOT NULL,
    name          TEXT   NOT NULL,
    kind          TEXT   NOT NULL,
    created_at_ms BIGINT NOT NULL
);

-- `used` counts units consumed by bookings of every participant; the hub
-- sells only from `hub_allotted - hub_used`.
CREATE TABLE view_pools (
    id            TEXT COLLATE "C" PRIMARY KEY,
    resource_id   TEXT COLLATE "C" NOT NULL,
    owner         TEXT COLLATE "C" NOT NULL,
    capacity      BIGINT NOT NULL,
    starts_at_ms  BIGINT,
    ends_at_ms    BIGINT,
    used          BIGINT NOT NULL DEFAULT 0,
    hub_allotted  BIGINT NOT NULL DEFAULT 0,
    hub_used      BIGINT NOT NULL DEFAULT 0,
    updated_at_ms BIGINT NOT NULL
);
CREATE INDEX view_pools_by_owner ON view_pools (owner, starts_at_ms);
-- A stock resource has one pool: checked for every pool created.
CREATE INDEX view_pools_by_resource ON view_pools (resource_id);

-- `charged_state`: the state of a booking as the participant charged with
-- it last recorded it in its own log (the view's `state` also takes in
-- others' words, such as a requester giving up); `requested` while it has
-- said nothing.
CREATE TABLE view_bookings (
    id            TEXT COLLATE "C" PRIMARY KEY,
    owner         TEXT   NOT NULL,
    requested_by  TEXT   NOT NULL,
    charged_to    TEXT   NOT NULL,
    channel       TEXT   NOT NULL,
    state         TEXT COLLATE "C" NOT NULL,
    lines         TEXT   NOT NULL,
    customer      TEXT   NOT NULL,
    expires_at_ms BIGINT,
    reason        TEXT,
    decided_by    TEXT,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    charged_state TEXT   NOT NULL DEFAULT 'requested'
);
-- Bookings the hub may have to expire itself: its web requests, its holds.
CREATE INDEX view_bookings_pending ON view_bookings (state, expires_at_ms)
    WHERE state IN ('requested', 'held');

-- Units of a pool charged to one location (its owner, or a grantee) and
-- the units its own bookings consume. The hub's own holding stays in
-- view_pools (hub_allotted, hub_used).
CREATE TABLE view_holdings (
    pool_id  TEXT COLLATE "C" NOT NULL,
    holder   TEXT COLLATE "C" NOT NULL,
    allotted BIGINT NOT NULL DEFAULT 0,
    used     BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (pool_id, holder)
);

-- Units one participant sent another (a grant, a return) that the receiver
-- has not yet credited in its own log.
CREATE TABLE view_in_flight (
    pool_id  TEXT COLLATE "C" NOT NULL,
    sender   TEXT COLLATE "C" NOT NULL,
    receiver TEXT COLLATE "C" NOT NULL,
    units    BIGINT NOT NULL,
    PRIMARY KEY (pool_id, sender, receiver)
);

-- Inbox events a location could not apply and set aside (its
-- inbox_set_aside events), for the operator to see.
CREATE TABLE view_set_aside (
    location TEXT COLLATE "C" NOT NULL,
    hub_seq  BIGINT NOT NULL,
    origin   TEXT   NOT NULL,
    kind     TEXT   NOT NULL,
    reason   TEXT   NOT NULL,
    at_ms    BIGINT NOT NULL,
    PRIMARY KEY (location, hub_seq)
);

-- Idempotency keys of the public booking API: the key names the booking it
-- made; a repeat answers with that booking as it is now.
CREATE TABLE idempotency_keys (
    key           TEXT COLLATE "C" PRIMARY KEY,
    request_hash  TEXT   NOT NULL,
    booking_id    TEXT   NOT NULL,
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at_ms);

-- Ids are handed out by the database when the insert gives none, as
-- SQLite's INTEGER PRIMARY KEY does; BY DEFAULT so that a copy from a
-- SQLite hub can keep its ids.
CREATE TABLE webhooks (
    id            BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    url           TEXT   NOT NULL,
    secret        TEXT   NOT NULL,
    created_at_ms BIGINT NOT NULL
);

-- The webhook outbox: one row per booking state change per webhook,
-- written in the transaction that changed the state. Delivered in id order
-- per (webhook, booking), retried until a 2xx. An identity never hands out
-- an id twice, as SQLite's AUTOINCREMENT does not.
CREATE TABLE webhook_deliveries (
    id                 BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    webhook_id         BIGINT NOT NULL REFERENCES webhooks (id),
    event_id           TEXT   NOT NULL,
    booking_id         TEXT COLLATE "C" NOT NULL,
    payload            TEXT   NOT NULL,
    attempts           BIGINT NOT NULL DEFAULT 0,
    next_attempt_at_ms BIGINT NOT NULL,
    delivered_at_ms    BIGINT,
    last_error         TEXT
);
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (webhook_id, booking_id, id)
    WHERE delivered_at_ms IS NULL;

-- Small facts about the hub itself, by key. `hub_public_key`: the hub's
-- Ed25519 public key (base64), recorded by the first process to start, so
-- that a process with another key is refused rather than signing a second
-- hub log.
CREATE TABLE hub_meta (
    key   TEXT COLLATE "C" PRIMARY KEY,
    value TEXT NOT NULL
);
