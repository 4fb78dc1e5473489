-- Issue 12: a message whose origin stamp does not verify is refused, and the operator
-- finds it with `swctl trace` by its queue id, its Message-ID, or the Single Window id
-- and queue id its forged stamp claimed. It is logged as a message of its own (a new
-- Single Window id: the claimed one may be a real message's) on the pseudo-listener
-- 'refused', with a 'stamp-refused' event naming why and what the stamp claimed.
ALTER TABLE message DROP CONSTRAINT message_listener_check;
ALTER TABLE message ADD CONSTRAINT message_listener_check
    CHECK (listener IN ('mta', 'msa', 'internal', 'refused'));
CREATE INDEX event_stamp_claimed_id ON event ((detail->>'claimed_id'))
    WHERE kind = 'stamp-refused';
CREATE INDEX event_stamp_claimed_queue ON event ((detail->>'claimed_queue'))
    WHERE kind = 'stamp-refused';
