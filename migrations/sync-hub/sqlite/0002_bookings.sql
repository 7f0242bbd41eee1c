-- Web orders, webhooks.

-- Idempotency keys of the public booking API: the key names the booking it
-- made; a repeat answers with that booking as it is now.
CREATE TABLE idempotency_keys (
    key           TEXT    PRIMARY KEY,
    request_hash  TEXT    NOT NULL,
    booking_id    TEXT    NOT NULL,
    created_at_ms INTEGER NOT NULL
) STRICT;
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at_ms);

CREATE TABLE webhooks (
    id            INTEGER PRIMARY KEY,
    url           TEXT    NOT NULL,
    secret        TEXT    NOT NULL,
    created_at_ms INTEGER NOT NULL
) STRICT;

-- The webhook outbox: one row per booking state change per webhook,
-- written in the transaction that changed the state. Delivered in id order
-- per (webhook, booking), retried until a 2xx.
CREATE TABLE webhook_deliveries (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook_id         INTEGER NOT NULL REFERENCES webhooks (id),
    event_id           TEXT    NOT NULL,
    booking_id         TEXT    NOT NULL,
    payload            TEXT    NOT NULL,
    attempts           INTEGER NOT NULL DEFAULT 0,
    next_attempt_at_ms INTEGER NOT NULL,
    delivered_at_ms    INTEGER,
    last_error         TEXT
) STRICT;
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (webhook_id, booking_id, id)
    WHERE delivered_at_ms IS NULL;

-- Bookings the hub may have to expire itself: its web requests, its holds.
CREATE INDEX view_bookings_pending ON view_bookings (state, expires_at_ms)
    WHERE state IN ('requested', 'held');
