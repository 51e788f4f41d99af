"""glibc ``malloc`` settings for training on CPU, set by the package (no environment needed).

A CPU training step allocates and frees hundreds of large tensors. With glibc's defaults every
tensor above the (dynamic) mmap threshold is a fresh ``mmap`` whose pages fault in one by one and
go back to the kernel on free, and the top of the heap is trimmed after every large free: a
measured 330-370k page faults and over a second of kernel time per step (issue 18). Raising the
mmap threshold to its maximum and never trimming keeps freed memory in the process for the next
step; peak memory is unchanged, memory is just not handed back between steps.

``mallopt`` parameter numbers are those of glibc's ``malloc.h``. On other C libraries (musl,
macOS) nothing is changed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

__all__ = ["TRAINING_MALLOC", "tune_malloc_for_training"]

logger = logging.getLogger(__name__)

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3

# glibc caps M_MMAP_THRESHOLD at 32 MiB on 64-bit (HEAP_MAX_SIZE / 2); larger values are refused
TRAINING_MALLOC = {
    "M_MMAP_THRESHOLD": (_M_MMAP_THRESHOLD, 32 * 1024 * 1024),
    "M_TRIM_THRESHOLD": (_M_TRIM_THRESHOLD, 1024 * 1024 * 1024),
    "M_TOP_PAD": (_M_TOP_PAD, 64 * 1024 * 1024),
}

_applied: dict[str, int] | None = None


def tune_malloc_for_training() -> dict[str, int]:
    """Apply ``TRAINING_MALLOC`` once per process; returns the settings that glibc accepted."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = {}
    if not sys.platform.startswith("linux"):
        return _applied
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return _applied
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    for name, (param, value) in TRAINING_MALLOC.items():
        if mallopt(param, value) == 1:
            _applied[name] = value
    logger.debug("malloc settings for training: %s", _applied)
    return _applied
