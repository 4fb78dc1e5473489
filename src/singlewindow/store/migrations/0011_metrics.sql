-- Issue 14: the metrics exporter (singlewindow.metrics) reads its counters from the
-- message log at every scrape, in one statement; this keeps that cheap and exact.

-- Why a recipient was refused, as a keyword (singlewindow.replies.Reply.key: SPEC R5.3's
-- ten reasons and Single Window's own), so failures are counted by reason without
-- reading the sentence the submitter reads. Outcomes recorded before this have none
-- (counted as 'other').
ALTER TABLE message_recipient ADD COLUMN reason_key text;

-- When the message was submitted: the time the milter wrote into its Single Window id
-- when Postfix accepted it (store.messages.record_message). received_at is when the
-- transport first saw it, after the queue, which would hide the time a message waited
-- there from the latency histograms. NULL before this migration (received_at stands in).
ALTER TABLE message ADD COLUMN submitted_at timestamptz;

-- The events the exporter reads in full (a validation's time and findings, a maildrop
-- deferral) or of the last days (reports about copies, automatic submissions), out of
-- the many per message: found without reading the others.
CREATE INDEX event_counted ON event (kind, at)
    WHERE kind IN ('mig-validated', 'maildrop-deferred', 'agency-dsn', 'automatic');
