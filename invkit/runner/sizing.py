"""Image sizes of a run: which sizes an operator and the prior accept, the nearest ones that do,
and the ``pad`` (symmetric reflection, cropped back after) / ``crop`` / ``resize`` fixes applied to
the input file; also the text forms of those options (``--crop Y,X,H,W``, ``--resize N|H,W``,
``--size C,H,W``)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from ..forward import Operator, as_shape
from ..params import ParamError, int_tuple
from .errors import RestoreError
from .options import RestoreOptions

__all__ = ["Geometry", "SizeRules", "apply_geometry", "crop_back", "planned_size", "prior_multiple", "resized_size", "parse_crop", "parse_resize", "parse_size"]


@dataclass
class Geometry:
    """What was done to the input file's size: for the message and for cropping back."""

    note: str = ""
    # (top, bottom, left, right) padding in input-file pixels, and the image/input scale
    pad: tuple[int, int, int, int] | None = None
    scale: tuple[int, int] = (1, 1)


def _integers(text: str) -> tuple[int, ...]:
    """Comma- (or ``x``-) separated integers, read by :func:`invkit.params.int_tuple`; ``()`` when the text is not that."""
    try:
        return int_tuple(text)
    except ValueError:
        return ()


def parse_crop(text: str) -> tuple[int, int, int, int] | Literal[True]:
    """``--crop`` text: ``centre`` (True: the largest centred size that works) or ``Y,X,H,W``.

    Only the form is checked here; the values are checked with every other option
    (:func:`invkit.runner.check_options`).

    Raises:
        RestoreError: Not ``centre`` and not four integers.
    """
    if text == "centre":
        return True
    vals = _integers(text)
    if len(vals) != 4:
        raise RestoreError(f"--crop {text!r}: give Y,X,H,W (top row, left column, height, width), or --crop alone for a centred crop")
    return vals  # type: ignore[return-value]


def parse_resize(text: str) -> int | tuple[int, int]:
    """``--resize`` text: ``N`` (the longest side) or ``H,W`` (exact); values checked as :func:`parse_crop`'s.

    Raises:
        RestoreError: Neither one nor two integers.
    """
    vals = _integers(text)
    if len(vals) == 1:
        return vals[0]
    if len(vals) == 2:
        return vals  # type: ignore[return-value]
    raise RestoreError(f"--resize {text!r}: give N (longest side in pixels) or H,W")


def parse_size(text: str) -> tuple[int, int, int]:
    """``--size`` text ``C,H,W`` (or ``CxHxW``), read by the one shape parser :func:`invkit.forward.as_shape`.

    Raises:
        RestoreError: Not three positive integers.
    """
    try:
        return as_shape(text)
    except ValueError:
        raise RestoreError(f"--size {text!r} is not three positive integers C,H,W (e.g. 3,256,256)") from None


def _pad_symmetric(x: Tensor, top: int, bottom: int, left: int, right: int) -> Tensor:
    a = np.pad(x.numpy(), ((0, 0), (0, 0), (top, bottom), (left, right)), mode="symmetric")
    return torch.from_numpy(np.ascontiguousarray(a))


def _resize(x: Tensor, h: int, w: int, clip: bool) -> Tensor:
    out = torch.nn.functional.interpolate(x.double(), size=(h, w), mode="bicubic", antialias=True, align_corners=False)
    return (out.clamp(0, 1) if clip else out).to(x.dtype)


def _candidates(n: int, grow: bool, multiple: int, count: int = 48) -> list[int]:
    out: list[int] = []
    v = n
    while len(out) < count and v >= 1 and v <= n + 65536:
        if v % multiple == 0:
            out.append(v)
        v += 1 if grow else -1
    return out


