-- Parties, their MTA peer networks, logical/physical addresses, accounts, links, routes.
-- Integrity lives here, not only in Python: swctl and any other writer get the same rules.

CREATE TYPE party_kind AS ENUM ('company', 'agency');

CREATE TABLE party (
    id          bigserial PRIMARY KEY,
    -- 'company' and 'agency' name kinds in links, so no party may be called that.
    name        text NOT NULL UNIQUE
                CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$'
                       AND name NOT IN ('company', 'agency')),
    kind        party_kind NOT NULL,
    -- Next hop for mail to this party's physical addresses (its MTA), SPEC §6 --relay.
    relay_host  text CHECK (relay_host ~ '^[A-Za-z0-9.:\[\]-]+$'),
    relay_port  integer CHECK (relay_port BETWEEN 1 AND 65535),
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK ((relay_host IS NULL) = (relay_port IS NULL))
);

-- SPEC R1.3: an MTA party is known by the source networks of its VPN tunnel.
-- Networks of different parties must not overlap, or a peer IP would name two parties.
CREATE TABLE peer_network (
    id        bigserial PRIMARY KEY,
    party_id  bigint NOT NULL REFERENCES party ON DELETE CASCADE,
    network   cidr NOT NULL,
    EXCLUDE USING gist (network inet_ops WITH &&)
);
CREATE INDEX peer_network_party ON peer_network (party_id);

-- SPEC D7: one strong hash for PLAIN/LOGIN (and POP3 USER/PASS), one {DIGEST-MD5} hash
-- (MD5 of login:realm:password) for DIGEST-MD5. No '@' in a login: Dovecot splits a
-- login at its '@' to find the DIGEST-MD5 realm.
CREATE TABLE account (
    login            text PRIMARY KEY CHECK (login ~ '^[a-z0-9][a-z0-9._-]{0,63}$'),
    party_id         bigint NOT NULL REFERENCES party ON DELETE CASCADE,
    password_hash    text NOT NULL CHECK (password_hash LIKE '{%}%'),
    digest_md5_hash  text NOT NULL CHECK (digest_md5_hash ~ '^\{DIGEST-MD5\}[0-9a-f]{32}$'),
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (login, party_id)
);

-- A logical address (in the Single Window domain) is one-to-one with a physical one.
-- Both are stored lower-case; comparisons are on the stored form.
CREATE TABLE address (
    id              bigserial PRIMARY KEY,
    logical         text NOT NULL UNIQUE CHECK (logical = lower(logical) AND logical LIKE '%_@_%'),
    physical        text NOT NULL UNIQUE CHECK (physical = lower(physical) AND physical LIKE '%_@_%'),
    party_id        bigint NOT NULL REFERENCES party ON DELETE RESTRICT,
    -- Mail for this address goes into this account's POP3 maildrop (I2/I3 company);
    -- the account must belong to the same party.
    maildrop_login  text,
    active          boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now(),
    activated_at    timestamptz,
    FOREIGN KEY (maildrop_login, party_id) REFERENCES account (login, party_id)
);
CREATE INDEX address_party ON address (party_id);

-- Who may send to whom. Each side is a party or a party kind; the most specific row wins
-- (see store.links). Without a row: company -> agency and agency -> company allowed.
CREATE TABLE link (
    id                  bigserial PRIMARY KEY,
    sender_party_id     bigint REFERENCES party ON DELETE CASCADE,
    sender_kind         party_kind,
    recipient_party_id  bigint REFERENCES party ON DELETE CASCADE,
    recipient_kind      party_kind,
    allowed             boolean NOT NULL,
    CHECK ((sender_party_id IS NULL) <> (sender_kind IS NULL)),
    CHECK ((recipient_party_id IS NULL) <> (recipient_kind IS NULL)),
    -- PostgreSQL 15+: one row per pair, the empty side counting as equal.
    UNIQUE NULLS NOT DISTINCT (sender_party_id, sender_kind, recipient_party_id, recipient_kind)
);
INSERT INTO link (sender_kind, recipient_kind, allowed) VALUES
    ('company', 'agency', true),
    ('agency', 'company', true);

-- SPEC F3: a logical address and a message type decide the destinations. Without a route
-- the address's own physical address receives the message.
CREATE TABLE route (
    id              bigserial PRIMARY KEY,
    address_id      bigint NOT NULL REFERENCES address ON DELETE CASCADE,
    message_type    text NOT NULL CHECK (message_type <> ''),
    destination_id  bigint NOT NULL REFERENCES address ON DELETE RESTRICT,
    UNIQUE (address_id, message_type, destination_id)
);

-- SPEC R2.4: MSA submissions claimed per message (Postfix's policy "instance"), so a
-- message with many recipients, or a repeated policy query, counts once.
CREATE TABLE msa_claim (
    instance    text PRIMARY KEY,
    party_id    bigint NOT NULL REFERENCES party ON DELETE CASCADE,
    claimed_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX msa_claim_window ON msa_claim (party_id, claimed_at);
