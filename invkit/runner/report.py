"""What a run reports per image: the record (:data:`JSON_KEYS`, ``invkit solve --json``), the
metrics against a clean image (:mod:`invkit.metrics`, the only PSNR/SSIM), the oracle best of
several samples (:func:`oracle_best`), and their table."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import Tensor

__all__ = ["JSON_KEYS", "new_record", "record_value", "score", "oracle_best", "metrics_table"]

#: Keys of every record, in order (documented in ``invkit solve --help``); new keys are appended.
JSON_KEYS = (
    "image",
    "output",
    "mode",
    "operator",
    "operator_params",
    "solver",
    "prior",
    "shape",
    "sigma_y",
    "steps",
    "samples",
    "seed",
    "device",
    "seconds",
    "psnr_measurement",
    "psnr_restored",
    "ssim_measurement",
    "ssim_restored",
    "lpips_measurement",
    "lpips_restored",
    "measurement_metrics_from",
    "std_mean",
    "std_max",
    "files",
    "noise",
    "select",
    "selected_sample",
    "residuals",
    "psnr_oracle",
    "ssim_oracle",
    "oracle_sample",
    "scored_up_to_ambiguities",
    "model_check",
    "operator_defaults",
    "prior_tiles",
    "estimated_seconds",
    "solver_params",
    "prior_params",
)


def new_record(**values: Any) -> dict[str, Any]:
    """A record with every key of :data:`JSON_KEYS` (None where not given), in that order.

    Raises:
        KeyError: A key that is not in :data:`JSON_KEYS`.
    """
    unknown = set(values) - set(JSON_KEYS)
    if unknown:
        raise KeyError(f"not record keys: {sorted(unknown)}")
    record: dict[str, Any] = {k: None for k in JSON_KEYS}
    record.update(values)
    return record


def record_value(value: Any) -> Any:
    """``value`` in a form strict JSON (``allow_nan=False``) writes: tuples and lists as lists,
    mappings with text keys, a non-finite float as its text (``"inf"``, ``"-inf"``, ``"nan"``, so a
    parameter such as ``kappa=inf`` stays readable), and anything that is not a number, text,
    bool or None as its ``str``."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Mapping):
        return {str(k): record_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [record_value(v) for v in value]
    return str(value)


def _finite_or_none(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


def score(restored: Tensor, clean: Tensor, view: Tensor | None = None, view_kind: str | None = None) -> dict[str, Any]:
    """PSNR, SSIM and LPIPS of the restoration (and of the measurement's view) against ``clean``.

    Args:
        restored: The restoration ``(1, C, H, W)``.
        clean: The clean image, same shape.
        view: The measurement as an image (:func:`invkit.runner.inputs.measurement_view`), scored
            only when it has the clean image's shape.
        view_kind: How ``view`` was made (``"measurement"`` or ``"pseudo_inverse"``).

    Returns:
        The record's metric keys (``psnr_restored``, ..., ``measurement_metrics_from``); a
        metric is None when it is not available or infinite.
    """
    from ..metrics import lpips, psnr, ssim

    out: dict[str, Any] = {
        "psnr_restored": _finite_or_none(psnr(restored, clean)),
        "ssim_restored": _finite_or_none(ssim(restored, clean)),
        "lpips_restored": _finite_or_none(lpips(restored, clean)),
    }
    if view is not None and tuple(view.shape) == tuple(clean.shape):
        out["psnr_measurement"] = _finite_or_none(psnr(view, clean))
        out["ssim_measurement"] = _finite_or_none(ssim(view, clean))
        out["lpips_measurement"] = _finite_or_none(lpips(view, clean))
        out["measurement_metrics_from"] = view_kind
    return out


def oracle_best(samples: Tensor, clean: Tensor) -> dict[str, Any]:
    """The oracle best of K samples: the one of highest PSNR against the clean image, with its PSNR and SSIM.

    Only a simulation can pick it (it needs the ground truth); it is the protocol of papers that
    report the best of K samples (DPS's phase retrieval: best of 4). A run writes the mean or the
    smallest-residual sample instead, which need no ground truth.

    Args:
        samples: ``(K, C, H, W)``, K >= 1.
        clean: ``(1, C, H, W)``.

    Returns:
        The record's ``psnr_oracle``, ``ssim_oracle`` and ``oracle_sample`` (1-based; the first of equal PSNRs).
    """
    from ..metrics import psnr, ssim

    values = [psnr(samples[i : i + 1], clean) for i in range(samples.shape[0])]
    best = max(range(len(values)), key=lambda i: (values[i] if not math.isnan(values[i]) else -math.inf, -i))
    return {
        "psnr_oracle": _finite_or_none(values[best]),
        "ssim_oracle": _finite_or_none(ssim(samples[best : best + 1], clean)),
        "oracle_sample": best + 1,
    }


def metrics_table(records: list[dict[str, Any]]) -> str:
    """The metrics of simulated records as a text table, one row per image (and their mean).

    With several samples the columns ``PSNR oracle``/``SSIM oracle`` give the oracle best of K
    (:func:`oracle_best`), labelled as such under the table.
    """
    show_lpips = any(r["lpips_restored"] is not None for r in records)
    cols = [("PSNR meas.", "psnr_measurement", "{:.2f}"), ("PSNR rest.", "psnr_restored", "{:.2f}"),
            ("SSIM meas.", "ssim_measurement", "{:.4f}"), ("SSIM rest.", "ssim_restored", "{:.4f}")]
    if show_lpips:
        cols += [("LPIPS meas.", "lpips_measurement", "{:.4f}"), ("LPIPS rest.", "lpips_restored", "{:.4f}")]
    oracle = [r for r in records if r.get("oracle_sample") is not None]
    if oracle:
        cols += [("PSNR oracle", "psnr_oracle", "{:.2f}"), ("SSIM oracle", "ssim_oracle", "{:.4f}")]
    names = [Path(r["image"]).name for r in records]
    rows = []
    for name, r in zip(names, records):
        star = "*" if r["measurement_metrics_from"] == "pseudo_inverse" else ""
        cells = []
        for _, key, fmt in cols:
            v = r[key]
            cell = "-" if v is None else fmt.format(v)
            cells.append(cell + (star if key.endswith("_measurement") and v is not None else ""))
        rows.append([name, *cells])
    if len(records) > 1:
        cells = []
        for _, key, fmt in cols:
            vals = [r[key] for r in records if r[key] is not None]
            cells.append(fmt.format(sum(vals) / len(vals)) if vals and len(vals) == len(records) else "-")
        rows.append(["mean", *cells])
    header = ["image", *(c[0] for c in cols)]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(v).ljust(widths[0]) if i == 0 else str(v).rjust(widths[i]) for i, v in enumerate(row)) for row in [header, *rows]]
    if any(r["measurement_metrics_from"] == "pseudo_inverse" for r in records):
        lines.append("* measurement scored through its pseudo-inverse H+ y (it is not an image of the clean image's shape)")
    if oracle:
        k = ", ".join(sorted({str(r["samples"]) for r in oracle}))
        lines.append(
            f"oracle best of {k}: the sample closest to the clean image by PSNR (the papers' best-of-K protocol; "
            "it needs the ground truth, so only --simulate reports it)"
        )
    if any(r.get("scored_up_to_ambiguities") for r in records):
        lines.append(
            "rest./oracle scored up to the operator's ambiguities: each restoration moved to the member of its "
            "ambiguity set closest to the clean image (phase retrieval: 180-degree rotation, shifts within the image) before scoring"
        )
    if any(r.get("select") == "residual" and (r.get("samples") or 1) > 1 for r in records):
        lines.append("rest. = the sample of smallest residual ||y - A(x)|| (--select residual), not the posterior mean")
    return "\n".join(lines)
