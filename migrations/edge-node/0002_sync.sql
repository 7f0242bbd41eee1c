-- Enrollment with a hub, the sync client's progress, and the quarantine of
-- events set aside by a reset.

-- Set by `edge-node enroll`. A standalone node has NULL here.
ALTER TABLE node ADD COLUMN hub_url TEXT;
ALTER TABLE node ADD COLUMN hub_public_key TEXT;
ALTER TABLE node ADD COLUMN enrolled_at_ms INTEGER;
-- The first seq written under `epoch`; earlier events keep theirs.
ALTER TABLE node ADD COLUMN epoch_start_seq INTEGER NOT NULL DEFAULT 1;

-- One row: how far the hub has acknowledged our log, how far we have
-- applied the hub's log addressed to us, and the last health readings.
CREATE TABLE sync_state (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    acked_seq       INTEGER NOT NULL DEFAULT 0,
    pull_cursor     INTEGER NOT NULL DEFAULT 0,
    state           TEXT    NOT NULL DEFAULT 'offline' CHECK (state IN ('online', 'offline', 'error')),
    error           TEXT,
    last_push_at_ms INTEGER,
    last_pull_at_ms INTEGER,
    clock_offset_ms INTEGER,
    updated_at_ms   INTEGER
) STRICT;
INSERT INTO sync_state (id) VALUES (1);

-- Events of ours the hub never accepted (a fork after a restore from an old
-- backup), kept by `edge-node reset` for staff to review and re-enter.
CREATE TABLE quarantine (
    id                TEXT    PRIMARY KEY,
    seq               INTEGER NOT NULL,
    epoch             INTEGER NOT NULL,
    at_ms             INTEGER NOT NULL,
    kind              TEXT    NOT NULL,
    body              TEXT    NOT NULL,
    hash              TEXT    NOT NULL,
    quarantined_at_ms INTEGER NOT NULL,
    status            TEXT    NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'reentered', 'discarded'))
) STRICT;
