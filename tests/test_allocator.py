"""invkit.allocator: freed memory kept in the process (glibc), so large tensors are not page-faulted in again."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from invkit import keep_freed_memory

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

CHILD = r"""
import resource, sys, torch
from invkit import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
x = torch.ones(64 * 2**20 // 4)  # 64 MiB: above glibc's default mmap threshold (32 MiB at most)
del x
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    x = torch.ones(64 * 2**20 // 4)
    del x
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not GLIBC, reason="glibc's mallopt")
def test_kept_memory_is_not_faulted_in_again():
    """Five 64 MiB tensors made and freed: 5 x 16384 page faults by default, next to none when kept."""
    faults = {mode: int(subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True, check=True).stdout) for mode in ("default", "keep")}
    assert faults["default"] >= 5 * 16384 * 0.9  # each tensor's pages faulted in anew (4 KiB pages)
    assert faults["keep"] < 16384  # reused from the heap


def test_threshold_is_checked():
    with pytest.raises(ValueError, match="2\\*\\*31"):
        keep_freed_memory(2**31)
    with pytest.raises(ValueError):
        keep_freed_memory(-1)
