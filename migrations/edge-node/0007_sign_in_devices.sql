-- Sign-in throttling keyed by who is guessing from where, not by account
-- alone: a stranger on the LAN must not be able to lock staff out.
--
-- A device is a browser, known by a long-lived random cookie that the
-- answer to its first sign-in sets (only its SHA-256 is stored). A device on which a user
-- signed in before keeps its own failure counter for that user; failures
-- from every other device share one counter per name.
--
-- Counters are keyed by the name as typed (trimmed; case-folded as
-- users.name is), whether or not a user has that name: an unknown name is
-- throttled exactly like a known one, so no answer tells which names exist.

-- Devices on which a user signed in successfully.
CREATE TABLE sign_in_devices (
    user_id         INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    device_hash     TEXT    NOT NULL,
    signed_in_at_ms INTEGER NOT NULL,
    PRIMARY KEY (user_id, device_hash)
) STRICT;

-- Consecutive failures per (name, device). `device_hash` is a device of
-- sign_in_devices for that name's user, or '' for all other devices.
CREATE TABLE sign_in_failures (
    name              TEXT    NOT NULL COLLATE NOCASE,
    device_hash       TEXT    NOT NULL,
    failed_attempts   INTEGER NOT NULL CHECK (failed_attempts > 0),
    locked_until_ms   INTEGER,
    last_failed_at_ms INTEGER NOT NULL,
    PRIMARY KEY (name, device_hash)
) STRICT;

-- Old counters are forgotten by age.
CREATE INDEX sign_in_failures_by_age ON sign_in_failures (last_failed_at_ms);

-- The per-user counters of 0003 become the shared counters of their names,
-- so an upgrade neither lifts a lock nor forgets the failures before it.
INSERT INTO sign_in_failures (name, device_hash, failed_attempts, locked_until_ms, last_failed_at_ms)
SELECT name, '', failed_attempts, locked_until_ms, coalesce(locked_until_ms, created_at_ms)
FROM users
WHERE failed_attempts > 0;

ALTER TABLE users DROP COLUMN failed_attempts;
ALTER TABLE users DROP COLUMN locked_until_ms;
