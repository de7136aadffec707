"""Measurement noise models: draw a noisy measurement, score one.

A :class:`NoiseModel` says how a measurement ``y`` arises from the clean measurement
``z = A(x)``: :meth:`~NoiseModel.sample` draws ``y`` given ``z``, :meth:`~NoiseModel.nll` is the
negative log-likelihood ``−log p(y | z)`` per batch row, :meth:`~NoiseModel.nll_grad` its
gradient with respect to ``z``, and :attr:`~NoiseModel.sigma` the standard deviation where one
exists (``None`` otherwise). Solvers that assume Gaussian noise require
:class:`GaussianNoise` (see :mod:`invkit.requirements`).

Models by name: :data:`NOISE_MODELS` (``gaussian``, ``poisson``; what ``--noise`` and the
measurement file name), built from ``k=v`` parameters by :func:`build_noise` and described back by
:func:`noise_spec`. A model that needs a non-negative clean measurement (Poisson: photon counts)
says so (:attr:`NoiseModel.needs_nonnegative`); :func:`check_operator_nonnegative` refuses an
operator that can make negative measurements before any work, and :func:`nonnegative_clean`
refuses (or cleans float rounding off) the clean measurement of an actual image.

``sigma`` is always in [0, 1] pixel units (DESIGN.md): a measurement of an image in [0, 1] has
noise of standard deviation ``sigma``. Code that works in [-1, 1] converts in one place.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from .params import Param, ParamError, parse_params

__all__ = [
    "NoiseModel",
    "GaussianNoise",
    "PoissonNoise",
    "NOISE_MODELS",
    "NEGATIVE_TOLERANCE",
    "build_noise",
    "noise_spec",
    "describe_noise",
    "check_operator_nonnegative",
    "nonnegative_clean",
    "QUANTIZATION_SIGMA_8BIT",
    "quantization_sigma",
    "is_noise_sigma",
]


#: The largest Gaussian noise std a run accepts (``--sigma-y``, a measurement file's record), in
#: [0, 1] units: the std of a uniform [0, 1] image is 0.29, so noise of std 1 leaves nothing of
#: the image; a larger value is taken for a unit mistake.
MAX_SIGMA_Y = 1.0


def is_noise_sigma(value: object) -> bool:
    """Whether ``value`` is a valid noise standard deviation: a finite real number >= 0 (not a bool).

    The one rule for σ_y, used by :class:`GaussianNoise` and the runner's ``--sigma-y`` check.

    Example:
        >>> is_noise_sigma(0.05), is_noise_sigma(0), is_noise_sigma(-1.0), is_noise_sigma(True), is_noise_sigma(float("nan"))
        (True, True, False, False, False)
    """
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def quantization_sigma(bits: int) -> float:
    """Std of uniform rounding noise of a ``bits``-bit image in [0, 1] units: ``1 / ((2^b - 1) sqrt(12))``."""
    return 1.0 / ((2**bits - 1) * math.sqrt(12.0))


QUANTIZATION_SIGMA_8BIT = quantization_sigma(8)


class NoiseModel(ABC):
    """How a measurement ``y`` arises from a clean measurement ``z = A(x)``.

    Subclasses implement :meth:`sample`, :meth:`nll` and :meth:`nll_grad`; ``sigma`` is the
    noise standard deviation in [0, 1] pixel units when the model has one, else ``None``.

    Attributes:
        name: The model's name in :data:`NOISE_MODELS` (``""`` for one that is not listed there;
            such a model works in Python but cannot be stored in a measurement file).
        params: Its parameters (the dataclass fields of the same names), read from ``k=v`` text
            by :func:`build_noise`.
        needs_nonnegative: Whether it needs a clean measurement ``A(x) >= 0`` (photon counts).
    """

    name: ClassVar[str] = ""
    params: ClassVar[tuple[Param, ...]] = ()
    needs_nonnegative: ClassVar[bool] = False

    @property
    def sigma(self) -> float | None:  # pragma: no cover - overridden by the dataclass field where it exists
        """Noise standard deviation in [0, 1] pixel units, or ``None`` where the model has none."""
        return None

    @abstractmethod
    def sample(self, clean: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """A noisy measurement ``y`` given the clean one (same shape), drawn from ``generator``."""

    @abstractmethod
    def nll(self, y: Tensor, clean: Tensor) -> Tensor:
        """``−log p(y | clean)`` per batch row, shape ``(B,)`` (constants included)."""

    @abstractmethod
    def nll_grad(self, y: Tensor, clean: Tensor) -> Tensor:
        """``∇_clean (−log p(y | clean))``, the shape of ``clean``."""


@dataclass(frozen=True)
class GaussianNoise(NoiseModel):
    """Additive white Gaussian noise ``y = A(x) + sigma * n``, ``n ~ N(0, I)``.

    ``−log p(y | z) = ‖y − z‖² / (2σ²) + (m/2) log(2πσ²)`` per row (``m`` entries), with gradient
    ``(z − y) / σ²``. For ``σ = 0`` (noiseless) the likelihood is a point mass: :meth:`nll` is 0
    where ``y = z`` exactly and ``+inf`` elsewhere, and :meth:`nll_grad` raises.

    Args:
        sigma: Standard deviation in [0, 1] pixel units (0 for noiseless).
    """

    name = "gaussian"
    params = (Param("sigma", float, 0.0, "noise std in [0, 1] pixel units", min=0.0),)

    sigma: float = 0.0  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if not is_noise_sigma(self.sigma):
            raise ValueError(f"noise sigma must be a finite number >= 0 (in [0, 1] pixel units), got {self.sigma!r}")

    def sample(self, clean: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Return ``clean + sigma * n`` with ``n`` drawn from ``generator``."""
        if self.sigma == 0:
            return clean.clone()
        n = torch.randn(clean.shape, generator=generator, dtype=clean.dtype, device=clean.device)
        return clean + self.sigma * n

    def nll(self, y: Tensor, clean: Tensor) -> Tensor:
        """``‖y − z‖² / (2σ²) + (m/2) log(2πσ²)`` per row (see the class docstring for σ = 0)."""
        r2 = (y - clean).reshape(y.shape[0], -1).square().sum(1)
        if self.sigma == 0:
            return torch.where(r2 == 0, torch.zeros_like(r2), torch.full_like(r2, math.inf))
        m = y[0].numel()
        s2 = self.sigma**2
        return r2 / (2 * s2) + 0.5 * m * math.log(2 * math.pi * s2)

    def nll_grad(self, y: Tensor, clean: Tensor) -> Tensor:
        """``(z − y) / σ²``.

        Raises:
            ValueError: ``σ = 0``: a noiseless likelihood has no gradient.
        """
        if self.sigma == 0:
            raise ValueError("noiseless Gaussian noise (sigma = 0) has no likelihood gradient; give the noise a sigma > 0")
        return (clean - y) / self.sigma**2


