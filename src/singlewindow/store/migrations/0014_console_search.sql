-- Issue 18: the console's search (store.console.search) finds a message by the queue id
-- of any of its legs and by the party of any of its recipients, in one statement over a
-- log of millions. Without these, each such search read the whole of forward,
-- notice_delivery or message_recipient (measured: ~100 ms per 300,000 messages, growing
-- with the log). swctl trace finds a copy's or notice's queue id the same way.
CREATE INDEX forward_queue_id ON forward (queue_id) WHERE queue_id IS NOT NULL;
CREATE INDEX notice_delivery_queue_id ON notice_delivery (queue_id)
    WHERE queue_id IS NOT NULL;
-- A party's messages as a recipient: by its logical addresses.
CREATE INDEX message_recipient_logical ON message_recipient (logical);
