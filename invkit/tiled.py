"""Tiled denoising: any :class:`~invkit.prior.Prior` applied in overlapping tiles, blended smoothly.

A prior whose cost grows faster than the pixel count (a UNet with self-attention) becomes linear
in pixels when ``denoise`` runs on fixed-size tiles. Only ``denoise`` is tiled: the operator and
the solver still see the whole image at every step.

Tiles. Along an axis of length ``n`` a tile has size ``s = min(tile, n)``; tiles start at
``0, stride, 2 stride, ...`` (``stride = tile - overlap``) and the last one is flush with the
border (start ``n - s``), so every tile is full size and neighbours overlap by ``>= overlap``
pixels. The 2-D tiles are the product of the two axes' tiles (:func:`tile_grid`).

Blend. Tile ``t`` gets a separable window ``w_t(y, x) = a_t(y) b_t(x)``. Along an axis, at a tile
edge inside the image the profile is 0 on the ``margin`` pixels next to the edge, then ramps over
``L = overlap - 2 margin`` pixels as ``r_i = sin^2(pi (i + 1/2) / (2 L))``, then is 1 in the
interior; at an edge on the image border it is 1 up to the edge. Since ``r_i + r_{L-1-i} = 1``,
two tiles overlapping by exactly ``overlap`` sum to 1. The output is normalised per pixel::

    out(p) = sum_t w_t(p) D(tile_t)(p) / sum_t w_t(p),

and ``sum_t w_t(p) > 0`` everywhere when ``0 <= margin <= overlap / 2`` (:func:`tile_windows`).

Exactness. If ``D``'s output at a pixel depends only on inputs within radius ``r`` (Chebyshev
distance; padding at the image border being part of ``D``), a tile's output is exact at every
pixel at least ``r`` away from the tile's edges inside the image. The window is 0 within
``margin`` of such edges, so the tiled result equals the untiled one (to float rounding) whenever
``r <= margin``. A diffusion UNet is not local, so for it the tiled result is an approximation;
the default tile and overlap are to be chosen by measurement.

Example:
    >>> tile_grid(96, 80, tile=64, overlap=16, multiple=8)
    [(0, 0, 64, 64), (0, 16, 64, 64), (32, 0, 64, 64), (32, 16, 64, 64)]
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from .prior import Prior, sigma_rows

__all__ = ["DEFAULT_TILE", "DEFAULT_OVERLAP", "MAX_BATCH_PIXELS", "CPU_BATCH_PIXELS", "default_batch", "TiledPrior", "tile_grid", "tile_windows"]

#: Tile side in pixels. With the default prior on the CPU a pixel of tile costs about the same at
#: 128, 256 and 512 (21.6, 22.1, 22.9 µs at 1024², benchmarks/tiled_prior.py); at 12 MP the tiles
#: of 128 hold 1.33x the image's pixels, those of 256 and 512 1.38x, so 256 should cost about 6 %
#: more than 128 (an extrapolation, not timed at 12 MP) and gives the network 4x the context.
DEFAULT_TILE = 256
#: Overlap of neighbouring tiles in pixels: at 32 the tiled result's pixel-to-pixel jumps in the
#: blend zones were within 4 % of the untiled image's at the same places (benchmarks/tiled_prior.py).
DEFAULT_OVERLAP = 32
#: With ``batch=None`` on a GPU, one forward of the inner prior gets at most this many tile pixels
#: (``H_tile * W_tile`` per tile, channels not counted), and at least one tile.
MAX_BATCH_PIXELS = 2**19
#: The same on a CPU: one 256² tile per forward. With the default prior on 2 threads and freed
#: memory kept (:func:`invkit.keep_freed_memory`), 8 tiles of 256² one per call took 7.27 s and
#: peaked at 0.66 GB, all 8 in one call 9.72 s and 2.23 GB (docs/measurements.md "Freed memory kept").
CPU_BATCH_PIXELS = 2**16


def default_batch(tile_pixels: int, device: torch.device | str) -> int:
    """Tiles per inner forward when ``batch`` is None: :data:`MAX_BATCH_PIXELS` (CUDA and other
    accelerators) or :data:`CPU_BATCH_PIXELS` (CPU) tile pixels, at least one tile."""
    budget = CPU_BATCH_PIXELS if torch.device(device).type == "cpu" else MAX_BATCH_PIXELS
    return max(1, budget // tile_pixels)


def _check_grid(tile: int, overlap: int, multiple: int) -> None:
    """Raise ValueError unless ``0 <= overlap < tile`` and both are multiples of ``multiple``."""
    if multiple < 1:
        raise ValueError(f"size multiple must be >= 1, got {multiple}")
    if tile < 1 or overlap < 0 or overlap >= tile:
        raise ValueError(f"tile={tile}, overlap={overlap}: need tile >= 1 and 0 <= overlap < tile; choose a smaller overlap or a larger tile")
    if tile % multiple or overlap % multiple:
        fix = f"tile={max(multiple, tile - tile % multiple)}, overlap={overlap - overlap % multiple}"
        raise ValueError(f"tile={tile}, overlap={overlap}: both must be multiples of the prior's size_multiple {multiple}; use e.g. {fix}")


def _axis_starts(n: int, tile: int, overlap: int) -> tuple[list[int], int]:
    """Tile starts along an axis of length ``n`` and the tile size ``min(tile, n)``."""
    size = min(tile, n)
    starts = [0]
    while starts[-1] + size < n:
        starts.append(min(starts[-1] + tile - overlap, n - size))
    return starts, size


def _check_image(h: int, w: int, multiple: int) -> None:
    if h < 1 or w < 1 or h % multiple or w % multiple:
        fix = f"{max(multiple, h - h % multiple)}x{max(multiple, w - w % multiple)}"
        raise ValueError(f"image {h}x{w}: H and W must be positive multiples of the prior's size_multiple {multiple}; pad or crop it (e.g. to {fix})")


def tile_grid(h: int, w: int, tile: int, overlap: int, multiple: int = 1) -> list[tuple[int, int, int, int]]:
    """The tiles covering an ``h x w`` image, as ``(top, left, height, width)`` in raster order.

    Along each axis of length ``n``: size ``s = min(tile, n)``, starts ``0, tile - overlap, ...``
    and a last tile flush with the border (start ``n - s``). Every pixel is covered, neighbouring
    tiles overlap by at least ``min(overlap, n)``, and all starts are multiples of ``multiple``.

    Args:
        h: Image height, a multiple of ``multiple``.
        w: Image width, a multiple of ``multiple``.
        tile: Tile side, a multiple of ``multiple``.
        overlap: Overlap of neighbours, ``0 <= overlap < tile``, a multiple of ``multiple``.
        multiple: The prior's ``size_multiple``.

    Raises:
        ValueError: A size that breaks the rules above (the message says what to change).
    """
    _check_grid(tile, overlap, multiple)
    _check_image(h, w, multiple)
    ys, th = _axis_starts(h, tile, overlap)
    xs, tw = _axis_starts(w, tile, overlap)
    return [(y, x, th, tw) for y in ys for x in xs]


def _axis_windows(n: int, tile: int, overlap: int, margin: int, dtype: torch.dtype, device: torch.device | str) -> tuple[list[int], Tensor, Tensor]:
    """Tile starts along an axis, their window profiles ``(len(starts), size)`` and the profiles' sum ``(n,)``."""
    starts, size = _axis_starts(n, tile, overlap)
    ramp_len = overlap - 2 * margin
    i = torch.arange(ramp_len, dtype=dtype, device=device)
    ramp = torch.sin(math.pi * (i + 0.5) / (2 * ramp_len)) ** 2 if ramp_len > 0 else i
    edge = torch.cat([torch.zeros(margin, dtype=dtype, device=device), ramp])  # rising edge, then 1
    rows = []
    total = torch.zeros(n, dtype=dtype, device=device)
    for p in starts:
        row = torch.ones(size, dtype=dtype, device=device)
        if p > 0:  # left edge inside the image
            row[: edge.numel()] = row[: edge.numel()] * edge
        if p + size < n:  # right edge inside the image
            row[size - edge.numel() :] = row[size - edge.numel() :] * edge.flip(0)
        rows.append(row)
        total[p : p + size] += row  # in order: the same sums on every device and run
    return starts, torch.stack(rows), total


