"""What every path of the router works with: the configuration, the injector copies go
out through, the backend hop, the directory and the claim lease.

The router (:mod:`.router`) makes one :class:`Context` and hands it to the paths a
message takes: a submission (:mod:`.submission`), an agency's report on a copy
(:mod:`.agency_report`), mail the hub generated (:mod:`.generated`), each of which sends
its copies exactly once through :mod:`.copies`.
"""

from __future__ import annotations

from dataclasses import dataclass

from singlewindow.config import Config
from singlewindow.store import snapshot
from singlewindow.store.snapshot import Lookups
from singlewindow.transport.forward import Injector
from singlewindow.transport.hop import Hop


@dataclass(slots=True)
class Context:
    config: Config
    injector: Injector
    """Where copies are re-injected into Postfix (tests put a sink's in its place)."""
    hop: Hop | None = None
    """An edge of a multi-node hub delivers maildrops on the backend (issue 15)."""

    @property
    def where(self) -> Lookups:
        """The directory in memory (issue 13): look-ups without a statement; this
        process's own, also in a worker forked after the router was made."""
        return snapshot.shared(self.config.database, "sw-transport")

    @property
    def lease(self) -> float:
        """Seconds a claim on a copy is held (SPEC D4)."""
        return self.config.transport.claim_lease
