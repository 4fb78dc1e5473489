-- Issue 12: a delivery report about a copy is matched only by what Single Window put on
-- the copy and nobody else knows. Until now a copy's ENVID (RFC 3461 4.4) was the
-- Single Window id, which the submitter reads in its own DSN, so any party knowing an id
-- could have a failure pinned on another party's message. Each copy now carries its own
-- ENVID: 122 random bits from PostgreSQL's strong random source (gen_random_uuid), kept
-- with the copy so every retry of it sends the same one. Copies sent before this
-- migration get a token they never carried: reports about them match only by the
-- copy's own Message-ID, and only from the party the copy went to.
ALTER TABLE forward ADD COLUMN envid text NOT NULL
    DEFAULT 'SWE' || replace(gen_random_uuid()::text, '-', '');
CREATE UNIQUE INDEX forward_envid ON forward (envid);