def tile_windows(
    h: int, w: int, tile: int, overlap: int, margin: int | None = None, *, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu"
) -> Tensor:
    """Each tile's blending window ``w_t(y, x) = a_t(y) b_t(x)``, in :func:`tile_grid`'s order.

    Along an axis, next to a tile edge inside the image: 0 on ``margin`` pixels, then the ramp
    ``sin^2(pi (i + 1/2) / (2 L))``, ``i < L = overlap - 2 margin``, then 1; next to the image border:
    1. With ``0 <= margin <= overlap / 2`` every pixel has ``sum_t w_t > 0``.

    Args:
        h: Image height.
        w: Image width.
        tile: Tile side.
        overlap: Overlap of neighbours.
        margin: Zero-weight pixels at an inner tile edge (default ``overlap // 4``).
        dtype: Windows' dtype.
        device: Windows' device.

    Returns:
        ``(T, th, tw)`` windows, ``T = len(tile_grid(h, w, tile, overlap))``.
    """
    margin = overlap // 4 if margin is None else margin
    _check_grid(tile, overlap, 1)
    _check_margin(margin, overlap)
    _, wy, _ = _axis_windows(h, tile, overlap, margin, dtype, device)
    _, wx, _ = _axis_windows(w, tile, overlap, margin, dtype, device)
    return (wy[:, None, :, None] * wx[None, :, None, :]).reshape(-1, wy.shape[1], wx.shape[1])


