"""The torch device a name asks for, checked against this machine (one rule for the runner and the loaders)."""

from __future__ import annotations

import torch

__all__ = ["resolve_device"]


def resolve_device(name: str | torch.device) -> torch.device:
    """The device ``name`` names: ``cpu``, ``cuda``, ``cuda:N``, ``mps``, or ``auto`` (CUDA when available).

    Args:
        name: A device name or a ``torch.device``.

    Raises:
        ValueError: Not a device name, or a device this machine does not have (one sentence naming the fix).

    Example:
        >>> resolve_device("cpu"), resolve_device("auto").type in ("cpu", "cuda")
        (device(type='cpu'), True)
    """
    text = str(name)
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError):
        raise ValueError(f"{text!r} is not a device; use cpu, cuda, cuda:N or auto") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{text}: CUDA is not available here (torch {torch.__version__}); use cpu or auto")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"{text}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ValueError(f"{text}: MPS is not available here; use cpu")
    return dev
