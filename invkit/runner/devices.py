"""The torch device a run asks for (``--device``): the core's rule, refused as a :class:`RestoreError`."""

from __future__ import annotations

import torch

from ..devices import resolve_device as _core_resolve_device
from .errors import RestoreError

__all__ = ["resolve_device"]


def resolve_device(text: str) -> torch.device:
    """The device ``text`` names (see :func:`invkit.devices.resolve_device`).

    Raises:
        RestoreError: Not a device name, or a device this machine does not have.
    """
    try:
        return _core_resolve_device(text)
    except ValueError as exc:
        raise RestoreError(f"--device {exc}") from None