class SizeRules:
    """Which input-file sizes (h, w) the operator and the prior accept, and the nearest ones that do."""

    def __init__(self, to_in_shape: Any, build: Any, prior_multiple: int, prior_label: str, scale: tuple[int, int]) -> None:
        self.to_in_shape = to_in_shape  # (h, w) -> (C, H, W), may raise ValueError
        self.build = build  # in_shape -> Operator, may raise ValueError
        self.multiple = prior_multiple
        self.prior_label = prior_label
        self.scale = scale
        self.built: dict[tuple[int, int], Operator] = {}

    def reason(self, h: int, w: int) -> str | None:
        """None if (h, w) works (the operator is kept), else why not.

        Raises:
            ParamError: The operator's parameters are wrong whatever the size (a kernel file that
                cannot be read): no size fixes that, so it is not a reason to offer sizes for.
        """
        if (h, w) in self.built:
            return None
        try:
            shape = self.to_in_shape(h, w)
        except ParamError:
            raise
        except ValueError as exc:
            return str(exc)
        _, hh, ww = shape
        m = self.multiple
        if m > 1 and (hh % m or ww % m):
            return f"{self.prior_label} needs image H and W divisible by {m}, got {hh}x{ww}"
        try:
            op = self.build(shape)
        except ParamError:
            raise
        except ValueError as exc:
            return str(exc)
        self.built[(h, w)] = op
        return None

    def nearest(self, h: int, w: int, grow: bool, budget: int = 400) -> tuple[int, int] | None:
        mh = self.multiple // math.gcd(self.multiple, self.scale[0])
        mw = self.multiple // math.gcd(self.multiple, self.scale[1])
        hs, ws = _candidates(h, grow, mh), _candidates(w, grow, mw)
        # fewest pixels added/removed on the worse side first (so 48x48 -> 64x64 for a power-of-two
        # operator is reached), then the closest area
        pairs = sorted(((a, b) for a in hs for b in ws), key=lambda ab: (max(abs(ab[0] - h), abs(ab[1] - w)), abs(ab[0] * ab[1] - h * w)))
        for a, b in pairs[:budget]:
            if self.reason(a, b) is None:
                return a, b
        return None

    def fixes(self, h: int, w: int, unit: str) -> str:
        """The --pad / --crop sizes that would work, as a sentence."""
        parts = []
        up = self.nearest(h, w, True)
        if up:
            parts.append(f"--pad (reflect to {up[0]}x{up[1]}{unit}, cropped back after)")
        down = self.nearest(h, w, False)
        if down:
            parts.append(f"--crop (centre {down[0]}x{down[1]}{unit})")
        parts.append("--resize H,W")
        return "fix the size with " + ", ".join(parts[:-1]) + f" or {parts[-1]}" if len(parts) > 1 else "resize it with --resize H,W"


def planned_size(h: int, w: int, opts: RestoreOptions) -> tuple[int, int]:
    """The size ``(h, w)`` an input of ``h × w`` will have after ``--resize`` and ``--crop``, computed
    without touching its pixels, so a size can be refused before anything is allocated.

    ``--resize N`` scales the longest side to N, ``H,W`` is exact; ``--crop T,L,H,W`` takes its
    region (the automatic ``--crop`` only shrinks, so it is bounded by the input); ``--pad`` adds
    less than one prior multiple per side and is left out. :func:`apply_geometry` may then move a
    resize to the nearest size that works (a few pixels).

    Example:
        >>> from invkit.runner.options import RestoreOptions
        >>> from pathlib import Path
        >>> planned_size(64, 48, RestoreOptions(Path("in.png"), Path("out.png"), resize=20000))
        (20000, 15000)
    """
    h, w = resized_size(h, w, opts) or (h, w)
    if isinstance(opts.crop, tuple):
        h, w = opts.crop[2], opts.crop[3]
    return h, w


def resized_size(h: int, w: int, opts: RestoreOptions) -> tuple[int, int] | None:
    """The size ``--resize`` makes of an ``h × w`` input (before any crop), None without it: the
    resize allocates it even when a crop then keeps a small region, so it is size-checked too."""
    if opts.resize is None:
        return None
    if isinstance(opts.resize, tuple):
        return opts.resize
    s = opts.resize / max(h, w)
    return max(1, round(h * s)), max(1, round(w * s))


