-- Message ids Single Window shows instead of a party's own (issue 12): a Message-ID,
-- In-Reply-To or References id that names the writer's hosts reaches the other side as
-- an alias in Single Window's domain, and a reply naming the alias reaches the writer
-- with its own id again (threading works on both sides, nothing leaks).
CREATE TABLE message_id_alias (
    alias       text PRIMARY KEY,                 -- <SWR...@domain>, what others see
    party_id    bigint NOT NULL REFERENCES party ON DELETE CASCADE,  -- whose id it is
    original    text NOT NULL,                    -- the id as that party wrote it
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (party_id, original)
);

-- A submitter's own earlier Message-ID, named in a later message, maps to the copy the
-- reader got of it: looked up by (party, Message-ID).
CREATE INDEX message_header_message_id ON message (header_message_id, party_id);
