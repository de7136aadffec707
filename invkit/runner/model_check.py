"""Is the measurement explained by the operator and noise model the run restores with?

A wrong model (a sharp photo deblurred as a σ = 3 blur, a σ = 1 blur restored as σ = 3) gives a
confident, wrong restoration with exit code 0. Two checks make it visible, both for Gaussian
noise with a known level σ (``sigma_y``, plus the rounding noise of an 8- or 16-bit file:
``σ_eff = sqrt(σ_y² + q²)``, :func:`invkit.noise.quantization_sigma`):

* **before the solve** (an operator that knows its SVD ``H = U Σ Vᵀ``): the coefficients of
  ``Uᵀ y`` whose singular value is tiny, ``s_i < TAIL_SINGULAR · σ_eff``, hold almost no signal
  under the model (``s_i (Vᵀx)_i`` with ``|Vᵀx|`` at most about 1), so they are noise:
  ``rms_i (Uᵀ y)_i ≈ σ_eff``. Their RMS over σ_eff is :attr:`ModelCheck.tail`; content in them
  (the sharp detail that a σ = 3 blur would have removed) makes it large. Operators without tiny
  singular values (denoising, masks, colorization, block averaging) give no verdict.
* **after it**: the residual of the samples, ``median_i ‖y − A(x_i)‖ / (sqrt(m) σ_eff)``
  (:attr:`ModelCheck.residual`), which a posterior sample keeps near 1 when the model fits and
  which is large when no image explains ``y`` under the model. It is always recorded, but warns
  only where it was calibrated (:func:`residual_calibrated`): operators whose singular values
  spread (blurs, bicubic SR) and runs of at least :data:`RESIDUAL_MIN_STEPS` steps. With the
  right model, DDRM's residual was measured at 2.5–6.4 for masks, colorization and compressed
  sensing (constant singular values) at 20 steps, and up to 2.9 for a blur at 3 steps.

The thresholds :data:`TAIL_WARN` and :data:`RESIDUAL_WARN` sit between the ratios measured on
correct-model and wrong-model measurements (``benchmarks/model_check.py``; the numbers are in
docs/measurements.md). A check outside its threshold is a warning, never a refusal: the user may
know better (a measurement with clipped highlights, a deliberately mild prior).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..forward import SVDOperator
from ..noise import GaussianNoise, NoiseModel, quantization_sigma
from ..params import Param

__all__ = ["ModelCheck", "TAIL_SINGULAR", "TAIL_MIN", "TAIL_WARN", "RESIDUAL_WARN", "RESIDUAL_MIN_STEPS", "effective_sigma", "tail_ratio", "residual_ratio", "residual_calibrated", "params_used"]

#: A coefficient of ``Uᵀ y`` counts as noise-only when its singular value is below this times σ_eff.
TAIL_SINGULAR = 0.1
#: Fewest noise-only coefficients for a verdict (fewer: the RMS is too uncertain).
TAIL_MIN = 64
#: Warn when the noise-only coefficients' RMS exceeds this many σ_eff (measured: see the module notes).
TAIL_WARN = 2.0
#: Warn when the samples' residual RMS exceeds this many σ_eff (measured: see the module notes).
RESIDUAL_WARN = 2.5
#: Fewest solver steps for the after-solve warning (a right-model blur measured 1.31 at 10 steps, 1.92 at 5, 2.9 at 3).
RESIDUAL_MIN_STEPS = 10


@dataclass
class ModelCheck:
    """The checks of one measurement against its model (None where a check gives no verdict).

    Attributes:
        sigma: σ_eff, the noise std the ratios are in units of (None: not a Gaussian model, or 0).
        tail: RMS of the noise-only coefficients of ``Uᵀ y`` over σ_eff (before the solve).
        tail_count: How many coefficients that RMS is over.
        residual: Median residual RMS of the samples over σ_eff (after the solve).
        calibrated: Whether :attr:`residual` may warn (:func:`residual_calibrated`).
    """

    sigma: float | None = None
    tail: float | None = None
    tail_count: int = 0
    residual: float | None = None
    calibrated: bool = False

    def warnings(self) -> list[str]:
        """One sentence per check outside its threshold: :meth:`before` then :meth:`after`."""
        return self.before() + self.after()

    def before(self) -> list[str]:
        """The before-solve check's warning, if it is outside its threshold."""
        if self.tail is None or self.tail <= TAIL_WARN:
            return []
        return [
            f"the measurement holds {self.tail:.1f}x the noise level in the {self.tail_count} coefficients the operator "
            "all but erases, so it does not look like this operator's output (a sharper image, or a weaker degradation "
            "than assumed?): check the operator's parameters and --sigma-y"
        ]

    def after(self) -> list[str]:
        """The after-solve check's warning, if it is outside its threshold."""
        if self.residual is None or self.residual <= RESIDUAL_WARN or not self.calibrated:
            return []
        return [
            f"the restoration explains the measurement only to {self.residual:.1f}x the noise level "
            "(a posterior sample under the right model stays near 1x): the operator or --sigma-y may not fit this measurement"
        ]

    def record(self) -> dict[str, Any]:
        """The JSON form (``model_check`` of a run's record)."""
        return {
            "sigma_eff": self.sigma,
            "tail_rms_over_sigma": None if self.tail is None else round(self.tail, 4),
            "tail_coefficients": self.tail_count,
            "residual_rms_over_sigma": None if self.residual is None else round(self.residual, 4),
            "residual_calibrated": self.calibrated,
            "thresholds": {"tail": TAIL_WARN, "residual": RESIDUAL_WARN},
            "warnings": self.warnings(),
        }


