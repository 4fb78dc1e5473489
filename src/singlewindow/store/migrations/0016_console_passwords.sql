-- Changing a password in the web console (singlewindow.console, "Changing a password"
-- in docs/console.md): the one logged in sets its own new password. sw_console may now
-- write the hashes, and only them: an operator's strong hash, an account's strong and
-- DIGEST-MD5 hashes (both, so every mechanism takes the new password and none the old).
-- It still reads no DIGEST-MD5 hash (0013 granted SELECT on login, party_id and
-- password_hash only): an UPDATE whose WHERE names only login needs no more.
-- Its sessions (DELETE on console_session, 0013) end the login's other sessions.
GRANT UPDATE (password_hash) ON operator TO sw_console;
GRANT UPDATE (password_hash, digest_md5_hash) ON account TO sw_console;
