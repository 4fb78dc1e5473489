"""The MIG: message types as data; EDIFACT and XML validation; EDIFACT to XML conversion.

Where it sits in the mail flow: after the transport's technical and address checks (so the
submitter's DSN already says "delivered to Single Window"), SPEC R6 and F6. The transport
calls :func:`validate` on the body part; on errors it sends a control message built from
:mod:`singlewindow.notices.control` and forwards nothing, otherwise it forwards ``Result.xml``.
:func:`reload` re-reads the MIG data (SIGHUP). Given a ``limit``, :func:`validate` raises
:class:`TooLarge` rather than build XML larger than a copy may carry.
"""

from singlewindow.mig.errors import ErrorClass, MigError, Place
from singlewindow.mig.loader import Registry, registry, reload
from singlewindow.mig.validate import Result, TooLarge, convert_stream, validate

__all__ = [
    "ErrorClass",
    "MigError",
    "Place",
    "Registry",
    "Result",
    "TooLarge",
    "convert_stream",
    "registry",
    "reload",
    "validate",
]
