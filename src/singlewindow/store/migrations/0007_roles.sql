-- Issue 12: every part of the hub logs in as its own role, with only the rights it needs
-- (names in singlewindow/config.py; swctl stack and the singlewindow_postgresql role
-- create them before migrating). This runs as the owner, sw, the only role with DDL.
--   sw_postfix  Postfix's pgsql tables: the columns its two queries read, nothing else.
--   sw_dovecot  Dovecot's passdb and userdb: the accounts' login and hashes.
--   sw_daemon   policy, milter, transport: read the directory (never a password hash),
--               write the message log and the tables migrations add later.
--   sw_admin    swctl: write the directory, read the message log, never rewrite it.

-- Nobody but these roles connects, and nobody creates objects: no temporary tables, no
-- CREATE in the public schema (PostgreSQL 15 already withholds the latter; said again).
DO $$
BEGIN
    EXECUTE format('REVOKE ALL ON DATABASE %I FROM PUBLIC', current_database());
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO sw_admin, sw_daemon, sw_postfix,'
                   ' sw_dovecot', current_database());
END
$$;
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO sw_admin, sw_daemon, sw_postfix, sw_dovecot;

-- Postfix: relay_recipient_maps (address.logical) and transport_maps (address.physical
-- joined to the party's relay). Column grants: a wider SELECT is refused.
GRANT SELECT (logical, physical, party_id) ON address TO sw_postfix;
GRANT SELECT (id, relay_host, relay_port) ON party TO sw_postfix;

-- Dovecot: the two passdbs and the userdb read only the account.
GRANT SELECT (login, password_hash, digest_md5_hash) ON account TO sw_dovecot;

-- The daemons and swctl: every table, existing (those of 0001-0007 too) and created by
-- later migrations (default privileges of the owner, who runs them) ...
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO sw_daemon, sw_admin;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO sw_daemon, sw_admin;
ALTER DEFAULT PRIVILEGES FOR ROLE sw IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO sw_daemon, sw_admin;
ALTER DEFAULT PRIVILEGES FOR ROLE sw IN SCHEMA public
    GRANT USAGE, SELECT ON SEQUENCES TO sw_daemon, sw_admin;

-- ... except what is not theirs: the daemons only read the directory, and of the
-- accounts only who belongs to which party (the hashes are Dovecot's);
REVOKE INSERT, UPDATE, DELETE ON party, peer_network, account, address, link, route
    FROM sw_daemon;
REVOKE SELECT ON account FROM sw_daemon;
GRANT SELECT (login, party_id) ON account TO sw_daemon;
-- swctl reads the message log (trace) but does not rewrite it;
REVOKE INSERT, UPDATE, DELETE ON message, message_recipient, event, forward,
    notice_delivery, msa_claim FROM sw_admin;
-- and the migrations' own bookkeeping is the owner's.
REVOKE INSERT, UPDATE, DELETE ON schema_migration FROM sw_daemon, sw_admin;
