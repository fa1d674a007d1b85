"""The C heap: hand its free pages back to the system where a burst of work left them.

glibc keeps what a program frees for its next requests and gives back only the free top of each
heap, so memory a burst took (a build at start, a snapshot on a thread of its own) stays resident
after it is free. `return_free_heap` releases every free page of every heap (glibc's
`malloc_trim`; nothing without glibc): a few milliseconds, for a burst that will not come again
soon.
"""

from __future__ import annotations

import ctypes

__all__ = ["return_free_heap"]


def return_free_heap() -> None:
    trim = getattr(ctypes.CDLL(None), "malloc_trim", None)
    if trim is not None:
        trim(0)
