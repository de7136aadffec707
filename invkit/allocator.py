"""Keep freed memory in the process (glibc's ``malloc``), so that large tensors are not page-faulted in anew.

PyTorch's CPU tensors come from ``malloc``. glibc serves a block above its mmap threshold (at
most 32 MiB by default) with a fresh ``mmap`` and returns it to the system on ``free``, so every
network layer's activations (hundreds of MB for a batch of tiles) are zero-filled page by page
again at every evaluation: on the 2-core machine one batch of eight 256² tiles through the
default prior spent 6–8 s of 20–22 s of CPU in the kernel (3 M minor page faults), and ran
1.5× faster with the blocks kept (docs/measurements.md, "Freed memory kept").

:func:`keep_freed_memory` raises the mmap threshold and the trim threshold with ``mallopt``,
so freed blocks stay in the heap and are reused. The process's resident memory then stays near
its peak instead of falling between evaluations; the peak itself is what the largest step
needs, as before. The ``invkit`` command calls it at start; a Python program restoring large
images on a CPU may call it too. It does nothing outside glibc (macOS, Windows, musl).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

__all__ = ["keep_freed_memory", "MMAP_THRESHOLD"]

#: Blocks up to this many bytes come from the heap and stay there when freed (``mallopt``'s int limit is 2 GiB).
MMAP_THRESHOLD = 1 << 30

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def keep_freed_memory(threshold: int = MMAP_THRESHOLD) -> bool:
    """Have glibc's ``malloc`` keep freed blocks up to ``threshold`` bytes for reuse (see the module docstring).

    Args:
        threshold: Blocks up to this size come from the heap; also the free space at the heap's
            top kept rather than returned to the system (``M_TRIM_THRESHOLD``). At most ``2**31 - 1``.

    Returns:
        Whether both settings took (False outside glibc, or when ``mallopt`` refused).

    Raises:
        ValueError: ``threshold`` not in ``[0, 2**31 - 1]``.
    """
    if not 0 <= threshold <= 2**31 - 1:
        raise ValueError(f"threshold must be in [0, 2**31 - 1] bytes, got {threshold}")
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, threshold)) and bool(mallopt(_M_TRIM_THRESHOLD, threshold))
