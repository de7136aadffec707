"""The noise level ``sigma_y`` a run restores with (``--sigma-y``), in [0, 1] pixel units.

* **simulate**: the noise added, default 0 (``auto`` is refused: there is no measurement yet).
* **measurement**: a given number; else the value a ``.safetensors`` measurement recorded; else,
  for an image file (or with ``auto``), the noise estimated from the image
  (:func:`invkit.metrics.estimate_noise_sigma`), never below the file's quantisation noise
  (``1/(255·√12)`` for 8 bits) and so never an exact 0 that would magnify rounding; else 0.
"""

from __future__ import annotations

from typing import Any, Literal

from torch import Tensor

from ..noise import is_noise_sigma, quantization_sigma
from .errors import RestoreError

__all__ = ["check_sigma", "simulate_sigma", "measurement_sigma"]


def check_sigma(sigma: Any, auto: bool = True) -> None:
    """Refuse anything but a finite number >= 0 (the check of ``--sigma-y`` in ``solve`` and ``degrade``).

    Args:
        sigma: The value.
        auto: Whether ``auto`` is an alternative the message should name (``solve``: yes;
            ``degrade``: no). The value ``"auto"`` itself is refused here either way.

    Raises:
        RestoreError: Not a finite number >= 0.
    """
    if not is_noise_sigma(sigma):
        raise RestoreError(f"--sigma-y must be a finite number >= 0{' (or auto)' if auto else ''}, got {sigma}")


def simulate_sigma(asked: float | Literal["auto"] | None) -> float:
    """The noise a simulated measurement gets: ``asked``, default 0.

    Raises:
        RestoreError: ``auto``, or not a finite number >= 0.
    """
    sigma = 0.0 if asked is None else asked
    if sigma == "auto":
        raise RestoreError("--sigma-y auto estimates the noise of a measurement; with --simulate give the noise to add (e.g. --sigma-y 0.05)")
    check_sigma(sigma)
    return float(sigma)


def measurement_sigma(
    asked: float | Literal["auto"] | None, recorded: float | None, bits: int | None, y: Tensor
) -> tuple[float, str | None]:
    """The noise level to restore measurement ``y`` with, and a note saying how it was chosen.

    Args:
        asked: ``--sigma-y``: a number, ``"auto"`` or None.
        recorded: The value a ``.safetensors`` measurement recorded, or None.
        bits: The bit depth of an image file, None for a ``.safetensors`` measurement.
        y: The measurement, ``(1, C, H, W)`` for an image (anything else is compact).

    Returns:
        ``(sigma_y, note)``; the note (None when the value was given) is for the user.

    Raises:
        RestoreError: ``auto`` for a compact measurement, or a bad value.
    """
    image_like = y.dim() == 4
    note = None
    if asked == "auto" and not image_like:
        raise RestoreError("--sigma-y auto needs an image measurement; give a number")
    if asked is not None and asked != "auto":
        sigma = asked
    elif asked is None and recorded is not None:
        sigma = recorded
    elif image_like and (asked == "auto" or bits is not None):
        # A photo's noise is rarely just its rounding: too small a sigma_y makes DDRM amplify the
        # real noise (measured: a photo with noise 0.02 restored with 0.0011 is ruined), too large
        # one only smooths. So the default is the estimate, never below the quantisation noise.
        from ..metrics import estimate_noise_sigma

        floor = quantization_sigma(bits) if bits else 0.0
        est = estimate_noise_sigma(y)
        sigma = max(est, floor)
        note = (
            f"sigma_y = {sigma:.4g} (estimated {est:.2g} from the image, at least the {bits}-bit quantisation noise "
            f"{floor:.2g}); pass --sigma-y to set it"
            if bits
            else f"sigma_y estimated from the image: {sigma:.4g}"
        )
    elif bits is not None:
        sigma = quantization_sigma(bits)
    else:
        sigma = 0.0
    check_sigma(sigma)
    return float(sigma), note
