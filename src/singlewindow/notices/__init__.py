"""DSN and control-message texts (SPEC R5, R6).

Failure and delay DSNs are written by Postfix from ``conf/postfix/bounce.cf.j2``; the
"delivered" DSN of a submission (:mod:`.delivered`, in the same words), control messages,
the report of MIG errors sent instead of forwarding, and agency-failure notices are built
here from the templates in ``templates/`` (one file per part).
"""
