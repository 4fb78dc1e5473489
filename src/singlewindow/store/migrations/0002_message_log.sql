-- SPEC F5: every message and every decision about it. The submission path fills these.

CREATE TABLE message (
    id               text PRIMARY KEY,             -- the Single Window message id
    received_at      timestamptz NOT NULL DEFAULT now(),
    listener         text NOT NULL CHECK (listener IN ('mta', 'msa', 'internal')),
    party_id         bigint REFERENCES party ON DELETE SET NULL,
    sasl_login       text,
    peer_address     inet,
    envelope_from    text NOT NULL,
    header_message_id text,                       -- the submitter's own Message-ID
    queue_id         text,                         -- Postfix queue id of the inbound leg
    payload_sha256   text,
    message_type     text
);
CREATE INDEX message_queue_id ON message (queue_id);
CREATE INDEX message_received ON message (received_at);

CREATE TABLE message_recipient (
    id               bigserial PRIMARY KEY,
    message_id       text NOT NULL REFERENCES message ON DELETE CASCADE,
    logical          text NOT NULL,
    status           text,                         -- e.g. '250 2.0.0' or '554 5.7.1'
    reason           text,
    decided_at       timestamptz,
    UNIQUE (message_id, logical)
);

CREATE TABLE event (
    id          bigserial PRIMARY KEY,
    message_id  text NOT NULL REFERENCES message ON DELETE CASCADE,
    at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    kind        text NOT NULL,
    detail      jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX event_message ON event (message_id, at);
