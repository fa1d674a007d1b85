"""Memory the process no longer uses, handed back to the system."""

from __future__ import annotations

import ctypes


def return_free_heap() -> None:
    """Hand the C heap's free pages back to the system (glibc's malloc_trim, every arena; nothing
    without glibc). For work that leaves much memory free at once and will not soon take it again:
    pages freed inside the heap otherwise stay resident for good."""
    trim = getattr(ctypes.CDLL(None), "malloc_trim", None)
    if trim is not None:
        trim(0)
