"""Message time: the milter (pymilter), between the policy daemon and the queue.

Postfix's MTA (I1) and MSA (I2) listeners pass every message through it before the queue
(``smtpd_milters``). At end of message it forces NOTIFY=SUCCESS,FAILURE on every recipient
(SPEC R5.2), stamps the verified origin in one header after removing every copy a client
wrote (:mod:`singlewindow.origin`), and rewrites the envelope sender to the sender's
logical address so that every DSN goes to a Single Window address (SPEC §5).

``decide`` holds the end-of-message decision as a plain function over collected facts and
a directory; ``handler`` is the thin pymilter adapter that collects the facts and applies
the decision; ``server`` owns the socket and the in-memory directory
(:mod:`singlewindow.store.snapshot`).
"""
