-- Issue 18: what each console login looked at. The messages carry personal data
-- (passenger and crew lists), so the operator must be able to answer "who looked at
-- this message?" and "what did login X look at?". The console writes a row before it
-- shows a message, a search's results, a party or the queue (store.console.record_view);
-- when it cannot, it shows nothing (503). Append-only: nobody but the owner may change
-- or delete a row.

-- kind, login: who (an operator's name or an account's login, as the session has it);
-- source: the client's address (0.0.0.0 where there is none, as for failed logins);
-- message_id: the message shown (message.id, a Single Window id), no REFERENCES: the
-- record outlives the message; detail: what was asked (a search's criteria, a party's
-- name, the id as typed), cut by the store.
CREATE TABLE console_view (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    kind        text NOT NULL CHECK (kind IN ('operator', 'company')),
    login       text NOT NULL,
    source      inet NOT NULL,
    action      text NOT NULL CHECK (action IN ('message', 'search', 'parties', 'party',
                                                'queue')),
    message_id  text,
    detail      text
);
-- Who looked at this message (the operator's message page, swctl audit --message);
-- what did this login look at (swctl audit --login); the newest first (swctl audit).
-- In the order store.console.views reads them (at, then id), so a page of the newest
-- is read off the index and stops at its last row.
CREATE INDEX console_view_message ON console_view (message_id, at DESC, id DESC)
    WHERE message_id IS NOT NULL;
CREATE INDEX console_view_login ON console_view (login, at DESC, id DESC);
CREATE INDEX console_view_at ON console_view (at DESC, id DESC);

-- sw_console writes a row and reads them (the operator's message page); it may neither
-- change nor delete one.
GRANT SELECT, INSERT ON console_view TO sw_console;
GRANT USAGE ON SEQUENCE console_view_id_seq TO sw_console;

-- The daemons (default privileges of 0007 gave them every new table) have no business
-- with it; swctl reads it (swctl audit) and does not rewrite it.
REVOKE ALL ON console_view FROM sw_daemon;
REVOKE ALL ON SEQUENCE console_view_id_seq FROM sw_daemon;
REVOKE INSERT, UPDATE, DELETE ON console_view FROM sw_admin;
REVOKE ALL ON SEQUENCE console_view_id_seq FROM sw_admin;
