-- Issue 10: a copy counts as sent only on proof that its receiver committed it, and a
-- claim carries a lease so that two attempts never send the same copy at once.

-- refused: the receiver refused the copy for good (e.g. 552 5.3.4, too big); the
-- submitter was told, and no later attempt sends it.
ALTER TABLE forward DROP CONSTRAINT forward_state_check;
ALTER TABLE forward ADD CONSTRAINT forward_state_check
    CHECK (state IN ('pending', 'injected', 'refused'));
ALTER TABLE forward
    ADD COLUMN lease_until timestamptz,           -- an attempt is sending it until then
    ADD COLUMN attempts    integer NOT NULL DEFAULT 1,
    ADD COLUMN refusal     text;                  -- the receiver's reply, when refused

-- Mail Single Window generated (Postfix's DSNs, control messages, agency-failure
-- notices) that the transport delivers to a party's physical address or maildrop: the
-- same exactly-once bookkeeping as the copies of submissions. One row per message (its
-- bytes, which are the same on every retry of the queue file) and recipient.
CREATE TABLE notice_delivery (
    id                bigserial PRIMARY KEY,
    key               text NOT NULL UNIQUE,       -- sha256 of the message and recipient
    message_id        text REFERENCES message ON DELETE CASCADE,  -- what it is about, if known
    recipient         text NOT NULL,              -- the logical address
    physical          text NOT NULL,              -- where it was delivered
    kind              text NOT NULL,              -- dsn, control, agency-failure, other
    copy_message_id   text NOT NULL UNIQUE,       -- Message-ID of the delivered copy
    state             text NOT NULL CHECK (state IN ('pending', 'injected', 'refused')),
    queue_id          text,
    lease_until       timestamptz,
    attempts          integer NOT NULL DEFAULT 1,
    refusal           text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    injected_at       timestamptz
);
CREATE INDEX notice_delivery_message ON notice_delivery (message_id);