@dataclass(frozen=True)
class PoissonNoise(NoiseModel):
    """Shot noise: ``y = clip(Poisson(rate · z) / rate, 0, 1)`` for a clean measurement ``z >= 0``.

    ``rate`` is in photons per unit intensity: a pixel of intensity ``z`` (in [0, 1] units)
    collects ``Poisson(rate · z)`` photons, so white (``z = 1``) gets ``rate`` on average and the
    noise std is ``√(z / rate)``. DPS's experiments (Chung et al. 2023, Sec. 4) use ``rate = 255``:
    255 photons at white. The clip to [0, 1] is the official DPS code's; it changes ``y`` only
    where ``z`` is near 1.

    Likelihood of the counts ``k = rate · y`` (the clip ignored): ``−log p(y | z) = Σ_j rate z_j −
    k_j log(rate z_j) + log k_j!``, ``+inf`` where ``z_j = 0 < k_j``; gradient ``rate (1 − y_j / z_j)``
    (:meth:`nll_grad` refuses ``z_j <= 0``, where it is undefined or infinite). :meth:`shot_weights` is the
    weighted least-squares approximation DPS uses instead (eq. 20).

    Args:
        rate: Photons per unit intensity, finite and > 0.

    Example:
        >>> import torch
        >>> noise = PoissonNoise(rate=255.0)
        >>> y = noise.sample(torch.full((1, 4), 0.5), torch.Generator().manual_seed(0))
        >>> counts = y * 255  # whole photons
        >>> bool((counts - counts.round()).abs().max() < 1e-4), noise.sigma is None
        (True, True)
    """

    name = "poisson"
    params = (
        Param("rate", float, 255.0, "photons per unit intensity (the DPS paper's 255: 255 photons at white)", min=0.0, min_inclusive=False),
    )
    needs_nonnegative = True

    rate: float = 255.0

    def __post_init__(self) -> None:
        rate = self.rate
        if not (isinstance(rate, (int, float)) and not isinstance(rate, bool) and math.isfinite(rate) and rate > 0):
            raise ValueError(f"Poisson noise rate must be a finite number > 0 (photons per unit intensity, e.g. 255), got {rate!r}")

    @property
    def sigma(self) -> None:
        """Poisson noise has no single standard deviation (it is ``√(z / rate)`` per entry)."""
        return None

    def _check_clean(self, clean: Tensor) -> None:
        if bool((clean < 0).any()):
            raise ValueError(
                f"Poisson noise needs a non-negative clean measurement A(x) (photon counts); its minimum is {float(clean.min()):.3g}"
            )

    def sample(self, clean: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``clip(Poisson(rate · clean) / rate, 0, 1)``, the photons drawn from ``generator``.

        Raises:
            ValueError: A negative entry of ``clean``.
        """
        self._check_clean(clean)
        lam = (self.rate * clean).to(torch.float64)
        counts = torch.poisson(lam, generator=generator)
        return (counts / self.rate).clamp(0.0, 1.0).to(clean.dtype)

    def nll(self, y: Tensor, clean: Tensor) -> Tensor:
        """``Σ_j rate z_j − k_j log(rate z_j) + log k_j!`` per row with ``k = rate · y`` (``+inf`` where ``z_j = 0 < k_j``)."""
        self._check_clean(clean)
        k = (self.rate * y).to(torch.float64)
        lam = (self.rate * clean).to(torch.float64)
        log_term = torch.where(k > 0, k * torch.log(torch.where(lam > 0, lam, torch.ones_like(lam))), torch.zeros_like(k))
        impossible = (lam == 0) & (k > 0)
        per = lam - log_term + torch.lgamma(k + 1.0)
        per = torch.where(impossible, torch.full_like(per, math.inf), per)
        return per.reshape(y.shape[0], -1).sum(1).to(y.dtype)

    def nll_grad(self, y: Tensor, clean: Tensor) -> Tensor:
        """``rate (1 − y_j / z_j)``.

        Raises:
            ValueError: An entry with ``z_j <= 0`` (the gradient is undefined or infinite there).
        """
        if bool((clean <= 0).any()):
            raise ValueError("the Poisson likelihood has no gradient where the clean measurement is <= 0")
        return self.rate * (1.0 - y / clean)

    def shot_weights(self, y: Tensor) -> Tensor:
        """DPS's weights (eq. 20): ``Λ_jj = 1 / (2 max(y_j, 1/rate))``.

        The shot-noise approximation ``Poisson(rate z) / rate ≈ N(z, y / rate)`` turns the
        likelihood into the weighted least squares ``‖y − z‖²_Λ`` (up to the factor ``rate`` that
        DPS's step size absorbs). Eq. 20's ``1/(2 y_j)`` is infinite at zero counts; the floor
        ``1/rate`` (one photon) bounds it by ``rate / 2``.
        """
        return 1.0 / (2.0 * torch.clamp(y, min=1.0 / self.rate))


#: The noise models by name: what ``--noise NAME`` and a measurement file's ``noise`` name.
NOISE_MODELS: dict[str, type[NoiseModel]] = {cls.name: cls for cls in (GaussianNoise, PoissonNoise)}

#: A clean measurement down to this far below 0 counts as 0: float rounding (an FFT blur of a
#: black region gives -1e-17), not a negative measurement. Far below one photon at any rate.
NEGATIVE_TOLERANCE = 1e-6


def build_noise(name: str, args: Mapping[str, Any] | Iterable[str] | None = None) -> NoiseModel:
    """The noise model ``name`` of :data:`NOISE_MODELS` with parameters ``args``.

    Args:
        name: ``"gaussian"`` or ``"poisson"``.
        args: ``"k=v"`` strings (``--noise-arg``) or a mapping (a measurement file's record),
            checked against the model's :attr:`~NoiseModel.params`; unset ones take their defaults.

    Raises:
        ParamError: An unknown model or parameter, or a value that does not parse or is out of range.
        ValueError: A value the model refuses (e.g. an infinite rate).

    Example:
        >>> build_noise("poisson", ["rate=100"])
        PoissonNoise(rate=100.0)
        >>> build_noise("gaussian", {"sigma": 0.05})
        GaussianNoise(sigma=0.05)
        >>> build_noise("laplace")
        Traceback (most recent call last):
            ...
        invkit.params.ParamError: unknown noise model 'laplace'; known: gaussian, poisson
    """
    cls = NOISE_MODELS.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ParamError(f"unknown noise model {name!r}; known: {', '.join(NOISE_MODELS)}")
    values = parse_params(cls.params, args, owner=f"noise '{name}'")
    return cls(**values)


def noise_spec(noise: NoiseModel) -> dict[str, Any]:
    """``{"name": ..., <parameter>: <value>, ...}``: what a measurement file and a run's record store; :func:`build_noise` reads it back.

    Raises:
        ValueError: A model that is not one of :data:`NOISE_MODELS`.

    Example:
        >>> noise_spec(PoissonNoise(255))
        {'name': 'poisson', 'rate': 255.0}
    """
    cls = NOISE_MODELS.get(type(noise).name)
    if cls is None or type(noise) is not cls:
        raise ValueError(f"cannot describe noise model {type(noise).__name__} by name; known models: {', '.join(NOISE_MODELS)}")
    return {"name": cls.name, **{p.name: float(getattr(noise, p.name)) for p in cls.params}}


def describe_noise(noise: NoiseModel) -> str:
    """A few words for a summary line: ``sigma_y=0.02`` (Gaussian), ``Poisson noise rate=255`` (Poisson).

    Example:
        >>> describe_noise(GaussianNoise(0.02)), describe_noise(PoissonNoise(255))
        ('sigma_y=0.02', 'Poisson noise rate=255')
    """
    if isinstance(noise, PoissonNoise):
        return f"Poisson noise rate={noise.rate:g}"
    sigma = noise.sigma
    return f"sigma_y={sigma:.4g}" if sigma is not None else f"{type(noise).__name__} noise"


def _negative_refusal(operator: str, why: str) -> ValueError:
    return ValueError(
        f"Poisson noise needs a non-negative clean measurement A(x) (photon counts), but operator '{operator}' {why}; "
        "use Gaussian noise (--noise gaussian) or an operator whose measurements are non-negative "
        "(blur, super-resolution, inpainting, colorization, denoising)"
    )


def _probes(shape: tuple[int, ...]) -> Tensor:
    """Three test images in [0, 1] of ``shape``, float64, none drawn at random: all ones; the
    additive-recurrence pattern ``frac(j φ)`` (φ the golden ratio), which no operator's rows line
    up with; and one bright pixel in the middle of every channel, whose measurement is a column of
    ``A`` (a blur's or a resampler's kernel, negative lobes included)."""
    n = math.prod(shape)
    golden = (torch.arange(n, dtype=torch.float64) * ((math.sqrt(5.0) - 1.0) / 2.0)).remainder(1.0).reshape(shape)
    impulse = torch.zeros(shape, dtype=torch.float64)
    impulse[(..., *(d // 2 for d in shape[1:]))] = 1.0
    return torch.stack([torch.ones(shape, dtype=torch.float64), golden, impulse])


def check_operator_nonnegative(operator: Any, noise: NoiseModel, name: str | None = None) -> None:
    """Refuse, before any work, an operator that can make a negative clean measurement for a noise
    model that needs a non-negative one (:attr:`NoiseModel.needs_nonnegative`; Poisson).

    An operator can say so itself with a class attribute ``nonnegative`` (``True``: ``A(x) >= 0``
    for every image ``x >= 0``, e.g. a blur with a non-negative kernel; ``False``: it can go
    negative, e.g. compressed sensing); it is read with ``getattr`` and trusted. An operator that
    says nothing (``None``) and is built (not a class) is applied to three test images in [0, 1]
    (all ones, a deterministic pattern, one bright pixel): a value below ``-NEGATIVE_TOLERANCE``
    proves that it can go negative. No value below proves nothing, so the clean measurement of the actual image
    is checked again when it is made (:func:`nonnegative_clean`). Poisson noise clips to [0, 1], so
    an operator that declares ``image_like = False`` (its measurement is not pixels in [0, 1]:
    phase retrieval's Fourier magnitudes, whose zero frequency is the image's sum) is refused too.

    Args:
        operator: An operator (built for its image shape) or an operator class (then only its
            declaration is read).
        noise: The noise model.
        name: The operator's registered name, for the message (default: its ``name`` attribute).

    Raises:
        ValueError: One line: the operator, why it can go negative, and the fix.

    Example:
        >>> class Shift:  # y = x - 0.5: negative for dark pixels
        ...     name, in_shape = "shift", (1, 2, 2)
        ...     def forward(self, x):
        ...         return x - 0.5
        >>> check_operator_nonnegative(Shift(), GaussianNoise(0.1))  # Gaussian noise: anything goes
        >>> check_operator_nonnegative(Shift(), PoissonNoise(255.0))
        Traceback (most recent call last):
            ...
        ValueError: Poisson noise needs a non-negative clean measurement A(x) (photon counts), but operator 'shift' can make negative ones (on a test image in [0, 1] its minimum is -0.5); use Gaussian noise (--noise gaussian) or an operator whose measurements are non-negative (blur, super-resolution, inpainting, colorization, denoising)
    """
    if not noise.needs_nonnegative:
        return
    label = name or getattr(operator, "name", "") or type(operator).__name__
    if isinstance(noise, PoissonNoise) and getattr(operator, "image_like", True) is False:
        raise ValueError(
            f"Poisson noise counts photons of a measurement in [0, 1] and clips it to [0, 1] (the DPS convention), "
            f"but operator '{label}' measures values beyond 1 (image_like = False, e.g. Fourier magnitudes); "
            "use Gaussian noise (--noise gaussian --sigma-y S)"
        )
    declared = getattr(operator, "nonnegative", None)
    if declared is False:
        raise _negative_refusal(label, "can make negative ones (it declares nonnegative = False)")
    if declared is True or isinstance(operator, type):
        return
    with torch.no_grad():
        low = float(operator.forward(_probes(tuple(operator.in_shape))).min())
    if low < -NEGATIVE_TOLERANCE:
        raise _negative_refusal(label, f"can make negative ones (on a test image in [0, 1] its minimum is {low:.3g})")


def nonnegative_clean(clean: Tensor, noise: NoiseModel, name: str) -> Tensor:
    """The clean measurement ``A(x)`` of an actual image, ready for ``noise.sample``: for a model that
    needs ``A(x) >= 0``, values down to ``-NEGATIVE_TOLERANCE`` (float rounding) set to 0, anything
    lower refused; for any other model ``clean`` itself.

    Args:
        clean: ``A(x)``.
        noise: The noise model.
        name: The operator's name, for the message.

    Raises:
        ValueError: One line: the operator, the minimum, and the fix.

    Example:
        >>> nonnegative_clean(torch.tensor([-1e-12, 0.5], dtype=torch.float64), PoissonNoise(255.0), "blur").tolist()
        [0.0, 0.5]
    """
    if not noise.needs_nonnegative:
        return clean
    low = float(clean.min()) if clean.numel() else 0.0
    if low < -NEGATIVE_TOLERANCE:
        raise _negative_refusal(name, f"makes negative ones of this image (minimum {low:.3g})")
    return clean.clamp_min(0.0)
