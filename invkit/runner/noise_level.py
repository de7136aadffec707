"""The noise model a run restores with (``--noise``, ``--noise-arg``) and, for Gaussian noise, its
level ``sigma_y`` (``--sigma-y``), in [0, 1] pixel units.

The model: ``--noise NAME`` (:data:`invkit.noise.NOISE_MODELS`: ``gaussian``, ``poisson``) with
``--noise-arg K=V``; else the one a ``.safetensors`` measurement recorded; else Gaussian. A
measurement's recorded model may not be contradicted (another name or parameter value). Poisson
noise has no ``sigma_y`` (``--sigma-y`` is refused with it, ``auto`` included); Gaussian noise
takes its level from ``--sigma-y`` only (``--noise-arg`` is refused with it). The level:

* **simulate**: the noise added, default 0 (``auto`` is refused: there is no measurement yet).
* **measurement**: a given number; else the value a ``.safetensors`` measurement recorded; else,
  for an image file (or with ``auto``), the noise estimated from the image
  (:func:`invkit.metrics.estimate_noise_sigma`), never below the file's quantisation noise
  (``1/(255·√12)`` for 8 bits) and so never an exact 0 that would magnify rounding; else 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from torch import Tensor

from ..noise import MAX_SIGMA_Y, NEGATIVE_TOLERANCE, NOISE_MODELS, GaussianNoise, NoiseModel, build_noise, is_noise_sigma, noise_spec, quantization_sigma
from ..params import parse_kv
from .errors import RestoreError

if TYPE_CHECKING:
    from ..io import Measurement

__all__ = ["check_sigma", "simulate_sigma", "measurement_sigma", "asked_noise", "simulate_noise", "measurement_noise"]


def check_sigma(sigma: Any, auto: bool = True) -> None:
    """Refuse anything but a finite number >= 0 (the check of ``--sigma-y`` in ``solve`` and ``degrade``).

    Args:
        sigma: The value.
        auto: Whether ``auto`` is an alternative the message should name (``solve``: yes;
            ``degrade``: no). The value ``"auto"`` itself is refused here either way.

    Raises:
        RestoreError: Not a finite number >= 0, or above ``MAX_SIGMA_Y`` (a std larger than
            the whole [0, 1] range is a unit mistake: 8-bit units are 255 times larger).
    """
    if not is_noise_sigma(sigma):
        raise RestoreError(f"--sigma-y must be a finite number >= 0{' (or auto)' if auto else ''}, got {sigma}")
    if sigma > MAX_SIGMA_Y:
        hint = f"; in 8-bit units {sigma:g} is --sigma-y {sigma / 255:.4g}" if sigma <= 255 else ""
        raise RestoreError(f"--sigma-y {sigma:g} is in [0, 1] pixel units, where a std above {MAX_SIGMA_Y:g} swamps any image{hint}")


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
    asked: float | Literal["auto"] | None, recorded: float | None, bits: int | None, y: Tensor, keep: Tensor | None = None
) -> tuple[float, str | None]:
    """The noise level to restore measurement ``y`` with, and a note saying how it was chosen.

    Args:
        asked: ``--sigma-y``: a number, ``"auto"`` or None.
        recorded: The value a ``.safetensors`` measurement recorded, or None.
        bits: The bit depth of an image file, None for a ``.safetensors`` measurement.
        y: The measurement, ``(1, C, H, W)`` for an image (anything else is compact).
        keep: For a photo with holes read as a mask measurement, its measured pixels: the
            estimate uses only those (the holes would bias it).

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
        est = estimate_noise_sigma(y, keep)
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


def _no_sigma(model: NoiseModel, recorded_in: Path | None = None) -> RestoreError:
    kind = type(model).name
    example = " ".join(f"--noise-arg {p.name}={p.default:g}" for p in type(model).params)
    whose = f"measurement {recorded_in} records {kind} noise, which" if recorded_in is not None else f"{kind} noise"
    return RestoreError(f"--sigma-y is the std of Gaussian noise, but {whose} has none (it is set with --noise-arg, e.g. {example}); drop --sigma-y")


def _gaussian_args(args: Sequence[str]) -> RestoreError:
    return RestoreError(f"Gaussian noise takes its level from --sigma-y (e.g. --sigma-y 0.05), not --noise-arg; drop --noise-arg {' '.join(args)}")


