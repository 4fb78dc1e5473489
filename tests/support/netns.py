"""Run a piece of the test process inside a lab node's network namespace.

A network namespace belongs to a thread (setns(2) changes only the calling thread's), and
a thread started from it inherits it, as does every socket made there. So a sink or a
client that should live "at" a company (its mail server's address, its routes, its
tunnel) is started from a short-lived thread entered into the company's namespace: an
aiosmtpd controller's server thread stays there, and the test's own threads never leave
the host's namespace.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
#: setns(2)'s nstype for a network namespace (<sched.h>).
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def in_netns(netns: str, work: Callable[[], T]) -> T:
    """``work()`` called in a new thread inside ``ip netns`` namespace ``netns``; its
    result returned, or its exception raised here."""
    outcome: list[T] = []
    failure: list[BaseException] = []

    def enter_and_work() -> None:
        try:
            fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns into {netns}")
            finally:
                os.close(fd)
            outcome.append(work())
        except BaseException as error:  # handed to the caller's thread
            failure.append(error)

    thread = threading.Thread(target=enter_and_work, name=f"netns-{netns}")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return outcome[0]
