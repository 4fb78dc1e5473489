-- SPEC D4: every copy the transport re-injects, recorded before Postfix hears the reply,
-- so a retry after a crash does not inject it twice.
CREATE TABLE forward (
    id                bigserial PRIMARY KEY,
    message_id        text NOT NULL REFERENCES message ON DELETE CASCADE,
    recipient         text NOT NULL,              -- the logical address submitted to
    destination       text NOT NULL,              -- the logical address forwarded to
    physical          text NOT NULL,              -- where the copy was sent
    copy_message_id   text NOT NULL UNIQUE,       -- Message-ID header of the copy
    state             text NOT NULL CHECK (state IN ('pending', 'injected')),
    queue_id          text,                       -- Postfix queue id of the outbound leg
    created_at        timestamptz NOT NULL DEFAULT now(),
    injected_at       timestamptz,
    UNIQUE (message_id, recipient, destination)
);
