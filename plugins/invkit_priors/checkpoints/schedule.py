"""The diffusion process of a checkpoint: ᾱ_t from flags, from invkit metadata, or the default.

guided-diffusion and the DDPM/DDIM configs name it differently; both spellings are read:
``diffusion_steps``/``num_diffusion_timesteps``, ``noise_schedule``/``beta_schedule`` (``linear``
or ``cosine``/``squaredcos_cap_v2``, or an explicit list of betas), ``beta_start``/``beta_end``,
and ``predict_xstart`` (x0 prediction). The linear schedule is guided-diffusion's: betas from
``1e-4 * 1000 / T`` to ``0.02 * 1000 / T`` over ``T`` steps, so any ``T`` keeps the same curve.

Example:
    >>> ab = alphas_bar_for("linear", 1000)
    >>> ab.shape, round(float(ab[0]), 6)
    (torch.Size([1000]), 0.9999)
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from invkit.params import parse_bool
from invkit.prior import alphas_bar_from_betas

from .safe_load import CheckpointError

__all__ = ["SCHEDULE_KEYS", "DEFAULT_SCHEDULE", "cosine_betas", "alphas_bar_for", "pop_schedule", "schedule_from_metadata"]

#: Schedule keys accepted in flags for either architecture (DDPM/DDIM YAML and guided-diffusion names).
SCHEDULE_KEYS = frozenset(
    {"diffusion_steps", "num_diffusion_timesteps", "noise_schedule", "beta_schedule", "beta_start", "beta_end", "predict_xstart"}
)
#: The schedule of DDPM/ADM training (Ho et al.), as invkit metadata writes it.
DEFAULT_SCHEDULE: dict[str, Any] = {"betas": "linear", "beta_start": 1e-4, "beta_end": 0.02, "steps": 1000}


def cosine_betas(steps: int) -> Tensor:
    """Nichol & Dhariwal's cosine schedule (``alpha_bar(t) = cos((t + 0.008) / 1.008 * pi/2)^2``)."""

    def ab(t: float) -> float:
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    return torch.tensor([min(1 - ab((i + 1) / steps) / ab(i / steps), 0.999) for i in range(steps)], dtype=torch.float64)


def alphas_bar_for(kind: Any, steps: int, beta_start: float | None = None, beta_end: float | None = None) -> Tensor:
    """ᾱ_t (float64, ``(steps,)``) of a ``linear``/``cosine`` schedule or an explicit list of betas.

    Raises:
        ValueError: Fewer than 2 steps or an unknown schedule name.
    """
    if isinstance(kind, (list, tuple)):
        return alphas_bar_from_betas(torch.tensor([float(b) for b in kind], dtype=torch.float64))
    kind = str(kind).strip().lower()
    if steps < 2:
        raise ValueError(f"diffusion steps must be at least 2, got {steps}")
    if kind == "linear":
        scale = 1000.0 / steps  # guided-diffusion's scaling, so other step counts keep the same curve
        start = scale * 1e-4 if beta_start is None else float(beta_start)
        end = scale * 0.02 if beta_end is None else float(beta_end)
        return alphas_bar_from_betas(torch.linspace(start, end, steps, dtype=torch.float64))
    if kind in ("cosine", "squaredcos_cap_v2"):
        return alphas_bar_from_betas(cosine_betas(steps))
    raise ValueError(f"unknown noise schedule {kind!r}; supported: linear, cosine, or an explicit list of betas")


def pop_schedule(flags: dict[str, Any]) -> tuple[Tensor, str | None]:
    """Remove the diffusion-process keys from ``flags``; return alphas-bar and a prediction (or None)."""
    sched = {k: flags.pop(k) for k in list(flags) if k in SCHEDULE_KEYS}
    steps = int(float(sched.get("diffusion_steps", sched.get("num_diffusion_timesteps", 1000))))
    kind = sched.get("noise_schedule", sched.get("beta_schedule", "linear"))
    ab = alphas_bar_for(kind, steps, sched.get("beta_start"), sched.get("beta_end"))
    if parse_bool(flags.get("rescale_timesteps", False), "flag 'rescale_timesteps'") and steps != 1000:
        raise ValueError("rescale_timesteps=True with diffusion_steps != 1000 is not supported")
    prediction = "x0" if parse_bool(sched.get("predict_xstart", False), "flag 'predict_xstart'") else None
    return ab, prediction


def schedule_from_metadata(text: str | None, source: Path) -> Tensor:
    """ᾱ_t from an invkit file's ``schedule`` metadata (JSON object with ``betas``; default linear).

    Raises:
        CheckpointError: The metadata is not such an object (naming the file).
    """
    if text is None:
        return alphas_bar_for("linear", 1000, None, None)
    try:
        spec = json.loads(text)
    except json.JSONDecodeError:
        spec = {"betas": text}
    if isinstance(spec, str):
        spec = {"betas": spec}
    if not isinstance(spec, dict) or "betas" not in spec:
        raise CheckpointError(f"{source}: metadata 'schedule' must be a JSON object with 'betas', got {text!r}")
    betas = spec["betas"]
    steps = int(spec.get("steps", len(betas) if isinstance(betas, list) else 1000))
    return alphas_bar_for(betas, steps, spec.get("beta_start"), spec.get("beta_end"))
