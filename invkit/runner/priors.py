"""Building the prior a run names (``--prior``): a registered prior name, or a checkpoint path."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..params import parse_kv
from ..registry import Registry
from .errors import RestoreError

__all__ = ["CHECKPOINT_SUFFIXES", "build_prior", "check_prior_name"]

#: File suffixes that make ``--prior VALUE`` a checkpoint path even before the file exists.
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".safetensors")


def prior_request(
    registry: Registry, value: str, args: Sequence[str] | dict[str, Any] | None = None, device: str | None = None
) -> tuple[str, dict[str, Any]]:
    """The registered prior and the parameters that ``--prior VALUE`` with ``--prior-arg`` values asks for.

    A value that is not a registered name but looks like a path (it exists, or ends in one of
    :data:`CHECKPOINT_SUFFIXES`) asks for the registered prior ``checkpoint`` with ``path=VALUE``
    plus ``args``. Anything else is taken as a name. ``device`` is added as the prior's ``device``
    parameter when it has one and ``args`` does not set it (analytic priors follow their input).

    Args:
        registry: Where the priors are registered.
        value: A prior name or a checkpoint file / diffusers folder.
        args: Prior parameters, as ``"K=V"`` strings or a dict.
        device: Device for priors that take one.

    Returns:
        ``(name, given)``: the registered name and the parameters given (not yet converted).

    Raises:
        RestoreError: A checkpoint path that does not exist, or one given with ``path=`` too.
        ParamError: A malformed ``K=V`` item.
        UnknownPluginError: An unknown name, when ``device`` is given (else building it raises).
    """
    given = dict(args) if isinstance(args, dict) else parse_kv(list(args or []))
    name = value
    path = _prior_path(registry, value)
    if path is not None:
        if "path" in given:
            raise RestoreError(f"--prior {value} is a checkpoint path; drop --prior-arg path=...")
        name = "checkpoint"
        given = {"path": str(path), **given}
    if device is not None and "device" not in given:
        if any(p.name == "device" for p in registry.get("prior", name).params):
            given["device"] = device
    return name, given


def build_prior(registry: Registry, value: str, args: Sequence[str] | dict[str, Any] | None = None, device: str | None = None) -> Any:
    """Build ``--prior VALUE`` with ``--prior-arg`` values: a registered prior name, or a checkpoint path.

    The arguments are those of ``prior_request``, which says what they ask for.

    Returns:
        The prior (what ``prior_request`` asks for, built by the registry).

    Raises:
        RestoreError, ParamError, UnknownPluginError: As ``prior_request``; the registry's
            errors for parameters the prior refuses.
    """
    return registry.build("prior", *prior_request(registry, value, args, device))


def check_prior_name(registry: Registry, value: str) -> None:
    """Fail fast (before reading images) on a prior that is neither a registered name nor a path.

    Raises:
        RestoreError: A checkpoint path that does not exist.
        PluginError: An unknown prior name (the message lists the known ones).
    """
    if _prior_path(registry, value) is None:
        registry.get("prior", value)  # raises for an unknown name, listing the known priors


def _prior_path(registry: Registry, value: str) -> Path | None:
    """The checkpoint path ``--prior VALUE`` means, or None for a prior name.

    A value that is not a registered name is a path when it exists, ends in a checkpoint suffix
    or contains a path separator; a missing one is a one-line :class:`RestoreError`.
    """
    if value in registry.names("prior"):
        return None
    path = Path(value).expanduser()
    if not (path.exists() or path.suffix.lower() in CHECKPOINT_SUFFIXES or os.sep in value):
        return None
    if not path.exists():
        raise RestoreError(f"prior checkpoint not found: {path} (a prior name or a checkpoint file/folder; see `invkit plugins`)")
    return path
