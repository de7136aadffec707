"""Colorization: an RGB image seen as one gray channel, ``y = w_r R + w_g G + w_b B``.

Example:
    >>> import torch
    >>> from invkit_operators.colorization import Colorization
    >>> op = Colorization((3, 1, 2), weights="0.5,0.5,0")
    >>> op.forward(torch.tensor([[[[1.0, 0.0]], [[0.0, 1.0]], [[1.0, 1.0]]]])).tolist()
    [[[[0.5, 0.5]]]]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Annotated, Any

import torch
from torch import Tensor

from invkit.forward import IdentityUOperator, Shape, as_shape
from invkit.params import Arg, float_tuple

__all__ = ["Colorization", "color_weights", "resolve_weights", "NAMED_WEIGHTS", "OPERATORS"]

#: The named ``weights``: channel weights ``(a, b, c)`` of ``gray = a R + b G + c B``.
NAMED_WEIGHTS: dict[str, tuple[float, float, float]] = {
    "average": (1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0),
    "rec601": (0.299, 0.587, 0.114),
}


def color_weights(value: str | Sequence[float]) -> str | tuple[float, float, float]:
    """Parameter type of ``weights``: a named set or three non-negative floats ``"a,b,c"``.

    Returns the lower-cased name for a named set (``average``, ``rec601``) and a tuple of
    three floats otherwise; accepts its own output, so converting twice is harmless.

    Raises:
        ValueError: Unknown name, not three numbers, a negative or non-finite weight, or all zero.
    """
    if isinstance(value, str):
        text = value.strip().lower()
        if text in NAMED_WEIGHTS:
            return text
        if "," not in text:
            raise ValueError(f"unknown weights {value!r}; use average, rec601 or three floats 'a,b,c'")
        try:
            nums = float_tuple(text)
        except ValueError:
            raise ValueError(f"weights {value!r} are not three numbers 'a,b,c'") from None
    else:
        nums = tuple(float(v) for v in value)
    if len(nums) != 3:
        raise ValueError(f"weights need 3 numbers (R, G, B), got {len(nums)}")
    if not all(math.isfinite(v) for v in nums):
        raise ValueError(f"weights {nums} must be finite")
    if any(v < 0 for v in nums):
        raise ValueError(f"weights {nums} must be non-negative")
    if not any(v > 0 for v in nums):
        raise ValueError("weights are all zero; at least one must be positive")
    return nums  # type: ignore[return-value]


def resolve_weights(spec: str | Sequence[float]) -> tuple[float, float, float]:
    """The numeric ``(w_r, w_g, w_b)`` of a ``weights`` value (name or three floats)."""
    spec = color_weights(spec)
    return NAMED_WEIGHTS[spec] if isinstance(spec, str) else spec  # type: ignore[return-value]


class Colorization(IdentityUOperator):
    """Colorization: RGB (C = 3) to one gray channel y = w . (R, G, B) per pixel; out (1, H, W).

    Per pixel ``H`` is the 1 x 3 row ``wᵀ``, so its SVD is: singular value ``|w|``, ``U = I``,
    and ``V`` per pixel the orthonormal 3 x 3 matrix whose first column is ``w / |w|`` and whose
    other two columns complete it (built once from an SVD of ``wᵀ``). Spectral order: first the
    ``H W`` observed coordinates (``w/|w| . x`` per pixel, row-major), then the ``2 H W``
    null-space ones (second basis vector for every pixel, then the third).

    ``weights``: ``average`` (1/3 each, as in the DDRM paper; default), ``rec601``
    (0.299, 0.587, 0.114: the luma of real grayscale photos), or three non-negative floats
    ``"a,b,c"`` used as given (not normalised).

    Memory: O(1) (a 3-vector and a 3 x 3 matrix). Cost per apply: O(n), one 3-term weighted
    sum (or 3 x 3 product for ``Vt``/``V``) per pixel, batched.

    Args:
        in_shape: Image shape ``(3, H, W)``.
        weights: Channel weights (see above).

    Raises:
        ValueError: ``C != 3``, or bad weights.
    """

    name = "colorization"
    check_shape = (3, 8, 12)
    check_cases = (
        ((3, 10, 14), {"weights": "rec601"}),
        ((3, 6, 16), {"weights": "0.2,0.7,0"}),
        ((3, 12, 5), {"weights": "1,2,3"}),
    )

    def __init__(
        self,
        in_shape: Sequence[int] | str,
        *,
        weights: Annotated[
            str | Sequence[float],
            Arg("gray = a R + b G + c B: average (1/3 each), rec601 (0.299,0.587,0.114) or 'a,b,c' (>= 0)", type=color_weights),
        ] = "average",
    ) -> None:
        super().__init__(in_shape)
        c, h, w = self.in_shape
        if c != 3:
            raise ValueError(f"{self.name}: needs RGB images with C=3, got C={c} (shape {self.in_shape}); use in_shape (3, {h}, {w})")
        wvec = torch.tensor(resolve_weights(weights), dtype=torch.float64)
        self.weights: Tensor = wvec
        self._norm = float(torch.linalg.vector_norm(wvec))
        # Rows of vh: an orthonormal basis of R^3 whose first row is +-w/|w|; fix the sign.
        _, _, vh = torch.linalg.svd(wvec.reshape(1, 3), full_matrices=True)
        if float(vh[0] @ wvec) < 0:
            vh = -vh
        self._basis = vh.contiguous()  # (3, 3): basis[j] . x_pixel = spectral coordinate j

    @classmethod
    def infer_in_shape(cls, out_shape: Sequence[int], params: dict[str, Any]) -> Shape:
        """``(1, H, W) -> (3, H, W)``: a grayscale measurement (e.g. a real gray photo) has RGB images behind it.

        Raises:
            ValueError: ``out_shape`` is not a one-channel image ``(1, H, W)``.
        """
        if len(out_shape) != 3 or int(out_shape[0]) != 1:
            raise ValueError(
                f"operator '{cls.name}': a measurement must be a one-channel gray image (1, H, W), got shape "
                f"{tuple(out_shape)}; convert the photo to grayscale first"
            )
        return as_shape((3, out_shape[1], out_shape[2]))

    @property
    def out_shape(self) -> tuple[int, int, int]:
        return (1, self.in_shape[1], self.in_shape[2])

    @property
    def singular_values(self) -> Tensor:
        return torch.full((self.in_shape[1] * self.in_shape[2],), self._norm, dtype=torch.float64)

    def forward(self, x: Tensor) -> Tensor:
        self.check_image(x)
        w = self.const("w", self.weights, x)
        return torch.einsum("c,bchw->bhw", w, x).unsqueeze(1)

    def adjoint(self, y: Tensor) -> Tensor:
        self.check_measurement(y)
        w = self.const("w", self.weights, y)
        return y * w.reshape(1, 3, 1, 1)

    def Vt(self, x: Tensor) -> Tensor:
        self.check_image(x)
        basis = self.const("basis", self._basis, x)
        return torch.einsum("jc,bchw->bjhw", basis, x).reshape(x.shape[0], -1)

    def V(self, z: Tensor) -> Tensor:
        self.check_spectral(z)
        basis = self.const("basis", self._basis, z)
        return torch.einsum("jc,bjhw->bchw", basis, z.reshape(z.shape[0], *self.in_shape))



OPERATORS = (Colorization,)
