-- Every participant's own ledger of units, as the hub follows it from that
-- participant's log, so the hub can hold each author to the units it has
-- (DESIGN sections 4 and 6); and the inbox events stores had to set aside.

-- The state of a booking as the participant charged with it last recorded
-- it in its own log (the view's `state` also takes in others' words, such
-- as a requester giving up). For bookings already held: the charged
-- participant's own last word on each, or `requested` while it has said
-- nothing (a request its owner has not decided). Read in one pass over the
-- logs; SQLite takes the other columns from the row holding max(seq).
ALTER TABLE view_bookings ADD COLUMN charged_state TEXT NOT NULL DEFAULT 'requested';
CREATE TEMP TABLE last_words AS
SELECT body ->> 'id' AS booking, origin, max(seq) AS seq, kind, body ->> 'state' AS state
FROM events
WHERE kind IN ('booking_created', 'booking_confirmed', 'booking_cancelled', 'booking_fulfilled',
               'booking_expired')
GROUP BY booking, origin;
CREATE INDEX temp.last_words_by_booking ON last_words (booking, origin);
UPDATE view_bookings SET charged_state = coalesce((
    SELECT CASE w.kind
               WHEN 'booking_created' THEN w.state
               WHEN 'booking_confirmed' THEN 'confirmed'
               WHEN 'booking_cancelled' THEN 'cancelled'
               WHEN 'booking_fulfilled' THEN 'fulfilled'
               ELSE 'expired'
           END
    FROM last_words AS w
    WHERE w.booking = view_bookings.id AND w.origin = view_bookings.charged_to
), 'requested');
DROP TABLE last_words;

-- Units of a pool charged to one location (its owner, or a grantee) and
-- the units its own bookings consume. The hub's own holding stays in
-- view_pools (hub_allotted, hub_used).
CREATE TABLE view_holdings (
    pool_id  TEXT    NOT NULL,
    holder   TEXT    NOT NULL,
    allotted INTEGER NOT NULL DEFAULT 0,
    used     INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (pool_id, holder)
) STRICT, WITHOUT ROWID;

-- Units one participant sent another (a grant, a return) that the receiver
-- has not yet credited in its own log.
CREATE TABLE view_in_flight (
    pool_id  TEXT    NOT NULL,
    sender   TEXT    NOT NULL,
    receiver TEXT    NOT NULL,
    units    INTEGER NOT NULL,
    PRIMARY KEY (pool_id, sender, receiver)
) STRICT, WITHOUT ROWID;

-- The ledgers of what the hub holds already, from the logs it holds. Each
-- is a sum over one participant's events, so the order they arrived in
-- does not matter: an owner starts with the capacity (every adjustment
-- included), gives away what it grants and gets back what it credits; a
-- grantee holds what it credited less what it returned.
INSERT INTO view_holdings (pool_id, holder, allotted)
SELECT id, owner, capacity FROM view_pools WHERE owner != 'hub';

INSERT INTO view_holdings (pool_id, holder, allotted)
SELECT pool, origin, sum(delta) FROM (
    SELECT body ->> 'pool' AS pool, origin,
           CASE kind WHEN 'allotment_credited' THEN body ->> 'units' ELSE -(body ->> 'units') END AS delta
    FROM events
    WHERE origin != 'hub' AND kind IN ('allotment_granted', 'allotment_returned', 'allotment_credited')
) WHERE true GROUP BY pool, origin
ON CONFLICT (pool_id, holder) DO UPDATE SET allotted = allotted + excluded.allotted;

INSERT INTO view_holdings (pool_id, holder, used)
SELECT line.value ->> 'pool_id', b.charged_to, sum(line.value ->> 'quantity')
FROM view_bookings AS b, json_each(b.lines) AS line
WHERE b.charged_to != 'hub' AND b.charged_state IN ('held', 'confirmed', 'fulfilled')
GROUP BY 1, 2
ON CONFLICT (pool_id, holder) DO UPDATE SET used = used + excluded.used;

INSERT INTO view_in_flight (pool_id, sender, receiver, units)
SELECT pool, sender, receiver, sum(units) FROM (
    SELECT body ->> 'pool' AS pool, origin AS sender, body ->> 'to' AS receiver,
           body ->> 'units' AS units
    FROM events
    WHERE kind = 'allotment_granted' AND origin != 'hub' AND body ->> 'to' != 'hub'
    UNION ALL
    SELECT e.body ->> 'pool', e.origin, p.owner, e.body ->> 'units'
    FROM events AS e JOIN view_pools AS p ON p.id = e.body ->> 'pool'
    WHERE e.kind = 'allotment_returned'
    UNION ALL
    SELECT body ->> 'pool', body ->> 'from', origin, -(body ->> 'units')
    FROM events
    WHERE kind = 'allotment_credited' AND origin != 'hub'
) WHERE true GROUP BY pool, sender, receiver;

-- Replaced by view_holdings.
DROP TABLE view_allotments;

-- A stock resource has one pool: checked for every pool created.
CREATE INDEX view_pools_by_resource ON view_pools (resource_id);

-- Inbox events a location could not apply and set aside (its
-- inbox_set_aside events), for the operator to see.
CREATE TABLE view_set_aside (
    location TEXT    NOT NULL,
    hub_seq  INTEGER NOT NULL,
    origin   TEXT    NOT NULL,
    kind     TEXT    NOT NULL,
    reason   TEXT    NOT NULL,
    at_ms    INTEGER NOT NULL,
    PRIMARY KEY (location, hub_seq)
) STRICT, WITHOUT ROWID;
