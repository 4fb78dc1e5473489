-- Issue 18: the web console (singlewindow.console). Operators log in with a name of
-- their own (swctl operator add), companies with their account; sessions and failed
-- logins are kept here, so every console process sees the same and a restart logs
-- nobody out. The console logs in as sw_console (config.CONSOLE_ROLE).

-- An operator of the hub: sees every message, every party, the Postfix queue. The same
-- strong hash as an account's (passwords.strong_hash); no DIGEST-MD5 form, the console
-- never needs one. A name is never also an account's login (swctl refuses either way).
CREATE TABLE operator (
    name           text PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9._-]{0,63}$'),
    password_hash  text NOT NULL CHECK (password_hash LIKE '{%}%'),
    created_at     timestamptz NOT NULL DEFAULT now()
);

-- A logged-in browser or script. The cookie carries a random token; only its SHA-256 is
-- stored, so a copy of this table opens no session. csrf: the token every form and
-- every API write must send back. party_id: a company's party (NULL for an operator).
CREATE TABLE console_session (
    token_sha256   text PRIMARY KEY CHECK (token_sha256 ~ '^[0-9a-f]{64}$'),
    kind           text NOT NULL CHECK (kind IN ('operator', 'company')),
    login          text NOT NULL,
    party_id       bigint REFERENCES party ON DELETE CASCADE,
    csrf           text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    last_seen_at   timestamptz NOT NULL DEFAULT now(),
    CHECK ((kind = 'company') = (party_id IS NOT NULL))
);
CREATE INDEX console_session_login ON console_session (kind, login);

-- Failed logins, by the name tried and the client's address: what slows the next ones.
CREATE TABLE console_login_failure (
    id      bigserial PRIMARY KEY,
    login   text NOT NULL,
    source  inet NOT NULL,
    at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX console_login_failure_login ON console_login_failure (login, at);
CREATE INDEX console_login_failure_source ON console_login_failure (source, at);

-- What a message list shows and is searched by, recorded by the transport with the
-- message: its Subject (as the submitter wrote it, decoded) and the first Message-ID of
-- its In-Reply-To, which ties an agency's response to the copy it answers (a copy's
-- Message-ID, forward.copy_message_id). NULL for messages recorded before this.
ALTER TABLE message ADD COLUMN subject text;
ALTER TABLE message ADD COLUMN in_reply_to text;
CREATE INDEX message_in_reply_to ON message (in_reply_to) WHERE in_reply_to IS NOT NULL;
CREATE INDEX message_party_received ON message (party_id, received_at);

-- sw_console: reads the message log and the directory; of the accounts their login,
-- party and strong hash (never the DIGEST-MD5 one); of the operators all; writes only
-- its sessions and failed logins.
DO $$
BEGIN
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO sw_console', current_database());
END
$$;
GRANT USAGE ON SCHEMA public TO sw_console;
GRANT SELECT ON message, message_recipient, event, forward, notice_delivery, party,
    peer_network, address, link, route TO sw_console;
GRANT SELECT (login, party_id, password_hash) ON account TO sw_console;
GRANT SELECT ON operator TO sw_console;
GRANT SELECT, INSERT, UPDATE, DELETE ON console_session, console_login_failure
    TO sw_console;
GRANT USAGE, SELECT ON SEQUENCE console_login_failure_id_seq TO sw_console;

-- The daemons (default privileges of 0007 gave them every new table) have no business
-- with operators or console sessions; swctl keeps operators and may end sessions.
REVOKE ALL ON operator, console_session, console_login_failure FROM sw_daemon;
REVOKE ALL ON SEQUENCE console_login_failure_id_seq FROM sw_daemon;
