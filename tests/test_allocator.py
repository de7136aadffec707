"""invkit.allocator: freed memory kept in the process (glibc), so large tensors are not page-faulted in again."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from invkit import keep_freed_memory

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")
THP_ALWAYS = THP.is_file() and "[always]" in THP.read_text()

CHILD = r"""
import resource, sys, torch
from invkit import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
def cycle():
    x = torch.ones(48 * 2**20 // 4)  # 48 MiB: above glibc's default mmap threshold (32 MiB at most), below MMAP_THRESHOLD
    del x
for _ in range(3):  # warm-up: the heap grows to hold the block
    cycle()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    cycle()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not GLIBC or THP_ALWAYS, reason="glibc's mallopt; 4 KiB pages (transparent huge pages not 'always')")
def test_kept_memory_is_not_faulted_in_again():
    """Five 48 MiB tensors made and freed: 5 x 12288 page faults by default, far fewer when kept."""
    env = {k: v for k, v in os.environ.items() if k != "INVKIT_KEEP_FREED_MEMORY"}

    def faults(mode: str) -> int:
        return int(subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True, check=True, env=env).stdout)

    default, kept = faults("default"), faults("keep")
    assert default >= 5 * 12288 * 0.9, default  # each tensor's pages faulted in anew (4 KiB pages)
    assert kept < default / 4, (kept, default)  # reused from the heap


@pytest.mark.skipif(not GLIBC, reason="glibc's mallopt")
def test_environment_turns_it_off(monkeypatch):
    monkeypatch.setenv("INVKIT_KEEP_FREED_MEMORY", "0")
    assert keep_freed_memory() is False


def test_threshold_is_checked():
    with pytest.raises(ValueError, match="2\\*\\*31"):
        keep_freed_memory(2**31)
    with pytest.raises(ValueError):
        keep_freed_memory(-1)
