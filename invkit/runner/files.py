"""Output files of a run: never an input, never clobbered without ``force``, and their bit depth."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import RestoreError

__all__ = ["same_file", "is_input", "check_output", "output_bits"]


def same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` both exist and are the same file (links included)."""
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def is_input(output: Path, inputs: list[Path]) -> bool:
    """Whether writing ``output`` would overwrite one of ``inputs``."""
    return any(output.resolve() == src.resolve() or same_file(output, src) for src in inputs)


def check_output(output: Path, inputs: list[Path], force: bool) -> None:
    """Refuse an output file that is an input, a folder, or exists (unless ``force``).

    Raises:
        RestoreError: The output cannot be written; the message says why and what to do.
    """
    if is_input(output, inputs):
        raise RestoreError(f"output {output} is the input file; choose another output path")
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
