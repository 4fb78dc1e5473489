"""Single Window: a message hub between companies and government agencies.

Stock Postfix speaks SMTP, stock Dovecot speaks POP3 and SASL, PostgreSQL holds the state.
This package adds what Single Window means around them, laid out in mail-flow order:

- ``policy``    — RCPT time: who is talking, may they send (Postfix policy delegation)
- ``milter``    — message time: NOTIFY, origin stamp, envelope sender (pymilter)
- ``transport`` — after the queue: checks, routing, translation, forwarding (LMTP)
- ``notices``   — every notice the hub writes (DSNs, control messages), from templates
- ``mig``       — the message rules: EDIFACT and XML validation and conversion
- ``store``     — PostgreSQL schema, migrations and queries
- ``stack``     — the local stack: private PostgreSQL, Postfix and Dovecot instances
- ``cli``       — ``swctl``, the operator's command
"""

__version__ = "0.1.0"
