"""Output files of a run: never an input, never clobbered without ``force``, and their bit depth."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from ..io import MEASUREMENT_SUFFIX

from .errors import RestoreError

__all__ = ["same_file", "is_input", "check_output", "output_bits", "file_arguments", "recorded_file_arguments", "probe_writable", "refuse_input"]


def same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` both exist and are the same file (links included)."""
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def is_input(output: Path, inputs: list[Path]) -> bool:
    """Whether writing ``output`` would overwrite one of ``inputs``."""
    return any(output.resolve() == src.resolve() or same_file(output, src) for src in inputs)


def file_arguments(args: list[str] | tuple[str, ...] | None) -> list[Path]:
    """The files named by ``K=V`` parameter strings (``--arg mask_file=holes.png``): every value
    that is an existing file. A run reads them, so they are inputs that no output may overwrite,
    whatever the parameter is called (plugins' parameters included).

    Example:
        >>> file_arguments(["sigma=2.0", "kernel=file"])
        []
    """
    found = []
    for item in args or ():
        if not isinstance(item, str) or "=" not in item:
            continue
        value = item.split("=", 1)[1].strip()
        try:
            if value and Path(value).is_file():
                found.append(Path(value))
        except (OSError, ValueError):  # a value too long or odd to be a path
            continue
    return found


def recorded_file_arguments(sources: Iterable[Path]) -> list[Path]:
    """The files that ``.safetensors`` measurements among ``sources`` name in their recorded operator
    parameters (``mask_file``, ``kernel_file``: made absolute by ``invkit degrade``): a run that
    restores them reads those files too (:func:`file_arguments`). Only the metadata header is read;
    an unreadable file is skipped here (reading it later refuses it with the reason).
    """
    found: list[Path] = []
    for src in sources:
        if src.suffix != MEASUREMENT_SUFFIX or not src.is_file():
            continue
        try:
            from safetensors.torch import safe_open

            with safe_open(str(src), framework="pt") as f:
                params = json.loads((f.metadata() or {}).get("params", "{}"))
        except Exception:  # noqa: BLE001 - any broken file is refused, with its reason, when it is read
            continue
        if isinstance(params, dict):
            found += file_arguments([f"{k}={v}" for k, v in params.items() if isinstance(v, str)])
    return found


def probe_writable(folder: Path) -> None:
    """Check, before any work, that files can be created in ``folder`` (or, when it does not exist
    yet, in its nearest existing parent, where it will be created): create and remove an empty
    temporary file there. Permissions alone do not tell (root ignores them; a read-only mount or
    a full quota does not show in them).

    Raises:
        RestoreError: The folder cannot be written; the message names it and the reason.
    """
    target = folder
    while not target.exists() and target.parent != target:
        target = target.parent
    if not target.is_dir():
        raise RestoreError(f"cannot write into {folder}: {target} is a file, not a folder; choose another output path")
    try:
        fd, probe = tempfile.mkstemp(prefix=".invkit-probe-", dir=target)
    except OSError as exc:
        raise RestoreError(f"cannot write into folder {target}: {exc.strerror or exc}; choose another output folder") from None
    os.close(fd)
    os.unlink(probe)


def refuse_input(output: Path, sources: list[Path], others: list[Path]) -> None:
    """Refuse an output that would overwrite one of the run's inputs: its ``sources`` (the files
    restored) or ``others`` (further files it reads, :func:`file_arguments`).

    Raises:
        RestoreError: Naming which kind of input it is.
    """
    if is_input(output, sources):
        raise RestoreError(f"output {output} is the input file; choose another output path")
    if is_input(output, others):
        raise RestoreError(f"output {output} is a file the run reads (an operator argument); choose another output path")


def check_output(output: Path, inputs: list[Path], force: bool) -> None:
    """Refuse an output file that is an input, a folder, or exists (unless ``force``).

    ``inputs[0]`` is the run's input; the rest are further files it reads (:func:`~invkit.runner.files.file_arguments`).

    Raises:
        RestoreError: The output cannot be written; the message says why and what to do.
    """
    refuse_input(output, inputs[:1], inputs[1:])
    if output.is_dir():
        raise RestoreError(f"output {output} is a folder; give a file name (a folder output needs a folder --input)")
    if output.exists() and not force:
        raise RestoreError(f"output {output} exists; pass --force to overwrite it")


def output_bits(requested: int | None, source_bits: int | None, path: Path, channels: int = 1) -> int:
    """``--bits``, else the source's bit depth where the format holds it (PNG/TIFF), else 8.

    A 16-bit RGB TIFF needs the optional ``tifffile`` package; without it this fails here, before
    any work, rather than after the solve.

    Raises:
        RestoreError: A 16-bit RGB TIFF without ``tifffile``.
    """
    bits = requested if requested is not None else (16 if source_bits and source_bits >= 16 and path.suffix.lower() in (".png", ".tif", ".tiff") else 8)
    if bits == 16 and channels == 3 and path.suffix.lower() in (".tif", ".tiff"):
        try:
            import tifffile  # noqa: F401
        except ImportError:
            raise RestoreError(f"{path.name}: a 16-bit RGB TIFF needs the tifffile package (pip install tifffile); or write PNG, or pass --bits 8") from None
    return bits
