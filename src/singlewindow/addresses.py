"""What an e-mail address looks like in free text: one pattern for every place that
finds addresses in what it did not parse as addresses.

The transport scrubs physical addresses out of Postfix's DSNs (:mod:`.transport.readers`)
and withholds addresses in the readable text of generated mail (:mod:`.transport.translate`);
the agency-failure notice withholds them in an agency MTA's diagnostic
(:mod:`.notices.agency`). A dot-atom local part (RFC 5322 3.2.3's atext and dots), ``@``,
and a host name that ends in a letter or digit, so the full stop after an address in a
sentence is not taken for part of it.
"""

from __future__ import annotations

import re

#: The regular expression's source, for text and (encoded) for bytes.
PATTERN = r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]*[A-Za-z0-9]"
IN_TEXT = re.compile(PATTERN)
IN_BYTES = re.compile(PATTERN.encode())
