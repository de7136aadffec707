"""Inpainting: keep a subset of the pixels, drop the rest.

The measurement is the compact vector of the kept entries (``out_shape == (m,)``), in C order
over ``(C, H, W)`` (channel, then row, then column), exactly what ``x[mask]`` gives with
numpy/torch boolean indexing. Three mask kinds:

* ``mask=random``: ``round(fraction * H * W)`` pixels removed, drawn with a
  :class:`torch.Generator` seeded with ``seed`` (never the global RNG). With
  ``per_channel=true`` each channel gets its own draw (one ``randperm`` per channel, channel 0
  first, from the same generator); otherwise the same pixels are missing in every channel.
* ``mask=box``: a rectangle removed in every channel; ``top``, ``left``, ``height``, ``width``
  in pixels. Unset ``height``/``width`` default to ``max(1, H // 2)`` / ``max(1, W // 2)``;
  unset ``top``/``left`` centre the box: ``(H - height) // 2`` / ``(W - width) // 2``.
* ``mask=file``: ``mask_file`` is an image read with Pillow and converted to grayscale; pixels
  at or above half of full scale (128 of 255 for 8-bit, 32768 of 65535 for 16-bit, 0.5 for
  float images) are **kept**, the others removed, in every channel.

Example:
    >>> import torch
    >>> from invkit_operators.inpainting import Inpainting
    >>> op = Inpainting((1, 2, 3), mask="box", top=0, left=1, height=2, width=1)
    >>> op.mask[0].int().tolist()
    [[1, 0, 1], [1, 0, 1]]
    >>> op.forward(torch.arange(6.0).reshape(1, 1, 2, 3)).tolist()
    [[0.0, 2.0, 3.0, 5.0]]
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Annotated

import numpy as np
import torch
from torch import Tensor

from invkit.forward import IdentityUOperator
from invkit.params import Arg, ParamError

__all__ = ["Inpainting", "load_mask_file", "OPERATORS"]

MASK_KINDS = ("random", "box", "file")


def load_mask_file(path: str, size: tuple[int, int], owner: str = "inpainting") -> np.ndarray:
    """Read a mask image and return the ``(H, W)`` bool array of **kept** pixels.

    The image is read with Pillow as grayscale (colour images through Pillow's ``"L"``
    conversion, alpha ignored); a pixel is kept when its value is at least half of full
    scale: 128 for 8-bit images, 32768 for 16-bit ones, 0.5 for float images, ``True`` for
    1-bit ones.

    Args:
        path: Image file (PNG, BMP, TIFF, ... anything Pillow reads).
        size: Expected ``(H, W)`` of the image being masked.
        owner: Name used in error messages.

    Raises:
        ValueError: The file is missing or unreadable, or its size differs from ``size``.
    """
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is installed with the io extras
        raise ParamError(f"{owner}: reading mask_file needs Pillow; pip install pillow") from None
    try:
        with Image.open(os.fspath(path)) as img:
            img.load()
            mode = img.mode
            if mode == "1":
                kept = np.asarray(img, dtype=bool)
            elif mode.startswith("I;16") or mode == "I":
                kept = np.asarray(img).astype(np.float64) >= 32768.0
            elif mode == "F":
                kept = np.asarray(img, dtype=np.float64) >= 0.5
            else:
                kept = np.asarray(img.convert("L"), dtype=np.float64) >= 128.0
    except (OSError, ValueError) as exc:  # FileNotFoundError, PIL.UnidentifiedImageError, ...
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).splitlines()[0]
        raise ParamError(f"{owner}: cannot read mask_file {str(path)!r} ({reason}); give a grayscale image file (white = kept)") from None
    if kept.ndim != 2:
        raise ParamError(f"{owner}: mask_file {str(path)!r} is not a single 2-D image (array shape {kept.shape})")
    if tuple(kept.shape) != tuple(size):  # the image's size: --crop/--pad/--resize to the mask's may fix it
        raise ValueError(
            f"{owner}: mask_file {str(path)!r} is {kept.shape[0]}x{kept.shape[1]} (H x W) but the image is "
            f"{size[0]}x{size[1]}; resize the mask to the image size"
        )
    return kept


class Inpainting(IdentityUOperator):
    """Inpainting: keep the unmasked pixels (random fraction, box, or mask file); y = compact vector.

    ``H`` selects the kept entries: ``forward`` is a gather, ``adjoint`` a scatter into zeros.
    Its SVD is a permutation: every singular value is 1 (one per kept entry, m of them),
    ``V`` puts the kept entries first (ascending flat C-order index) and the missing ones after
    (same order), ``U = I`` on the compact vector.

    Memory: the ``(C, H, W)`` bool mask plus three int64 index vectors (kept, permutation and
    its inverse), about 25 bytes per image entry; no matrix. Cost per apply: O(n) (one gather
    or scatter of n = C H W entries, batched).

    Args:
        in_shape: Image shape ``(C, H, W)``.
        mask: ``random``, ``box`` or ``file`` (see the module docstring).
        fraction: Fraction of the pixels removed (``mask=random``; ignored otherwise).
        seed: Seed of the mask draw (``mask=random``; ignored otherwise).
        per_channel: Draw the random mask independently per channel (``mask=random`` only; a
            box or file mask is the same in every channel, so ``per_channel=true`` with them is
            an error).
        top: First removed row of the box (``mask=box``); default centres the box.
        left: First removed column of the box (``mask=box``); default centres the box.
        height: Box height in pixels (``mask=box``); default ``max(1, H // 2)``.
        width: Box width in pixels (``mask=box``); default ``max(1, W // 2)``.
        mask_file: Mask image (``mask=file``): white (>= half scale) = kept, black = missing.

    Attributes:
        mask: ``(C, H, W)`` bool tensor, ``True`` where the pixel is kept (CPU).

    Raises:
        ValueError: No pixel is kept; the box does not fit; the mask file is missing,
            unreadable or of the wrong size; a parameter is given for another mask kind.
    """

    name = "inpainting"
    measures_pixels = True  # y = the kept pixels: a photo with holes is a measurement too
    check_shape = (3, 8, 12)
    check_cases = (
        ((3, 8, 12), {"per_channel": True}),
        ((1, 16, 20), {"fraction": 0.8, "seed": 3}),
        ((3, 10, 14), {"mask": "box"}),
        ((1, 12, 8), {"mask": "box", "top": 0, "left": 2, "height": 5, "width": 3}),
    )

    def __init__(
        self,
        in_shape: Sequence[int] | str,
        *,
        mask: Annotated[
            str, Arg("mask kind: random (fraction of pixels removed), box (rectangle removed) or file", choices=MASK_KINDS)
        ] = "random",
        fraction: Annotated[
            float, Arg("fraction of pixels removed, mask=random", min=0.0, max=1.0, min_inclusive=False, max_inclusive=False)
        ] = 0.5,
        seed: Annotated[int, Arg("seed of the random mask (torch.Generator), mask=random", min=0)] = 0,
        per_channel: Annotated[bool, Arg("draw the random mask independently per channel (mask=random only)")] = False,
        top: Annotated[int | None, Arg("first removed row of the box, mask=box (default: centred)", min=0)] = None,
        left: Annotated[int | None, Arg("first removed column of the box, mask=box (default: centred)", min=0)] = None,
        height: Annotated[int | None, Arg("box height in pixels, mask=box (default: H // 2)", min=1)] = None,
        width: Annotated[int | None, Arg("box width in pixels, mask=box (default: W // 2)", min=1)] = None,
        mask_file: Annotated[str | None, Arg("mask image, mask=file: pixels >= half scale are kept")] = None,
    ) -> None:
        super().__init__(in_shape)
        kind = mask
        box = {"top": top, "left": left, "height": height, "width": width}
        self._check_kind_params(kind, box, per_channel, mask_file)
        c, h, w = self.in_shape
        if kind == "random":
            kept = self._random_mask(c, h, w, fraction, seed, per_channel)
        elif kind == "box":
            kept = self._box_mask(c, h, w, box)
        else:
            plane = load_mask_file(str(mask_file), (h, w), owner=self.name)
            kept = torch.from_numpy(plane.copy()).unsqueeze(0).expand(c, h, w).clone()
        self.mask: Tensor = kept
        flat = kept.reshape(-1)
        if not bool(flat.any()):
            raise ValueError(f"{self.name}: the {kind} mask keeps no pixel of the {h}x{w} image; keep at least one pixel")
        self._keep = torch.nonzero(flat, as_tuple=False).reshape(-1)
        missing = torch.nonzero(~flat, as_tuple=False).reshape(-1)
        self._perm = torch.cat([self._keep, missing])
        self._inv = torch.empty_like(self._perm)
        self._inv[self._perm] = torch.arange(self._perm.numel())
        self._m = int(self._keep.numel())

    # ------------------------------------------------------------------ construction
    def _check_kind_params(self, kind: str, box: dict[str, int | None], per_channel: bool, mask_file: str | None) -> None:
        if kind != "box":
            given = [k for k, v in box.items() if v is not None]
            if given:
                raise ParamError(f"{self.name}: {', '.join(given)} only apply to mask=box; add mask=box or drop them")
        if kind != "file" and mask_file is not None:
            raise ParamError(f"{self.name}: mask_file is only read with mask=file; add mask=file")
        if kind == "file" and mask_file is None:
            raise ParamError(f"{self.name}: mask=file needs mask_file=PATH (white = kept pixels)")
        if kind != "random" and per_channel:
            raise ParamError(f"{self.name}: per_channel applies to mask=random only (a {kind} mask is the same in every channel); drop it")

    @staticmethod
    def _random_mask(c: int, h: int, w: int, fraction: float, seed: int, per_channel: bool) -> Tensor:
        npix = h * w
        removed = round(fraction * npix)
        gen = torch.Generator().manual_seed(seed)
        planes = []
        for _ in range(c if per_channel else 1):
            plane = torch.ones(npix, dtype=torch.bool)
            plane[torch.randperm(npix, generator=gen)[:removed]] = False
            planes.append(plane.reshape(h, w))
        if per_channel:
            return torch.stack(planes)
        return planes[0].unsqueeze(0).expand(c, h, w).clone()

    def _box_mask(self, c: int, h: int, w: int, box: dict[str, int | None]) -> Tensor:
        bh = box["height"] if box["height"] is not None else max(1, h // 2)
        bw = box["width"] if box["width"] is not None else max(1, w // 2)
        top = box["top"] if box["top"] is not None else max(0, (h - bh) // 2)
        left = box["left"] if box["left"] is not None else max(0, (w - bw) // 2)
        if top + bh > h:
            raise ValueError(f"{self.name}: box rows top={top} + height={bh} exceed H={h}; reduce top or height")
        if left + bw > w:
            raise ValueError(f"{self.name}: box columns left={left} + width={bw} exceed W={w}; reduce left or width")
        kept = torch.ones(c, h, w, dtype=torch.bool)
        kept[:, top : top + bh, left : left + bw] = False
        return kept

    # ------------------------------------------------------------------ shapes
    @property
    def out_shape(self) -> tuple[int]:
        return (self._m,)

    @property
    def singular_values(self) -> Tensor:
        return torch.ones(self._m, dtype=torch.float64)

    # ------------------------------------------------------------------ maps
    def forward(self, x: Tensor) -> Tensor:
        self.check_image(x)
        keep = self.const("keep", self._keep, x)
        return x.reshape(x.shape[0], -1).index_select(1, keep)

    def adjoint(self, y: Tensor) -> Tensor:
        return self.embed(y, fill=0.0)

    def embed(self, y: Tensor, fill: float = 0.0) -> Tensor:
        """Put the kept entries back in place, the missing ones set to ``fill`` (for display).

        Args:
            y: Measurements ``(B, m)``.
            fill: Value of the missing pixels (``0.0`` gives ``Hᵀ y``).

        Returns:
            Images ``(B, C, H, W)`` in ``y``'s dtype and device.
        """
        self.check_measurement(y)
        keep = self.const("keep", self._keep, y)
        out = y.new_full((y.shape[0], self.in_numel), float(fill))
        out = out.index_copy(1, keep, y)
        return out.reshape(y.shape[0], *self.in_shape)

    def Vt(self, x: Tensor) -> Tensor:
        self.check_image(x)
        perm = self.const("perm", self._perm, x)
        return x.reshape(x.shape[0], -1).index_select(1, perm)

    def V(self, z: Tensor) -> Tensor:
        self.check_spectral(z)
        inv = self.const("inv", self._inv, z)
        return z.index_select(1, inv).reshape(z.shape[0], *self.in_shape)


OPERATORS = (Inpainting,)
