"""Cost of a run, stated before it starts: the prior timed at two sizes (or, when the prior runs
on tiles, one tile and a block of 2x2 tiles) gives a range for one evaluation of the image; the
solver's steps, samples and evaluations per step scale it. Images over ``max_megapixels``, or
whose estimate is over ``max_minutes``, are refused with the options (``--steps``, ``--resize``,
``--crop``, a higher limit) that would run. After an image's first solver step,
:func:`projection_note` corrects the estimate with the step's measured time (for a caller that
draws no progress bar).

The model (:meth:`Timer.per_eval`), for an image of ``p`` pixels:

* untiled, timed at ``p1 < p2`` pixels (sides 128 and 256; 256 and 512 for images of 512² or
  more; 512 and 1024 from 1024², the prior's self-attention growing faster than the pixels
  there) with ``r1``, ``r2`` seconds per pixel: up to ``p2`` the range is ``[min(r1, r2), max(r1, r2)] * p``;
  beyond it the low end grows per pixel as the power law through the two timings,
  ``r2 (p / p2)^g`` with ``g = log(r2 / r1) / log(p2 / p1)`` (within ±1), and the high end linearly in ``p``
  (a cost quadratic in pixels, as full self-attention is), ``r2 + (r2 - r1) (p - p2) / (p2 - p1)``;
  when the cost per pixel falls with size (a per-call overhead, as on a GPU), the power law is the
  low end and ``r2`` the high one;
* tiled: ``n`` tiles (:func:`invkit.tiled.tile_grid`) times the seconds per tile, its range the
  time of one tile alone and per tile of a block of two rows of tiles holding one batch of them,
  at least 2x2 (as :class:`~invkit.TiledPrior` evaluates a large image: a batch per network
  call, blended),
  so linear in the tile count.

The estimate counts prior evaluations only; the operator's products and the solver's arithmetic
come in with the first step's correction."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..prior import Prior
from ..requirements import Capability
from ..tiled import TiledPrior, default_batch, tile_grid
from .errors import RestoreError
from .options import RestoreOptions
from .progress import ProgressEvent, format_duration
from .sizing import prior_multiple

__all__ = ["Timer", "Estimate", "cost_or_refuse", "projection_note", "ESTIMATE_PIXELS", "ANNOUNCE_SECONDS", "ASSUMED_STEPS", "TILED_OVERHEAD",
           "GRADIENT_BYTES_PER_PIXEL", "GRADIENT_MEMORY_SHARE", "device_memory_bytes", "gradient_pixel_limit", "pixel_limit"]

#: Images above this many pixels get an up-front cost estimate (timed prior evaluations).
ESTIMATE_PIXELS = 512 * 512
#: A projected solve longer than this (seconds) is announced after the first step (:func:`projection_note`).
ANNOUNCE_SECONDS = 30.0
#: Steps assumed for estimates when neither ``--steps`` nor the solver's ``default_steps`` says (DDRM's default).
ASSUMED_STEPS = 20
#: The high end of a tiled estimate over the tiles' own time: a large solve also pays for the
#: blending, the operator, the solver's arithmetic on the whole image and a slower large process.
#: Five tiled runs at 4 and 12 MP on the CPU (docs/measurements.md, "Photo sizes and the cost
#: estimate") took 1.02–1.14× the middle of the tiles-only range.
TILED_OVERHEAD = 1.2
#: Memory per restored pixel of a solver that differentiates through a network prior (autograd
#: keeps every layer's activations for the backward pass, tiles or not): a DPS step on
#: 1x3x256x256 with the default prior grew the peak by 1326 MB (benchmarks/dps_memory.py,
#: docs/measurements.md), about 20 kB a pixel. Larger networks need more, so it is a lower bound.
GRADIENT_BYTES_PER_PIXEL = 20_000
#: The share of the device's memory those activations may take (the rest: the process, the
#: operator, the solver's images, other programs).
GRADIENT_MEMORY_SHARE = 0.75


@dataclass(frozen=True)
class Estimate:
    """Predicted seconds, as a range ``[low, high]``, and how they were found.

    Attributes:
        low: Low end (seconds).
        high: High end (seconds).
        how: What was timed, in words (``"from timings at 256x256 and 512x512"``).
    """

    low: float
    high: float
    how: str

    @property
    def mid(self) -> float:
        """The figure quoted: the geometric mean of the ends."""
        return math.sqrt(self.low * self.high)

    def scaled(self, factor: float) -> Estimate:
        """The same estimate for ``factor`` times the work."""
        return Estimate(self.low * factor, self.high * factor, self.how)

    def text(self) -> str:
        """``about 1 min 10 s (1 min 02 s to 1 min 19 s)``; one figure when the ends round alike."""
        low, high = format_duration(self.low), format_duration(self.high)
        return f"about {format_duration(self.mid)}" + ("" if low == high else f" ({low} to {high})")


class Timer:
    """Times the prior (cached per size) and predicts one evaluation of an image (module docstring's model).

    Args:
        prior: The prior to time.
        device: Where it runs.
        multiple: The prior's size multiple (timing sides are multiples of it).
        solver: The solver that will run: its ``default_steps`` (steps when ``--steps`` is not
            given) and ``evaluations_per_step`` (cost of a step in plain prior evaluations:
            about 3 for a solver that differentiates through the prior) scale the estimate.
        prior_for: The prior that will restore an image of a shape ``(C, H, W)``: ``prior`` or a
            :class:`~invkit.TiledPrior` of it (the runner's ``tiling``); default ``prior``.
        clock: Seconds, for timing (tests pass a fake one).
    """

    def __init__(
        self, prior: Any, device: torch.device, multiple: int, solver: Any = None,
        prior_for: Callable[[tuple[int, int, int]], Any] | None = None, clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.prior, self.device = prior, device
        self.multiple = max(int(multiple), 1)
        steps = getattr(solver, "default_steps", None)
        self.default_steps: int = steps if isinstance(steps, int) and steps > 0 else ASSUMED_STEPS
        factor = getattr(solver, "evaluations_per_step", 1.0)
        self.evaluations_per_step: float = float(factor) if isinstance(factor, (int, float)) and factor >= 0 else 1.0
        self.prior_gradients = Capability.PRIOR_GRADIENTS in (getattr(solver, "requires", None) or ())
        self.prior_for = prior_for or (lambda shape: prior)
        self.clock = clock
        self.cache: dict[tuple[int, int, int, int], float | None] = {}
        self.warm: set[tuple[int, int]] = set()

    def seconds(self, prior: Any, c: int, h: int, w: int, repeats: int = 1) -> float | None:
        """Wall time of one ``prior.denoise`` of a ``(1, c, h, w)`` image: the least of ``repeats``
        timings, made once per size (None if it failed).

        The first timing of each prior and channel count is preceded by an untimed call (lazy
        set-up, the allocator).
        """
        key = (id(prior), c, h, w)
        if key not in self.cache:
            try:
                g = torch.Generator().manual_seed(0)
                x = (0.5 + 0.1 * torch.randn(1, c, h, w, generator=g)).to(self.device)
                if (id(prior), c) not in self.warm:
                    prior.denoise(x, 0.2)
                    _sync(self.device)
                    self.warm.add((id(prior), c))
                best = math.inf
                for _ in range(repeats):
                    t0 = self.clock()
                    prior.denoise(x, 0.2)
                    _sync(self.device)
                    best = min(best, self.clock() - t0)
                self.cache[key] = max(best, 1e-9)
            except Exception:  # noqa: BLE001 - an estimate must never break a run
                self.cache[key] = None
        return self.cache[key]

    def _side(self, side: int) -> int:
        return max(side // self.multiple * self.multiple, self.multiple)

    def per_eval(self, c: int, h: int, w: int) -> Estimate | None:
        """Seconds of one prior evaluation of a ``(1, c, h, w)`` image, as a range (None: the prior failed on a test image)."""
        run = self.prior_for((c, h, w))
        if isinstance(run, TiledPrior):
            m = max(run.size_multiple or 1, 1)
            n = len(tile_grid(-(-h // m) * m, -(-w // m) * m, run.tile, run.overlap, m))  # as padded to the multiple
            if n > 1:
                one = self.seconds(run.inner, c, run.tile, run.tile)
                # a block of 2 rows of tiles holding one full batch of them, as a large image is evaluated
                batch = run.batch or default_batch(run.tile * run.tile, self.device)
                stride = run.tile - run.overlap
                bh, bw = 2 * stride + run.overlap, max(2, -(-batch // 2)) * stride + run.overlap  # at least 2x2
                block = self.seconds(run, c, bh, bw)
                if one is None or block is None:
                    return None
                per_tile = sorted((one, block / len(tile_grid(bh, bw, run.tile, run.overlap, m))))
                return Estimate(
                    n * per_tile[0],
                    n * per_tile[1] * TILED_OVERHEAD,
                    f"{n} tiles of {run.tile}x{run.tile}, from timings of one tile and of {bw}x{bh} (a batch of tiles), "
                    f"high end +{TILED_OVERHEAD - 1:.0%} for the whole-image work",
                )
            run = run.inner
        p = h * w
        s2 = self._side(next(side for side in (1024, 512, 256) if p >= side * side or side == 256))
        s1 = self._side(s2 // 2)
        if s1 == s2:
            s2 = s1 * 2
        # the least of two timings (the first at a new size also pays for its first-touch memory);
        # 1024² once (a whole-image evaluation there costs half a minute on 2 CPU cores)
        t1, t2 = self.seconds(run, c, s1, s1, repeats=2), self.seconds(run, c, s2, s2, repeats=2 if s2 <= 512 else 1)
        if t1 is None or t2 is None:
            return None
        p1, p2 = s1 * s1, s2 * s2
        r1, r2 = t1 / p1, t2 / p2
        lo, hi = min(r1, r2), max(r1, r2)
        if p > p2:
            g = min(max(math.log(r2 / r1) / math.log(p2 / p1), -1.0), 1.0)
            power = r2 * (p / p2) ** g
            linear = r2 + (r2 - r1) * (p - p2) / (p2 - p1)
            lo, hi = min(power, r2), max(power, linear, r2)
        return Estimate(lo * p, hi * p, f"from timings at {s1}x{s1} and {s2}x{s2}")


def device_memory_bytes(device: torch.device) -> int | None:
    """The device's whole memory in bytes (a GPU's, or the machine's RAM for the CPU), or None if unknown."""
    try:
        if device.type == "cuda":
            return int(torch.cuda.get_device_properties(device).total_memory)
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError, RuntimeError):
        return None


def gradient_pixel_limit(timer: Timer) -> float | None:
    """The most restored pixels whose gradients through the prior fit in the device's memory
    (:data:`GRADIENT_BYTES_PER_PIXEL` each, within :data:`GRADIENT_MEMORY_SHARE` of it), or None when no such limit applies: the solver does not
    differentiate through the prior, or the prior is not a network: not ``Prior.tileable`` (a
    whole-image model), or one with a closed Gaussian form (its own ``gaussian_form``: an
    analytic prior, whose gradient costs a few images)."""
    prior = timer.prior
    analytic = type(prior).gaussian_form is not Prior.gaussian_form
    if not timer.prior_gradients or not getattr(prior, "tileable", False) or analytic:
        return None
    total = device_memory_bytes(timer.device)
    return GRADIENT_MEMORY_SHARE * total / GRADIENT_BYTES_PER_PIXEL if total else None


def pixel_limit(opts: RestoreOptions, timer: Timer) -> float:
    """The most restored pixels allowed: ``--max-megapixels``, and :func:`gradient_pixel_limit` where it applies."""
    return min(opts.max_megapixels * 1e6, gradient_pixel_limit(timer) or math.inf)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _evaluations(steps: int, samples: int, factor: float) -> float:
    """Prior evaluations of one image, in images (a batch of ``b`` samples costs ``b``)."""
    return factor * samples * steps


def _cost_text(per_eval: Estimate, steps: int, samples: int, factor: float = 1.0) -> str:
    total = per_eval.scaled(_evaluations(steps, samples, factor))
    what = f"{steps} step{'s' if steps != 1 else ''}" + (f" x {samples} samples" if samples > 1 else "")
    per_step = "" if factor == 1.0 else f" (a step costs about {factor:g} of them)"
    return f"about {format_duration(per_eval.mid)} per prior evaluation{per_step}, {total.text()} for {what}"


def cost_or_refuse(
    name: str, c: int, H: int, W: int, *, opts: RestoreOptions, timer: Timer, say_note: Callable[[str], None] | None = None,
    scale: int = 1, resizable: bool = True, alternatives: Callable[[], Sequence[str]] | None = None,
) -> Estimate | None:
    """Refuse an image over ``opts.max_megapixels``, or whose estimate's low end is over
    ``opts.max_minutes`` (with the estimate and a ``--resize``/``--steps`` that fits); announce a large one.

    Images up to :data:`~invkit.runner.cost.ESTIMATE_PIXELS` within the limit cost nothing to check. Larger ones
    get an estimate from ``timer``, passed to ``say_note``.

    Args:
        name, c, H, W: The input's name and the size of the image the run restores.
        scale: Restored pixels per input pixel along a side (a super-resolution factor): the
            advised ``--resize`` is in input pixels, so following it restores within the limit.
        resizable: Whether ``--resize``/``--crop`` apply to the input (not to a ``.safetensors``
            measurement): otherwise the advice is to make the measurement smaller.
        alternatives: Gives the registered solvers that evaluate the prior without its gradients
            (those that take the problem, when it is known), named when the gradients' memory
            refuses the image (called only then); None: the message points to ``invkit plugins``.

    Returns:
        The estimate of the image's solve (seconds of prior evaluations), or None (a small
        image, or no estimate).

    Raises:
        RestoreError: Over a limit.
    """
    pixels = H * W
    limit = pixel_limit(opts, timer)
    gradient_limit = gradient_pixel_limit(timer)
    over_memory = gradient_limit is not None and pixels > gradient_limit
    steps = opts.steps or timer.default_steps
    factor = timer.evaluations_per_step
    if pixels <= ESTIMATE_PIXELS and pixels <= limit:
        return None
    per_eval = timer.per_eval(c, H, W) if factor > 0 else None
    evaluations = _evaluations(steps, opts.samples, factor)
    total = per_eval.scaled(evaluations) if per_eval is not None else None
    if factor == 0:
        estimate = "no estimate (the solver does not evaluate the prior)"
    elif per_eval is not None:
        estimate = f"{_cost_text(per_eval, steps, opts.samples, factor)} on {timer.device.type} ({per_eval.how})"
    else:
        estimate = "no estimate (the prior failed on a small test image)"
    budget = opts.max_minutes * 60
    over_time = total is not None and total.low > budget
    if pixels > limit or over_time:
        step = max(prior_multiple(timer.prior), 1) * scale  # restored sides whose input side is whole
        n, small_eval = _fitting_side(c, H, W, step, limit, per_eval, budget / evaluations if per_eval is not None else None, timer)
        h, w = _shrunk(H, W, n)
        small_cost = f", {_cost_text(small_eval, steps, opts.samples, factor)}" if small_eval is not None else ""
        if over_memory:
            memory = device_memory_bytes(timer.device) or 0
            over = (
                f"and the solver differentiates through the prior: about {pixels * GRADIENT_BYTES_PER_PIXEL / 1e9:.3g} GB "
                f"of activations ({GRADIENT_BYTES_PER_PIXEL // 1000} kB a pixel, measured with the default prior), "
                f"over {GRADIENT_MEMORY_SHARE:.0%} of the {memory / 1e9:.3g} GB of the {timer.device.type}"
            ) + (f"; also over --max-megapixels {opts.max_megapixels:g}" if pixels > opts.max_megapixels * 1e6 else "") + (
                f"; {estimate}: over --max-minutes {opts.max_minutes:g}" if over_time else "")
            anyway = []
        elif pixels > limit:
            over = f"over --max-megapixels {opts.max_megapixels:g}: {estimate}"
            anyway = [f"--max-megapixels {math.ceil(pixels / 1e5) / 10:.10g}"]
        else:
            over = f"{estimate}: over --max-minutes {opts.max_minutes:g}"
            anyway = []
        if over_time and not over_memory:  # memory cannot be overridden
            anyway.append(f"--max-minutes {math.ceil(total.low / 60 * 1.05)}")  # type: ignore[union-attr]
        options = []
        if over_time and pixels <= limit:
            if (k := math.floor(steps * budget / total.low + 1e-9)) >= 1:  # type: ignore[union-attr]
                options.append(f"pass --steps {k} (a coarser solve)")
            if opts.samples > 1 and (k := math.floor(opts.samples * budget / total.low + 1e-9)) >= 1:  # type: ignore[union-attr]
                options.append(f"pass --samples {k}")
        if not resizable:
            options.append(f"make the measurement from an image of at most {n} pixels on its longest side ({h * w / 1e6:.3g} MP{small_cost})")
        elif n // scale < 1 or (h * w > limit):
            options.append("no --resize of the input fits" + (f" (each input pixel restores {scale}x{scale})" if scale > 1 else ""))
        elif scale > 1:
            options += [f"pass --resize {n // scale} (the input's longest side; restored at {n}, {h * w / 1e6:.3g} MP{small_cost})", "crop a region with --crop Y,X,H,W"]
        else:
            options += [f"pass --resize {n} (longest side, {h * w / 1e6:.3g} MP{small_cost})", "crop a region with --crop Y,X,H,W"]
        if anyway:
            options.append(" and ".join(anyway) + " to run it anyway")
        elif alternatives is None:
            options.append("use a solver that does not differentiate through the prior (`invkit plugins` lists them)")
        elif names := list(alternatives()):
            options.append(f"use a solver that does not differentiate through the prior ({', '.join(names)}; "
                           "`invkit plugins` says what each needs)")
        advice = options[0] if len(options) == 1 else f"{'; '.join(options[:-1])}; or {options[-1]}"
        raise RestoreError(f"{name} is {W}x{H} pixels ({pixels / 1e6:.3g} MP), {over}; {advice}")
    if say_note is not None:
        say_note(f"{name}: {W}x{H} pixels ({pixels / 1e6:.3g} MP): {estimate}")
    return total


def _fitting_side(
    c: int, H: int, W: int, step: int, limit: float, per_eval: Estimate | None, seconds: float | None, timer: Timer
) -> tuple[int, Estimate | None]:
    """The longest side (a multiple of ``step``) of ``(H, W)`` scaled down that has at most ``limit``
    pixels and, when ``seconds`` is given, whose estimated evaluation's low end is within it; and
    that estimate. Starts from the cost taken linear in pixels (``per_eval``: the full size's
    estimate) and shrinks by 5 % until the estimate agrees (the cost per pixel changes with size:
    untiled below the tiling threshold, a whole tile count, a GPU's overhead per call). ``step``
    when nothing fits."""
    fraction = limit / (H * W)
    if seconds is not None and per_eval is not None:
        fraction = min(fraction, seconds / per_eval.low)
    n = max(step, int(max(H, W) * math.sqrt(min(fraction, 1.0)) // step * step))
    while True:
        h, w = _shrunk(H, W, n)
        est = timer.per_eval(c, h, w) if seconds is not None else None
        if n <= step or (h * w <= limit and (est is None or est.low <= seconds)):  # type: ignore[operator]
            return n, est
        n = max(step, min(n - step, int(n * 0.95) // step * step))


def _shrunk(H: int, W: int, side: int) -> tuple[int, int]:
    """``(H, W)`` scaled so that the longer side is ``side``."""
    k = side / max(H, W)
    return max(1, round(H * k)), max(1, round(W * k))


def projection_note(event: ProgressEvent, previous: float | None = None) -> str | None:
    """The time projected for an image after its first solver step, and again after its second
    (the first also holds one-off set-up, such as an operator's SVD), when over
    :data:`ANNOUNCE_SECONDS`; beside the estimate made before the run (``event.estimate``) when
    there was one.

    For a caller that shows no progress bar (``invkit solve`` without a terminal: a bar shows
    the time left itself).

    Args:
        event: The progress event.
        previous: ``elapsed`` of the image's previous step event: after the second step the
            projection is the time so far plus the second step's time for each step left.

    Returns:
        The note, or None: not the first or second step, or a shorter projection.
    """
    if event.kind != "step" or event.total is None or event.done not in (1, 2) or (event.done == 2 and previous is None):
        return None
    if event.done == 1:
        projected, said = event.elapsed * event.total, f"first step took {format_duration(event.elapsed)}"
    else:
        step = event.elapsed - previous  # type: ignore[operator]
        projected, said = event.elapsed + step * (event.total - 2), f"second step took {format_duration(step)}"
    if projected <= ANNOUNCE_SECONDS:
        return None
    before = ""
    if event.estimate is not None:
        est = Estimate(*event.estimate, how="")
        before = f" (estimated {format_duration(est.mid)} before the run, {format_duration(est.low)} to {format_duration(est.high)})"
    return f"{event.image.name}: {said}; projected {format_duration(projected)} for this image{before}"
