"""What the ``degrade`` and ``solve`` commands share: the user-error type, output/input safety
checks, building ``--prior`` (a name or a checkpoint path), device resolution, output bit depth,
finite-value checks and operator parameters read back from a measurement file."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .io import Measurement
from .params import parse_kv, parse_params
from .registry import Registry

#: File suffixes that make ``--prior VALUE`` a checkpoint path even before the file exists.
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".safetensors")


class CommandError(ValueError):
    """A user-fixable problem with the command's arguments or files."""


def same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def is_input(output: Path, inputs: list[Path]) -> bool:
    return any(output.resolve() == src.resolve() or same_file(output, src) for src in inputs)


def operator_params(cls: Any, name: str, given: list[str] | None, meas: Measurement, src: Path) -> dict[str, Any]:
    """Operator parameters: the ones a measurement file recorded, plus ``--arg`` values that agree with them.

    An ``--arg`` that contradicts a recorded value (say another mask seed) would silently restore
    with a different operator than the one that made the measurement, so it is refused.
    """
    owner = f"operator '{name}'"
    if name != meas.operator or not meas.params:
        return parse_params(cls.params, given or [], owner=owner)
    recorded = parse_params(cls.params, meas.params, owner=owner)
    if not given:
        return recorded
    explicit = parse_params(cls.params, given, owner=owner)
    asked = parse_kv(given)
    for key in asked:
        if explicit[key] != recorded[key]:
            raise CommandError(
                f"measurement {src} was made with {key}={recorded[key]!r}; --arg {key}={asked[key]} contradicts it (drop that --arg)"
            )
    return recorded


def check_output(output: Path, inputs: list[Path], force: bool) -> None:
    if is_input(output, inputs):
        raise CommandError(f"output {output} is the input file; choose another output path")
    if output.is_dir():
        raise CommandError(f"output {output} is a folder; give a file name (a folder output needs a folder --input)")
    if output.exists() and not force:
        raise CommandError(f"output {output} exists; pass --force to overwrite it")


def build_prior(registry: Registry, value: str, args: Any = None, device: str | None = None) -> Any:
    """Build ``--prior VALUE`` with ``--prior-arg`` values: a registered prior name, or a checkpoint path.

    A value that is not a registered name but looks like a path (it exists, or ends in one of
    :data:`CHECKPOINT_SUFFIXES`) builds the registered prior ``checkpoint`` with ``path=VALUE``
    plus ``args``; a missing file is a :class:`CommandError` (one line). Anything else goes to the
    registry, whose error lists the known names. ``device`` is passed as the prior's ``device``
    parameter when it has one and ``args`` does not set it (analytic priors follow their input).
    """
    given = dict(args) if isinstance(args, dict) else parse_kv(args or [])
    name = value
    path = _prior_path(registry, value)
    if path is not None:
        if "path" in given:
            raise CommandError(f"--prior {value} is a checkpoint path; drop --prior-arg path=...")
        name = "checkpoint"
        given = {"path": str(path), **given}
    if device is not None and "device" not in given:
        if any(p.name == "device" for p in registry.get("prior", name).params):
            given["device"] = device
    return registry.build("prior", name, given)


def check_prior_name(registry: Registry, value: str) -> None:
    """Fail fast (before reading images) on a prior that is neither a registered name nor a path."""
    if _prior_path(registry, value) is None:
        registry.get("prior", value)  # raises for an unknown name, listing the known priors


def _prior_path(registry: Registry, value: str) -> Path | None:
    """The checkpoint path ``--prior VALUE`` means, or None for a prior name.

    A value that is not a registered name is a path when it exists, ends in a checkpoint suffix
    or contains a path separator; a missing one is a one-line :class:`CommandError`.
    """
    if value in registry.names("prior"):
        return None
    path = Path(value).expanduser()
    if not (path.exists() or path.suffix.lower() in CHECKPOINT_SUFFIXES or os.sep in value):
        return None
    if not path.exists():
        raise CommandError(f"prior checkpoint not found: {path} (a prior name or a checkpoint file/folder; see `invkit plugins`)")
    return path


def resolve_device(text: str) -> torch.device:
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError):
        raise CommandError(f"--device {text!r} is not a device; use cpu, cuda, cuda:N or auto") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise CommandError(f"--device {text}: CUDA is not available here (torch {torch.__version__}); use --device cpu or --device auto")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise CommandError(f"--device {text}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise CommandError(f"--device {text}: MPS is not available here; use --device cpu")
    return dev


def output_bits(requested: int | None, source_bits: int | None, path: Path, channels: int = 1) -> int:
    """``--bits``, else the source's bit depth where the format holds it (PNG/TIFF), else 8.

    A 16-bit RGB TIFF needs the optional ``tifffile`` package; without it this fails here, before
    any work, rather than after the solve.
    """
    bits = requested if requested is not None else (16 if source_bits and source_bits >= 16 and path.suffix.lower() in (".png", ".tif", ".tiff") else 8)
    if bits == 16 and channels == 3 and path.suffix.lower() in (".tif", ".tiff"):
        try:
            import tifffile  # noqa: F401
        except ImportError:
            raise CommandError(f"{path.name}: a 16-bit RGB TIFF needs the tifffile package (pip install tifffile); or write PNG, or pass --bits 8") from None
    return bits


def check_finite(t: Tensor, what: str) -> None:
    bad = int((~torch.isfinite(t)).sum())
    if bad:
        raise CommandError(f"{what} contains {bad} NaN or infinite value(s) out of {t.numel()}; clean or crop it first")


def check_sigma(sigma: Any) -> None:
    if not isinstance(sigma, (int, float)) or not math.isfinite(sigma) or sigma < 0:
        raise CommandError(f"--sigma-y must be a finite number >= 0 (or auto), got {sigma}")
