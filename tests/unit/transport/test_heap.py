"""The transport's malloc tuning: on this glibc both calls reach the C library."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from singlewindow.transport import heap


def test_glibc_is_found() -> None:
    assert heap._LIBC is not None  # Debian's glibc: tune() and trim() are not no-ops here


def test_tune_sets_both_parameters_without_a_warning() -> None:
    """In a fresh process, as the transport's main() calls it: mallopt accepts both
    values (a refusal logs a warning), and a large block freed afterwards goes back to
    the kernel at once (mapped on its own), which glibc's default threshold would keep."""
    script = textwrap.dedent("""
        import ctypes, logging, sys
        logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                            format="%(levelname)s %(message)s")
        from singlewindow.transport import heap

        def rss_kib():
            for line in open("/proc/self/status"):
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])

        if sys.argv[1] == "tune":
            heap.tune()
        libc = heap._LIBC
        libc.malloc.restype = ctypes.c_void_p
        libc.free.argtypes = [ctypes.c_void_p]
        # A 1 MiB block freed raises glibc's dynamic threshold to 1 MiB; then blocks
        # of 300 KiB come from the heap and, below a block still in use, stay there
        # once freed.
        libc.free(libc.malloc(1 << 20))
        blocks = [libc.malloc(300 * 1024) for _ in range(100)]
        for b in blocks:
            ctypes.memset(b, 1, 300 * 1024)
        in_use = libc.malloc(300 * 1024)
        before = rss_kib()
        for b in blocks:
            libc.free(b)
        print("released", before - rss_kib())
    """)
    env_run = [sys.executable, "-c", script]
    tuned = subprocess.run([*env_run, "tune"], capture_output=True, text=True, check=True)
    untuned = subprocess.run([*env_run, "none"], capture_output=True, text=True, check=True)
    assert "WARNING" not in tuned.stdout and "no glibc malloc" not in tuned.stdout
    released = int(tuned.stdout.split("released")[1])
    kept = int(untuned.stdout.split("released")[1])
    assert released > 25_000, tuned.stdout  # ~30 MB back to the kernel at free()
    assert kept < released / 2, (tuned.stdout, untuned.stdout)


def test_trim_gives_free_heap_memory_back() -> None:
    script = textwrap.dedent("""
        import ctypes
        from singlewindow.transport import heap

        def rss_kib():
            for line in open("/proc/self/status"):
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])

        libc = heap._LIBC
        libc.malloc.restype = ctypes.c_void_p
        libc.free.argtypes = [ctypes.c_void_p]
        # Small blocks (below any mmap threshold) from the heap; all but the last freed,
        # so the heap's top stays in use and only malloc_trim can hand the rest back.
        blocks = [libc.malloc(4000) for _ in range(20000)]
        for b in blocks:
            ctypes.memset(b, 1, 4000)
        for b in blocks[:-1]:
            libc.free(b)
        before = rss_kib()
        if __import__("sys").argv[1] == "trim":
            heap.trim()
        print(before - rss_kib())
    """)
    trimmed = subprocess.run([sys.executable, "-c", script, "trim"], capture_output=True,
                             text=True, check=True)
    left = subprocess.run([sys.executable, "-c", script, "none"], capture_output=True,
                          text=True, check=True)
    assert int(trimmed.stdout) > 40_000, trimmed.stdout  # most of ~80 MB
    assert int(left.stdout) < 10_000, left.stdout
