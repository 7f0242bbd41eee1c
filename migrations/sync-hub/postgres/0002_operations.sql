-- Operations: the fleet dashboard's operators and their sessions, and the
-- alerts the hub raised.

CREATE TABLE operators (
    name             TEXT    PRIMARY KEY,
    password_hash    TEXT    NOT NULL,
    created_at_ms    BIGINT  NOT NULL,
    failed_attempts  INTEGER NOT NULL DEFAULT 0,
    locked_until_ms  BIGINT
);

CREATE TABLE operator_sessions (
    token_hash    TEXT    PRIMARY KEY,
    operator      TEXT    NOT NULL REFERENCES operators (name) ON DELETE CASCADE,
    csrf          TEXT    NOT NULL,
    created_at_ms BIGINT  NOT NULL,
    last_seen_ms  BIGINT  NOT NULL
);
CREATE INDEX operator_sessions_by_operator ON operator_sessions (operator);

CREATE TABLE alerts (
    id            BIGSERIAL PRIMARY KEY,
    key           TEXT    NOT NULL,
    kind          TEXT    NOT NULL,
    subject       TEXT    NOT NULL,
    message       TEXT    NOT NULL,
    raised_at_ms  BIGINT  NOT NULL,
    cleared_at_ms BIGINT
);
CREATE UNIQUE INDEX alerts_open ON alerts (key) WHERE cleared_at_ms IS NULL;

CREATE INDEX view_pools_overbooked ON view_pools (owner) WHERE used > capacity;
