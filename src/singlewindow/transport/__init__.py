"""The routing transport: what Postfix hands mail to after the queue, over LMTP.

``checks`` judges the content (SPEC R5.3 reasons 1-7) without I/O; ``lmtp`` is the server
that owns the socket and asks a pluggable ``deliver`` callable for one status per recipient.
"""
