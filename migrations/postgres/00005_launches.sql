-- +goose Up

-- launches.id now holds the hex SHA-256 of the launch value instead of the
-- value itself, so whoever can read the database cannot use a live launch.
-- Launches last minutes, so the ones already stored are deleted rather than
-- hashed (SQLite has no SHA-256 function, and both dialects do the same):
-- an EHR launch begun before the upgrade has to be started again.
DELETE FROM launches;

-- aud is the FHIR base URL the EHR launched the app against (the iss it was
-- given), so that authorization can hold the app to that server.
ALTER TABLE launches ADD COLUMN aud text NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE launches DROP COLUMN aud;

-- A digest cannot be turned back into a launch value, so the earlier code
-- could not find these launches either.
DELETE FROM launches;