def asked_noise(name: str | None, args: Sequence[str], sigma_y: Any) -> NoiseModel | None:
    """The noise model ``--noise``/``--noise-arg`` ask for, checked before any file is read.

    Args:
        name: ``--noise`` (None: not given; a measurement's record or Gaussian decides).
        args: ``--noise-arg`` values, ``"K=V"``.
        sigma_y: ``--sigma-y`` as given (None, a number or ``"auto"``); only whether it is given matters here.

    Returns:
        The model (a Gaussian one stands for the kind: its level comes from the ``sigma_y``
        policy), or None when ``name`` is None.

    Raises:
        RestoreError: An unknown name, a bad ``--noise-arg``, ``--noise-arg`` with Gaussian noise, or
            ``--sigma-y`` with a model that has no standard deviation (Poisson).
    """
    if name is None:
        return None
    if name not in NOISE_MODELS:
        raise RestoreError(f"--noise {name!r} is not a noise model; use one of: {', '.join(NOISE_MODELS)}")
    if NOISE_MODELS[name] is GaussianNoise:
        if args:
            raise _gaussian_args(args)
        return GaussianNoise()
    try:
        model = build_noise(name, args)
    except ValueError as exc:
        raise RestoreError(f"--noise-arg: {exc}") from None
    if sigma_y is not None:
        raise _no_sigma(model)
    return model


def simulate_noise(name: str | None, args: Sequence[str], sigma_y: float | Literal["auto"] | None) -> NoiseModel:
    """The noise a simulated measurement gets: ``--noise`` (default Gaussian) with ``--noise-arg``, or Gaussian of std ``--sigma-y`` (default 0).

    Raises:
        RestoreError: As :func:`asked_noise` and :func:`simulate_sigma`; ``--noise-arg`` without ``--noise``.
    """
    if name is None and args:
        raise RestoreError(f"--noise-arg needs --noise NAME ({', '.join(NOISE_MODELS)}); add --noise or drop --noise-arg")
    model = asked_noise(name, args, sigma_y)
    if model is None or isinstance(model, GaussianNoise):
        return GaussianNoise(simulate_sigma(sigma_y))
    return model


def measurement_noise(
    name: str | None, args: Sequence[str], sigma_y: float | Literal["auto"] | None, meas: "Measurement", y: Tensor, src: Path,
    keep: Tensor | None = None,
) -> tuple[NoiseModel, str | None]:
    """The noise model to restore measurement ``y`` with, and a note saying how its level was chosen.

    Args:
        name: ``--noise`` (None: the recorded model, else Gaussian).
        args: ``--noise-arg`` values.
        sigma_y: ``--sigma-y``.
        meas: The measurement as read (its recorded ``noise``, ``sigma_y`` and ``bits``).
        y: The measurement as restored (after any size fix).
        src: Its file, for messages.
        keep: The measured pixels of a photo with holes (:func:`measurement_sigma`).

    Returns:
        ``(model, note)``; the note (None unless a Gaussian level was estimated) is for the user.

    Raises:
        RestoreError: A choice that contradicts the recorded model, a bad value, or a measurement
            with negative values under a model that counts photons.
    """
    recorded = meas.noise
    rec_name = type(recorded).name if recorded is not None else None
    if name is None and rec_name is None and args:
        raise RestoreError(f"--noise-arg needs --noise NAME ({', '.join(NOISE_MODELS)}); {src.name} records no noise model")
    if name is not None and rec_name and name != rec_name:
        raise RestoreError(f"measurement {src} records {rec_name} noise; --noise {name} contradicts it (drop --noise)")
    asked = asked_noise(name, args, sigma_y)
    kind = name or rec_name or GaussianNoise.name
    if kind == GaussianNoise.name:
        if args:
            raise _gaussian_args(args)
        sigma, note = measurement_sigma(sigma_y, meas.sigma_y, meas.bits, y, keep)
        return GaussianNoise(sigma), note
    if recorded is not None:
        if sigma_y is not None:
            raise _no_sigma(recorded, src)
        model = _agreeing(recorded, args, src)
    else:
        model = asked if asked is not None else build_noise(kind)
    if model.needs_nonnegative:
        low = float(y.min()) if y.numel() else 0.0
        if low < -NEGATIVE_TOLERANCE:
            raise RestoreError(
                f"measurement {src} has negative values (minimum {low:.3g}), but {kind} noise counts photons (y >= 0); "
                "it is not such a measurement: use --noise gaussian"
            )
    return model, None


def _agreeing(recorded: NoiseModel, args: Sequence[str], src: Path) -> NoiseModel:
    """The recorded model, after checking that every ``--noise-arg`` agrees with it."""
    if not args:
        return recorded
    kind = type(recorded).name
    try:
        explicit = build_noise(kind, args)
    except ValueError as exc:
        raise RestoreError(f"--noise-arg: {exc}") from None
    have, want = noise_spec(recorded), noise_spec(explicit)
    for key, text in parse_kv(args).items():
        if want[key] != have[key]:
            raise RestoreError(f"measurement {src} was made with {kind} noise {key}={have[key]:g}; --noise-arg {key}={text} contradicts it (drop that --noise-arg)")
    return recorded