def effective_sigma(noise: NoiseModel, bits: int | None) -> float | None:
    """σ_eff = sqrt(σ_y² + q²) for Gaussian noise, with q the rounding noise of a ``bits``-bit file
    (8 or 16; none for a float measurement); None for another noise model or σ_eff = 0.

    Example:
        >>> round(effective_sigma(GaussianNoise(0.0), 8), 6)
        0.001132
    """
    if not isinstance(noise, GaussianNoise):
        return None
    q = quantization_sigma(bits) if bits in (8, 16) else 0.0
    sigma = math.hypot(float(noise.sigma), q)
    return sigma if sigma > 0 else None


def tail_ratio(op: Any, y: Tensor, sigma: float | None) -> tuple[float | None, int]:
    """RMS over σ of ``Uᵀ y`` on the coefficients with ``s_i < TAIL_SINGULAR σ`` (and any beyond
    ``min(m, n)``), and their count; ``(None, count)`` without an SVD, σ, or :data:`TAIL_MIN` of them.

    Args:
        op: The operator (an :class:`~invkit.forward.SVDOperator` for a verdict).
        y: The measurement ``(1, *op.out_shape)``.
        sigma: σ_eff.
    """
    if sigma is None or not isinstance(op, SVDOperator):
        return None, 0
    with torch.no_grad():
        c = op.Ut(y.to("cpu", torch.float64))[0]
        s = op.singular_values.to("cpu", torch.float64)
    k = s.numel()
    tiny = torch.cat([c[:k][s < TAIL_SINGULAR * sigma], c[k:]])
    if tiny.numel() < TAIL_MIN:
        return None, int(tiny.numel())
    return float(tiny.square().mean().sqrt()) / sigma, int(tiny.numel())


def residual_calibrated(op: Any, steps: int | None) -> bool:
    """Whether the after-solve residual may warn for ``op`` after ``steps`` solver steps: an
    operator with an SVD whose singular values spread (the smallest below 0.9 of the largest:
    blurs, bicubic SR, where the thresholds were measured) and at least :data:`RESIDUAL_MIN_STEPS` steps."""
    if not isinstance(op, SVDOperator) or steps is None or steps < RESIDUAL_MIN_STEPS:
        return False
    s = op.singular_values
    return bool(s.numel() > 0 and float(s.min()) < 0.9 * float(s.max()))


def residual_ratio(residuals: list[float], m: int, sigma: float | None) -> float | None:
    """The median of the samples' residual norms ``‖y − A(x_i)‖`` over ``sqrt(m) σ`` (None without σ
    or a finite residual)."""
    finite = sorted(r for r in residuals if math.isfinite(r))
    if sigma is None or not finite or m < 1:
        return None
    mid = len(finite) // 2
    median = finite[mid] if len(finite) % 2 else 0.5 * (finite[mid - 1] + finite[mid])
    return median / (math.sqrt(m) * sigma)


def params_used(params: tuple[Param, ...], config: dict[str, Any], given: set[str], recorded: set[str]) -> str:
    """The operator's parameters as used, each marked ``(default)`` unless given (``--arg``) or
    recorded in the measurement file ``(recorded)``: what a user checks when a restoration looks
    wrong. Options left unset (None by default) are not listed.

    Example:
        >>> from invkit.params import Param
        >>> params_used((Param("sigma", float, 3.0), Param("boundary", str, "reflect")), {"sigma": 3.0, "boundary": "reflect"}, set(), set())
        'sigma=3.0 (default), boundary=reflect (default)'
    """
    parts = []
    for p in params:
        if p.name not in config or (config[p.name] is None and p.name not in given):
            continue  # an option left unset says nothing
        mark = "" if p.name in given else " (recorded)" if p.name in recorded else " (default)"
        parts.append(f"{p.name}={config[p.name]}{mark}")
    return ", ".join(parts)
