"""DSN and control-message texts (SPEC R5, R6).

DSNs are written by Postfix from ``conf/postfix/bounce.cf.j2``; control messages, the
report of MIG errors sent instead of forwarding, are built here from the templates in
``templates/`` (one file per part).
"""
