"""Cost of a run: a timed prior evaluation at a small size, extrapolated to the image, stated up
front for large images; images over ``max_megapixels`` are refused with the options
(``--resize``, ``--crop``, a higher limit) that would run. After an image's first solver step,
:func:`projection_note` projects its time (for a caller that draws no progress bar)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch

from .errors import RestoreError
from .options import RestoreOptions
from .progress import ProgressEvent, format_duration
from .sizing import prior_multiple

__all__ = ["Timer", "cost_or_refuse", "projection_note", "ESTIMATE_PIXELS", "ANNOUNCE_SECONDS", "ASSUMED_STEPS"]

#: Images above this many pixels get an up-front cost estimate (a timed prior evaluation).
ESTIMATE_PIXELS = 512 * 512
#: A projected solve longer than this (seconds) is announced after the first step (:func:`projection_note`).
ANNOUNCE_SECONDS = 30.0
#: Steps assumed for estimates when neither ``--steps`` nor the solver's ``default_steps`` says (DDRM's default).
ASSUMED_STEPS = 20


class Timer:
    """Wall time of one prior evaluation at a small size, to extrapolate the cost of large images.

    Args:
        prior: The prior to time.
        device: Where it runs.
        multiple: The prior's size multiple (the timing image's side is one).
        solver: The solver that will run: its ``default_steps`` (steps when ``--steps`` is not
            given) and ``evaluations_per_step`` (cost of a step in plain prior evaluations:
            about 3 for a solver that differentiates through the prior) scale the estimate.
    """

    def __init__(self, prior: Any, device: torch.device, multiple: int, solver: Any = None) -> None:
        self.prior, self.device = prior, device
        steps = getattr(solver, "default_steps", None)
        self.default_steps: int = steps if isinstance(steps, int) and steps > 0 else ASSUMED_STEPS
        factor = getattr(solver, "evaluations_per_step", 1.0)
        self.evaluations_per_step: float = float(factor) if isinstance(factor, (int, float)) and factor >= 0 else 1.0
        self.side = max(128 // max(multiple, 1) * max(multiple, 1), multiple)
        self.cache: dict[int, float | None] = {}

    def seconds_per_pixel(self, channels: int) -> float | None:
        """Seconds per pixel of one prior evaluation (timed once per channel count), None if it failed."""
        if channels not in self.cache:
            try:
                g = torch.Generator().manual_seed(0)
                x = (0.5 + 0.1 * torch.randn(1, channels, self.side, self.side, generator=g)).to(self.device)
                self.prior.denoise(x, 0.2)  # warm-up (lazy set-up, allocator)
                _sync(self.device)
                t0 = time.perf_counter()
                self.prior.denoise(x, 0.2)
                _sync(self.device)
                self.cache[channels] = (time.perf_counter() - t0) / (self.side * self.side)
            except Exception:  # noqa: BLE001 - an estimate must never break a run
                self.cache[channels] = None
        return self.cache[channels]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _cost_text(per_eval: float, steps: int, samples: int, batch: int, factor: float = 1.0) -> str:
    chunks = math.ceil(samples / batch)
    total = per_eval * factor * min(batch, samples) * steps * chunks
    what = f"{steps} steps" + (f" x {samples} samples" if samples > 1 else "")
    per_step = "" if factor == 1.0 else f" (a step costs about {factor:g} of them)"
    return f"about {format_duration(per_eval)} per prior evaluation{per_step}, {format_duration(total)} for {what}"


def cost_or_refuse(
    name: str, c: int, H: int, W: int, *, opts: RestoreOptions, timer: Timer, say_note: Callable[[str], None] | None = None,
    scale: int = 1, resizable: bool = True,
) -> None:
    """Refuse an image over ``opts.max_megapixels`` (with the estimate and a ``--resize`` that fits); announce a large one.

    Images up to :data:`~invkit.runner.cost.ESTIMATE_PIXELS` within the limit cost nothing to check. Larger ones
    get an estimate from ``timer``, passed to ``say_note``.

    Args:
        name, c, H, W: The input's name and the size of the image the run restores.
        scale: Restored pixels per input pixel along a side (a super-resolution factor): the
            advised ``--resize`` is in input pixels, so following it restores within the limit.
        resizable: Whether ``--resize``/``--crop`` apply to the input (not to a ``.safetensors``
            measurement): otherwise the advice is to make the measurement smaller.

    Raises:
        RestoreError: Over the limit.
    """
    pixels = H * W
    limit = opts.max_megapixels * 1e6
    steps = opts.steps or timer.default_steps
    factor = timer.evaluations_per_step
    if pixels <= ESTIMATE_PIXELS and pixels <= limit:
        return
    spp = timer.seconds_per_pixel(c) if factor > 0 else None
    per_eval = spp * pixels if spp is not None else None
    if factor == 0:
        estimate = "no estimate (the solver does not evaluate the prior)"
    elif per_eval:
        estimate = f"{_cost_text(per_eval, steps, opts.samples, opts.batch, factor)} on {timer.device.type}, extrapolated from a {timer.side}x{timer.side} timing"
    else:
        estimate = "no estimate (the prior failed on a small test image)"
    if pixels > limit:
        side = max(H, W) * math.sqrt(limit / pixels)
        m = max(prior_multiple(timer.prior), 1)
        n = max(m, int(side // m * m))
        small = pixels * (n / max(H, W)) ** 2
        small_cost = f", {_cost_text(spp * small, steps, opts.samples, opts.batch, factor)}" if spp else ""
        anyway = f"--max-megapixels {math.ceil(pixels / 1e6 * 10) / 10:g} to run it anyway"
        if not resizable:
            fix = f"make the measurement from an image of at most {n} pixels on its longest side ({small / 1e6:.3g} MP{small_cost}), or {anyway}"
        elif scale > 1 and n // scale < 1:
            fix = f"no --resize of the input fits (each input pixel restores {scale}x{scale}); {anyway}"
        elif scale > 1:
            fix = (f"pass --resize {n // scale} (the input's longest side; restored at {n // scale * scale}, "
                   f"{small / 1e6:.3g} MP{small_cost}), crop a region with --crop Y,X,H,W, or {anyway}")
        else:
            fix = f"pass --resize {n} (longest side, {small / 1e6:.3g} MP{small_cost}), crop a region with --crop Y,X,H,W, or {anyway}"
        raise RestoreError(f"{name} is {W}x{H} pixels ({pixels / 1e6:.3g} MP), over --max-megapixels {opts.max_megapixels:g}: {estimate}; {fix}")
    if say_note is not None:
        say_note(f"{name}: {W}x{H} pixels ({pixels / 1e6:.3g} MP): {estimate}")


def projection_note(event: ProgressEvent) -> str | None:
    """The time projected for an image after its first solver step, when over :data:`ANNOUNCE_SECONDS`.

    For a caller that shows no progress bar (``invkit solve`` without a terminal: a bar shows
    the time left itself).

    Returns:
        The note, or None: not the first step, or a shorter projection.
    """
    if event.kind != "step" or event.done != 1 or event.total is None:
        return None
    projected = event.elapsed * event.total
    if projected <= ANNOUNCE_SECONDS:
        return None
    return f"{event.image.name}: first step took {format_duration(event.elapsed)}; projected {format_duration(projected)} for this image"