def apply_geometry(x: Tensor, rules: SizeRules, opts: RestoreOptions, clip: bool, what: str, unit: str) -> tuple[Tensor, Geometry, Operator]:
    """Resize / crop / pad the input-file tensor ``x`` (1, C, h, w) as ``opts`` asks.

    Args:
        x: The input file's tensor (a clean image, or an image-shaped measurement).
        rules: The sizes the operator and the prior accept.
        opts: ``resize``, then ``crop``, then ``pad`` are applied in that order.
        clip: Clip a resized image to [0, 1] (a clean image; not a measurement).
        what: The input, for messages (``image x.png``).
        unit: Unit of sizes in messages (``" measurement pixels"`` or ``""``).

    Returns:
        The resized tensor, what was done (for the note and for cropping back), and the operator
        built for the final size.

    Raises:
        RestoreError: The final size does not work; the message names the sizes that would.
    """
    geo = Geometry(scale=rules.scale)
    notes = []
    h, w = x.shape[-2:]
    if opts.pad and opts.crop is not None:
        raise RestoreError("--pad and --crop exclude each other; choose one")
    if opts.resize is not None:
        if isinstance(opts.resize, tuple):
            th, tw = opts.resize
        else:
            s = opts.resize / max(h, w)
            th, tw = max(1, round(h * s)), max(1, round(w * s))
            if rules.reason(th, tw) is not None and not opts.pad and opts.crop is None:
                near = [c for c in (rules.nearest(th, tw, False), rules.nearest(th, tw, True)) if c]
                if near:
                    th, tw = min(near, key=lambda c: abs(c[0] - th) + abs(c[1] - tw))
        x = _resize(x, th, tw, clip)
        notes.append(f"resized {h}x{w} -> {th}x{tw}{unit}")
        h, w = th, tw
    if opts.crop is not None:
        region = opts.crop
        if region is True:
            target = rules.nearest(h, w, False) if rules.reason(h, w) is not None else (h, w)
            if target is None:
                raise RestoreError(f"{what}: no smaller size works ({rules.reason(h, w)}); use --pad or --resize")
            th, tw = target
            top, left = (h - th) // 2, (w - tw) // 2
        else:
            top, left, th, tw = region
            if top + th > h or left + tw > w:
                raise RestoreError(f"--crop {','.join(map(str, region))}: the region exceeds the {h}x{w}{unit} {what}")
        if (th, tw) != (h, w):
            x = x[..., top : top + th, left : left + tw].contiguous()
            notes.append(f"cropped {h}x{w} -> {th}x{tw}{unit} at ({top}, {left})")
        h, w = th, tw
    if opts.pad:
        if rules.reason(h, w) is not None:
            target = rules.nearest(h, w, True)
            if target is None:
                raise RestoreError(f"{what}: no larger size works ({rules.reason(h, w)}); use --crop or --resize")
            th, tw = target
            top, left = (th - h) // 2, (tw - w) // 2
            geo.pad = (top, th - h - top, left, tw - w - left)
            x = _pad_symmetric(x, *geo.pad)
            notes.append(f"padded {h}x{w} -> {th}x{tw}{unit} (reflect; cropped back after)")
            h, w = th, tw
    why = rules.reason(h, w)
    if why is not None:
        done = f" ({'; '.join(notes)})" if notes else ""
        raise RestoreError(f"{what} is {h}x{w}{unit}{done}: {why}; {rules.fixes(h, w, unit)}")
    geo.note = "; ".join(notes)
    return x, geo, rules.built[(h, w)]


def crop_back(x: Tensor, geo: Geometry) -> Tensor:
    """Undo ``pad``: crop a restoration (image pixels, ``geo.scale`` times the input file's) back."""
    if geo.pad is None:
        return x
    top, bottom, left, right = geo.pad
    sh, sw = geo.scale
    H, W = x.shape[-2:]
    return x[..., top * sh : H - bottom * sh, left * sw : W - right * sw]


def prior_multiple(prior: Any) -> int:
    """The number a prior needs image H and W divisible by: its protocol attribute ``size_multiple``
    (:class:`invkit.Prior`; 1 for a duck-typed prior that does not state one)."""
    m = getattr(prior, "size_multiple", 1)
    return m if isinstance(m, int) and m > 1 else 1
