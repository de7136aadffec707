"""The torch device a run asks for (``--device``), checked against this machine."""

from __future__ import annotations

import torch

from .errors import RestoreError

__all__ = ["resolve_device"]


def resolve_device(text: str) -> torch.device:
    """The device ``text`` names: ``cpu``, ``cuda``, ``cuda:N``, ``mps``, or ``auto`` (CUDA when available).

    Raises:
        RestoreError: Not a device name, or a device this machine does not have.
    """
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError):
        raise RestoreError(f"--device {text!r} is not a device; use cpu, cuda, cuda:N or auto") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RestoreError(f"--device {text}: CUDA is not available here (torch {torch.__version__}); use --device cpu or --device auto")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise RestoreError(f"--device {text}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise RestoreError(f"--device {text}: MPS is not available here; use --device cpu")
    return dev
