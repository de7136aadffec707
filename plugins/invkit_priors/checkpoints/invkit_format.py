"""invkit's own prior file: one ``.safetensors`` holding the weights and everything needed to use them.

The string metadata of the file (format ``invkit-prior-v1``):

* ``format``: ``"invkit-prior-v1"`` (a newer ``invkit-prior-*`` is refused by name);
* ``architecture``: ``"adm"`` or ``"ddpm"``;
* ``flags``: JSON object of the network's flags (:meth:`ADMConfig.to_flags
  <invkit_priors.networks.adm.ADMConfig.to_flags>` or :meth:`DDPMConfig.to_dict
  <invkit_priors.networks.ddpm.DDPMConfig.to_dict>`);
* ``prediction``: ``"epsilon"``, ``"x0"`` or ``"v"``;
* ``schedule``: JSON, e.g. ``{"betas": "linear", "beta_start": 1e-4, "beta_end": 0.02, "steps":
  1000}``, ``"cosine"``, or an explicit list of betas
  (:func:`~invkit_priors.checkpoints.schedule.schedule_from_metadata` reads it);
* ``data_range``: ``"[-1, 1]"`` (the only one supported);
* anything else the writer was given (the training script records its step, images seen,
  seconds and crop size as ``train_*``).

:func:`write_invkit_prior` is the one writer (the training script's ``--export`` calls it),
:func:`read_invkit_metadata` the one reader of the metadata; the tensors are read by
:func:`~invkit_priors.checkpoints.safe_load.load_state_dict_file` and the whole prior by
:func:`~invkit_priors.checkpoints.load.load_checkpoint_prior`.

Example:
    >>> import json, os, tempfile, torch
    >>> path = os.path.join(tempfile.mkdtemp(), "p.safetensors")
    >>> _ = write_invkit_prior(path, {"w": torch.zeros(2)}, architecture="adm", flags={"image_size": 64})
    >>> meta = read_invkit_metadata(path)
    >>> meta["format"], json.loads(meta["flags"]), meta["prediction"]
    ('invkit-prior-v1', {'image_size': 64}, 'epsilon')
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .safe_load import CheckpointError, save_state_dict
from .schedule import DEFAULT_SCHEDULE

__all__ = ["INVKIT_FORMAT", "ARCHITECTURES", "read_invkit_metadata", "write_invkit_prior"]

#: ``format`` metadata of invkit's own prior files.
INVKIT_FORMAT = "invkit-prior-v1"
#: Architectures an invkit prior file may name.
ARCHITECTURES: tuple[str, ...] = ("adm", "ddpm")
_PREDICTIONS = ("epsilon", "x0", "v")


def write_invkit_prior(
    path: str | os.PathLike[str],
    state: Mapping[str, Tensor],
    *,
    architecture: str,
    flags: Mapping[str, Any],
    prediction: str = "epsilon",
    schedule: Mapping[str, Any] | str | list[float] = DEFAULT_SCHEDULE,
    dtype: torch.dtype | None = torch.float16,
    extra: Mapping[str, str] | None = None,
) -> Path:
    """Write an invkit prior file atomically.

    Args:
        path: Destination ``.safetensors`` file (its folder is created).
        state: The network's state dict (e.g. EMA weights).
        architecture: ``"adm"`` or ``"ddpm"``.
        flags: The network's flags, JSON-serialisable.
        prediction: ``"epsilon"``, ``"x0"`` or ``"v"``.
        schedule: The training noise schedule (see the module notes).
        dtype: Cast floating-point tensors to this dtype (float16 halves the file; ``None`` keeps them).
        extra: More string metadata (provenance), written after the format's own keys.

    Returns:
        ``path``.

    Raises:
        ValueError: Unknown architecture or prediction, a non-``.safetensors`` path, an extra key
            that would overwrite a format key, or a non-string extra value.
    """
    path = Path(path)
    if path.suffix.lower() != ".safetensors":
        raise ValueError(f"{path}: an invkit prior file is a .safetensors file")
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; expected one of {', '.join(ARCHITECTURES)}")
    if prediction not in _PREDICTIONS:
        raise ValueError(f"unknown prediction {prediction!r}; expected one of {', '.join(_PREDICTIONS)}")
    meta = {
        "format": INVKIT_FORMAT,
        "architecture": architecture,
        "flags": json.dumps(dict(flags)),
        "prediction": prediction,
        "schedule": json.dumps(schedule),
        "data_range": "[-1, 1]",
    }
    clash = sorted(set(extra or {}) & set(meta))
    if clash:
        raise ValueError(f"extra metadata may not overwrite the format's keys {clash}")
    meta.update(extra or {})
    tensors = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v) for k, v in state.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_state_dict(path, tensors, metadata=meta)


def read_invkit_metadata(path: str | os.PathLike[str]) -> dict[str, str] | None:
    """The metadata of an invkit ``.safetensors`` prior file, or ``None`` for any other file.

    Raises:
        CheckpointError: The file says it is an invkit prior of a format this version cannot read.
    """
    path = Path(path)
    if path.suffix.lower() != ".safetensors" or not path.is_file():
        return None
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
    except Exception:  # noqa: BLE001 - unreadable files get the loader's one-line error later
        return None
    fmt = meta.get("format", "")
    if fmt == INVKIT_FORMAT:
        return dict(meta)
    if fmt.startswith("invkit-prior-"):
        raise CheckpointError(f"{path}: prior format {fmt!r} is newer than this invkit reads ({INVKIT_FORMAT}); upgrade invkit")
    return None
