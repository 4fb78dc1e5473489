"""UN/EDIFACT (ISO 9735 syntax versions 3 and 4): codec, envelope, structure, XML mapping.

Where it sits in the mail flow: the transport hands an EDIFACT body part to
:func:`singlewindow.mig.validate`; this package reads it segment by segment (``syntax``),
checks the interchange envelope and its control counts (``envelope``), walks each message
through its MIG structure (``structure``) and writes the XML that agencies receive
(``xmlmap``). Nothing here does I/O beyond iterating the byte chunks it is given.
"""
