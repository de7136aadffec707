"""Keep freed memory in the process (glibc's ``malloc``), so that large tensors are not page-faulted in anew.

PyTorch's CPU tensors come from ``malloc``. glibc serves a block above its mmap threshold (at
most 32 MiB by default) with a fresh ``mmap`` and returns it to the system on ``free``, so every
network layer's activations (tens to hundreds of MB for tiles) are zero-filled page by page
again at every evaluation: on the 2-core machine eight 256² tiles through the default prior
spent 3.3–6.3 s of CPU in the kernel (1.5–3 M minor page faults) and took 9.5–10.7 s; with the
blocks kept and one tile per call, 0.01 s and 7.27 s (docs/measurements.md, "Freed memory kept").

:func:`keep_freed_memory` raises the mmap threshold to :data:`MMAP_THRESHOLD` and turns off
trimming with ``mallopt``, so freed blocks up to that size stay in the heap and are reused;
larger ones (whole 12 MP images) are still mapped and returned, so that the heap does not
fragment around them. The ``invkit`` command calls it at start (as a command, not when its
``main`` is called from Python); a Python program restoring large images on a CPU may call it
too. It does nothing outside glibc (macOS, Windows, musl).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import platform
from collections.abc import Callable

__all__ = ["keep_freed_memory", "MMAP_THRESHOLD"]

#: Blocks up to this many bytes come from the heap and stay there when freed: a layer's
#: activations for one 256² tile of the default prior (up to 33.5 MB), not whole 12 MP images
#: (288 MB in float64), which kept in the heap fragmented it: a 12 MP DDRM deblur then peaked at
#: 15.5 GB against 7.7 GB (a 1 GiB threshold; docs/measurements.md "Freed memory kept").
MMAP_THRESHOLD = 64 << 20

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


@functools.lru_cache(maxsize=1)
def _mallopt() -> Callable[[int, int], int] | None:
    """glibc's ``mallopt``, or None outside glibc."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return None
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return mallopt


def keep_freed_memory(threshold: int = MMAP_THRESHOLD) -> bool:
    """Have glibc's ``malloc`` keep freed blocks up to ``threshold`` bytes for reuse (see the module docstring).

    Process-wide and for the rest of the process: call it in a program, not in a library. The
    environment variable ``INVKIT_KEEP_FREED_MEMORY=0`` turns it off (it then returns False).

    Args:
        threshold: Blocks up to this size come from the heap (``M_MMAP_THRESHOLD``; at most
            ``2**31 - 1``; glibc 2.36 takes it, older manuals state a 32 MiB maximum). The free
            space at the heap's top is never returned to the system (``M_TRIM_THRESHOLD``).

    Returns:
        Whether both settings took (False outside glibc, when turned off, or when ``mallopt``
        refused one; each is tried either way).

    Raises:
        ValueError: ``threshold`` not in ``[0, 2**31 - 1]``.
    """
    if not 0 <= threshold <= 2**31 - 1:
        raise ValueError(f"threshold must be in [0, 2**31 - 1] bytes, got {threshold}")
    if os.environ.get("INVKIT_KEEP_FREED_MEMORY", "1").strip() == "0":
        return False
    mallopt = _mallopt()
    if mallopt is None:
        return False
    mmap_ok = bool(mallopt(_M_MMAP_THRESHOLD, threshold))
    # -1 is SIZE_MAX to glibc: the heap's free top is never given back (a DDRM step at 12 MP frees
    # several 288 MB images at once; trimmed, they were zero-filled again at the next step)
    trim_ok = bool(mallopt(_M_TRIM_THRESHOLD, -1))
    return mmap_ok and trim_ok
