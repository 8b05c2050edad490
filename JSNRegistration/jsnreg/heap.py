"""Heap setting of the processes that register joints (the command line, the worker)."""

from __future__ import annotations

import sys

# glibc's mallopt parameters and the values set: arrays up to 32 MB (its largest mmap threshold)
# come from the heap, and up to 64 MB of freed heap is kept for reuse.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
TRIM_THRESHOLD_BYTES = 64 << 20
MMAP_THRESHOLD_BYTES = 32 << 20


def keep_freed_memory() -> bool:
    """Let glibc keep freed memory for reuse. By default it returns the top of the heap to the
    system once a few hundred kB lie free there, and a joint's registration allocates and frees
    arrays of 0.1-2 MB by the hundred: each one returned came back as page faults, ~1500 a joint
    and 8 % of its CPU time (the same numbers either way). Setting the trim threshold alone would
    fix glibc's mmap threshold at 128 kB, and every larger array would be a fresh mapping, so both
    are set. False where the C library is not glibc."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
        return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
    except (OSError, AttributeError):
        return False
