-- +goose Up

-- launches.id now holds the hex SHA-256 of the launch value instead of the
-- value itself, so whoever can read the database cannot use a live launch.
-- Launches last minutes, so the ones already stored are deleted rather than
-- hashed (SQLite has no SHA-256 function, and both dialects do the same):
-- an EHR launch begun before the upgrade has to be started again.
DELETE FROM launches;

-- +goose Down
-- A digest cannot be turned back into a launch value, so the earlier code
-- could not find these launches either.
DELETE FROM launches;
