-- Issue 14: an event may concern generated mail that names no known message (a notice
-- with notice_delivery.message_id NULL): a 'maildrop-deferred' event for its delivery
-- into a locked maildrop is still recorded (every lock wait counts), without a message,
-- and `swctl trace` finds it by the notice's own Message-ID.
ALTER TABLE event ALTER COLUMN message_id DROP NOT NULL;
CREATE INDEX event_unattached ON event ((detail->>'copy_message_id'))
    WHERE message_id IS NULL;
