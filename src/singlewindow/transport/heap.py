"""The transport's malloc: large messages give their memory back (issue 13).

Where it sits: process-wide, set once when the transport starts (:func:`tune`), and used
by the router after each large message (:func:`trim`). A large message makes buffers of
many MB (the submission, its XML) and millions of small blocks (lxml trees in the MIG
worker threads). glibc, left alone, keeps that memory: its mmap threshold rises to the
size of each large block freed (up to 32 MiB, mallopt(3) ``M_MMAP_THRESHOLD``), so later
large buffers come from the heap, and a heap returns only what lies at its top; and each
thread that allocates may get an arena of its own (up to 8 per core, ``M_ARENA_MAX``),
each keeping its free memory. A transport that had handled a few 6 MB interchanges stayed
at 1.3 GiB. Here: large blocks are always mapped (so they go back when freed), two
arenas at most (the MIG uses two worker threads), and after a large message
``malloc_trim(0)`` hands the free pages of every arena back to the kernel.

Other C libraries (musl) have none of this: then nothing is done.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger("sw-transport")

#: mallopt(3) parameters (glibc <malloc.h>).
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
#: Blocks of this size and more are mapped on their own and unmapped when freed; fixed,
#: so glibc's dynamic threshold stays off. Python's own small objects are not affected
#: (its allocator maps 256 KiB arenas itself).
MMAP_THRESHOLD = 256 * 1024
#: At most this many malloc arenas for all threads.
ARENA_MAX = 2
#: Messages of at least this many bytes are followed by :func:`trim`.
TRIM_AFTER = 1 << 20


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    libc = ctypes.CDLL(name)
    return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None


_LIBC = _libc()


def tune() -> None:
    """Set the mmap threshold and the arena limit; before any worker thread starts."""
    if _LIBC is None:
        log.info("no glibc malloc: its tuning is left out")
        return
    for param, value in ((M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_ARENA_MAX, ARENA_MAX)):
        if _LIBC.mallopt(param, value) != 1:
            log.warning("mallopt(%d, %d) failed", param, value)


def trim() -> None:
    """Give the free memory of every malloc arena back to the kernel."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
