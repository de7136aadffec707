"""Writing one image's outputs: the restoration (the posterior mean, or the selected sample), the
std map, the samples and the side-by-side figure, each atomically (:mod:`invkit.io`)."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from ..io import write_figure, write_image
from .inputs import Prepared

__all__ = ["write_restoration", "write_figure_for"]


def write_restoration(prep: Prepared, samples: Tensor, restored: Tensor, std: Tensor | None) -> tuple[dict[str, Any], float | None, float | None]:
    """Write the restoration, and with several samples the std map (white = its maximum) and the samples.

    Args:
        prep: The input (its job names the files; its ``bits`` the depth).
        samples: ``(N, C, H, W)``.
        restored: ``(1, C, H, W)``: the posterior mean, or the selected sample.
        std: The std map ``(1, 1, H, W)``, or None for one sample.

    Returns:
        The record's ``files`` (``figure`` still None), ``std_max`` and ``std_mean``.
    """
    job = prep.job
    files: dict[str, Any] = {"restored": str(job.out), "std": None, "samples": [], "figure": None}
    write_image(job.out, restored, bits=prep.bits)
    std_max = std_mean = None
    if std is not None and job.std is not None:
        std_max, std_mean = float(std.max()), float(std.mean())
        write_image(job.std, std / std_max if std_max > 0 else std, bits=8)
        files["std"] = str(job.std)
        for i, path in enumerate(job.samples):
            write_image(path, samples[i : i + 1], bits=prep.bits)
        files["samples"] = [str(p) for p in job.samples]
    return files, std_max, std_mean


def write_figure_for(
    prep: Prepared, view: Tensor | None, view_kind: str | None, restored: Tensor, std: Tensor | None, std_max: float | None, label: str
) -> None:
    """Write ``prep.job.figure``: clean | measurement | restoration | std map (the panels that exist).

    Args:
        prep: The input (its job names the figure; ``clean`` when simulating).
        view: The measurement as an image, or None.
        view_kind: ``"measurement"`` or ``"pseudo_inverse"``.
        restored: The restoration written.
        std: The std map, or None.
        std_max: Its maximum (white).
        label: The restoration panel's label (``posterior mean (N=4)``, ...).
    """
    panels: list[tuple[str, Tensor]] = []
    if prep.clean is not None:
        panels.append(("clean", prep.clean))
    if view is not None:
        panels.append(("measurement" if view_kind == "measurement" else "measurement (H+ y)", view))
    panels.append((label, restored))
    if std is not None:
        panels.append((f"std (white = {std_max:.3g})", std / std_max if std_max else std))
    assert prep.job.figure is not None
    write_figure(prep.job.figure, panels)
