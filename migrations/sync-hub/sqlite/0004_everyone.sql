-- Hub events addressed to every location (locations joining, catalog) are
-- stored once, with recipient '*', instead of once per location. A hub
-- that already has enrolled locations readdresses what it had copied to
-- each of them, once, when it next opens (see `address_to_everyone`).
CREATE TABLE hub_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;

INSERT INTO hub_meta (key, value)
SELECT 'address_to_everyone', 'pending'
WHERE EXISTS (SELECT 1 FROM locations WHERE public_key IS NOT NULL);

-- Nonces of signed requests are kept in memory now (with requests signed
-- before the hub started refused), not written for every request.
DROP TABLE nonces;
