-- The other locations this node has heard of through the hub (it tells
-- each location which others enrolled): the participants it may grant
-- units to. Filled from `location_joined` events, so a rebuild from the
-- node's own log restores it.
CREATE TABLE known_locations (
    id           TEXT    PRIMARY KEY,
    name         TEXT    NOT NULL,
    joined_at_ms INTEGER NOT NULL
) STRICT;