def _check_margin(margin: int, overlap: int) -> None:
    if margin < 0 or 2 * margin > overlap:
        raise ValueError(f"margin={margin} with overlap={overlap}: need 0 <= margin <= overlap / 2; use e.g. margin={overlap // 4}")


class TiledPrior(Prior):
    """A prior whose ``denoise`` runs on overlapping tiles, blended with smooth windows.

    ``denoise(x, sigma)`` on a ``(B, C, H, W)`` image:

    * ``H <= tile`` and ``W <= tile``: the inner prior's ``denoise(x, sigma)`` itself (same output).
    * otherwise ``out(p) = sum_t w_t(p) D(x_t, sigma)(p) / sum_t w_t(p)`` over the tiles of
      :func:`tile_grid`, with the windows of :func:`tile_windows`. For a denoiser ``D`` of
      receptive-field radius ``r <= margin`` this equals the untiled ``D(x, sigma)`` to rounding.

    Tiles of all ``B`` images are evaluated ``batch`` at a time (one inner ``denoise`` call per
    batch of tiles, each tile with its image's sigma). The inner prior sees the same tile tensors
    and sigmas whatever ``batch`` is, and tiles are summed in the same order (one ``index_add`` per
    tile, deterministic on CUDA too), so the result does not depend on ``batch`` as long as the
    inner prior's output for a row does not depend on the other rows of its batch. The default
    prior's grey path keys its extra noise on each input's own pixels and sigma, so its per-tile
    noise is batch-independent; its float32 network may still round differently for different
    batch sizes (oneDNN on the CPU, about 1e-7).

    The blend is differentiable (slicing, ``torch.stack`` and an in-place ``index_add_``, whose
    backward needs only the index), so solvers can differentiate through it when the inner prior
    is differentiable. Under autograd every tile's activations are kept whatever ``batch`` is.

    Args:
        prior: The inner prior.
        tile: Tile side in pixels, a multiple of ``prior.size_multiple``.
        overlap: Overlap of neighbouring tiles, ``0 <= overlap < tile``, a multiple of ``prior.size_multiple``.
        margin: Zero-weight pixels at an inner tile edge, ``0 <= margin <= overlap / 2``; default
            ``overlap // 4``. The receptive-field radius that tiling reproduces exactly.
        batch: Tiles per inner forward; ``None``: :func:`default_batch` for the tile and the input's device.

    Raises:
        ValueError: A tile, overlap, margin or batch that breaks the rules above.

    Attributes:
        inner: The wrapped prior. Its public attributes that the Prior protocol does not define
            are forwarded (``tiled.model`` is ``tiled.inner.model``).
    """

    def __init__(self, prior: Prior, tile: int = DEFAULT_TILE, overlap: int = DEFAULT_OVERLAP, margin: int | None = None, batch: int | None = None) -> None:
        multiple = max(int(getattr(prior, "size_multiple", 1)), 1)
        _check_grid(tile, overlap, multiple)
        margin = overlap // 4 if margin is None else margin
        _check_margin(margin, overlap)
        if batch is not None and batch < 1:
            raise ValueError(f"batch={batch}: give at least 1 tile per forward, or None to choose from MAX_BATCH_PIXELS")
        self.inner = prior
        self.tile, self.overlap, self.margin, self.batch = tile, overlap, margin, batch
        self.name = f"tiled({prior.name})"  # type: ignore[misc]  # per instance
        self.channels = prior.channels
        self.image_size = None
        self.size_multiple = multiple
        self.sigma_grid = prior.sigma_grid
        self.data_center = prior.data_center
        self.differentiable = prior.differentiable

    @property
    def sigma_min(self) -> float:
        """The inner prior's smallest noise level."""
        return self.inner.sigma_min

    @property
    def sigma_max(self) -> float:
        """The inner prior's largest noise level."""
        return self.inner.sigma_max

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup fails; "inner" itself must not recurse (copy, pickle).
        if name.startswith("_") or name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __repr__(self) -> str:
        return f"TiledPrior({self.inner!r}, tile={self.tile}, overlap={self.overlap}, margin={self.margin}, batch={self.batch})"

    def denoise(self, x: Tensor, sigma: float | Tensor) -> Tensor:
        """The tiled estimate of ``x0`` (see the class docstring).

        Args:
            x: Noisy images ``(B, C, H, W)`` in [0, 1] units; ``H``, ``W`` multiples of ``size_multiple``.
            sigma: A float or a ``(B,)`` tensor.

        Returns:
            ``(B, C, H, W)`` estimate, on ``x``'s device in ``x``'s dtype.

        Raises:
            ValueError: ``x`` is not 4-D, or (when tiled) ``H`` or ``W`` is not a multiple of ``size_multiple``.
        """
        if x.ndim != 4:
            raise ValueError(f"x must be (B, C, H, W), got {tuple(x.shape)}")
        b, c, h, w = x.shape
        if h <= self.tile and w <= self.tile:
            return self.inner.denoise(x, sigma)
        _check_image(h, w, self.size_multiple)
        ys, wy, norm_y = _axis_windows(h, self.tile, self.overlap, self.margin, x.dtype, x.device)
        xs, wx, norm_x = _axis_windows(w, self.tile, self.overlap, self.margin, x.dtype, x.device)
        th, tw = wy.shape[1], wx.shape[1]
        boxes = [(y, xx, i, j) for i, y in enumerate(ys) for j, xx in enumerate(xs)]
        rows = [(bi, box) for bi in range(b) for box in boxes]  # (image, tile), image-major
        s = sigma_rows(sigma, b).repeat_interleave(len(boxes))
        step = self.batch or default_batch(th * tw, x.device)
        # Flat index of element (c, i, j) of a tile at offset 0: c H W + i W + j.
        base = (
            torch.arange(c, device=x.device).view(c, 1, 1) * (h * w)
            + torch.arange(th, device=x.device).view(1, th, 1) * w
            + torch.arange(tw, device=x.device).view(1, 1, tw)
        ).reshape(-1)
        acc = x.new_zeros(b * c * h * w)
        for k0 in range(0, len(rows), step):
            chunk = rows[k0 : k0 + step]
            tiles = torch.stack([x[bi, :, y : y + th, xx : xx + tw] for bi, (y, xx, _, _) in chunk])
            d = self.inner.denoise(tiles, s[k0 : k0 + len(chunk)]).to(x.dtype)
            for d_t, (bi, (y, xx, i, j)) in zip(d, chunk):
                wt = wy[i].view(th, 1) * wx[j].view(1, tw)
                # in place, under autograd too: index_add's backward needs only the index
                acc.index_add_(0, base + (bi * c * h * w + y * w + xx), (d_t * wt).reshape(-1))
        # sum_t a_t(y) b_t(x) over the product grid = (sum_i a_i(y)) (sum_j b_j(x)).
        return acc.view(b, c, h, w) / (norm_y.view(h, 1) * norm_x.view(1, w))
