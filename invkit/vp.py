"""invkit's σ (variance exploding, [0, 1] units) and the VP symbols of the papers, in one place.

invkit's view (:mod:`invkit.prior`): a noisy image at level σ is ``x = x0 + σ n`` with ``x0`` in
[0, 1] and ``n ~ N(0, I)``. Papers (DDPM, DDIM, DDRM, DDNM, ΠGDM, DiffPIR, DPS) write the
variance-preserving state of a model trained on ``x0'`` in ``[-d/2, d/2]`` (``d`` =
``data_scale``; ``d = 2`` is the usual [-1, 1]):

    x0' = d (x0 - 1/2),        x_t = √ᾱ_t x0' + √(1 - ᾱ_t) ε,       ᾱ_t = ∏_{s<=t} (1 - β_s).

The data centre is fixed at 1/2 in our units (the model's 0 is mid-grey). Dividing ``x_t`` by
``d √ᾱ_t`` and adding 1/2 gives

    x = x_t / (d √ᾱ_t) + 1/2 = x0 + σ_t ε,     σ_t = √(1 - ᾱ_t) / (d √ᾱ_t),
    ᾱ_t = 1 / (1 + (d σ_t)²),

so the two views are the same random variable up to the fixed affine map
``x_t = d √ᾱ_t (x - 1/2)`` and share the same noise ``ε``. In particular the model's noise
prediction is ``ε̂ = (x - x̂0) / σ`` in our units, whatever ``d``, and the DDIM step written in σ
does not depend on ``d`` either (:func:`ddim_step`).

Every function accepts Python floats and tensors for the noise levels. A level that is a tensor
of shape ``(B,)`` (one per batch row, as :meth:`invkit.Prior.denoise` allows) is broadcast
against images ``(B, ...)``. Tensor levels keep their dtype (integers become float64); float
levels are computed in Python float64 (``math``), which can differ from torch's vectorised float64
kernels in the last bit.

Example:
    >>> import torch
    >>> from invkit.vp import alpha_bar_from_sigma, from_vp, sigma_from_alpha_bar, to_vp
    >>> sigma = sigma_from_alpha_bar(0.2)          # √(0.8/0.2)/2
    >>> sigma
    1.0
    >>> alpha_bar_from_sigma(sigma)               # 1/(1 + 2²)
    0.2
    >>> x = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    >>> x_t = to_vp(x, sigma)                     # √0.2 · (2x - 1)
    >>> torch.allclose(x_t, 0.2**0.5 * (2 * x - 1)), torch.allclose(from_vp(x_t, 0.2), x)
    (True, True)
"""

from __future__ import annotations

import math
from typing import TypeVar, Union

import torch
from torch import Tensor

__all__ = [
    "sigma_from_alpha_bar",
    "alpha_bar_from_sigma",
    "to_vp",
    "from_vp",
    "eps_from_x0",
    "x0_from_eps",
    "ddim_noise_scale",
    "ddim_step",
    "vp_start_std",
]

Level = Union[float, Tensor]
L = TypeVar("L", float, Tensor)


def _float(v: Level) -> Level:
    """Python float, or a floating tensor (integer tensors become float64)."""
    if isinstance(v, Tensor):
        return v if v.is_floating_point() else v.to(torch.float64)
    return float(v)


def _sqrt(v: Level) -> Level:
    return torch.sqrt(v) if isinstance(v, Tensor) else math.sqrt(v)


def _rows(v: Level, x: Tensor) -> Level:
    """A ``(B,)`` level tensor viewed as ``(B, 1, ..., 1)`` to broadcast against ``x``; others as is."""
    if isinstance(v, Tensor) and v.ndim == 1 and x.ndim > 1:
        return v.reshape(-1, *([1] * (x.ndim - 1)))
    return v


def sigma_from_alpha_bar(alpha_bar: L, data_scale: float = 2.0) -> L:
    """invkit's σ of a VP level: ``σ = √((1 - ᾱ) / ᾱ) / d``.

    Same expression as :func:`invkit.prior.vp_sigma_grid` (bit-identical to it for a tensor;
    a Python float goes through ``math.sqrt`` and may differ by one ulp). For ``d = 2``:
    ``σ = √(1 - ᾱ) / (2 √ᾱ)``.

    Args:
        alpha_bar: ``ᾱ`` in (0, 1] (float or tensor); ``ᾱ = 1`` gives σ = 0.
        data_scale: ``d``, the width of the model's data range (2 for [-1, 1]).

    Returns:
        σ in [0, 1] units, a float for a float, a tensor for a tensor.

    Example:
        >>> sigma_from_alpha_bar(0.2), sigma_from_alpha_bar(1.0)
        (1.0, 0.0)
    """
    ab = _float(alpha_bar)
    return _sqrt((1.0 - ab) / ab) / data_scale


def alpha_bar_from_sigma(sigma: L, data_scale: float = 2.0) -> L:
    """The VP level of invkit's σ: ``ᾱ = 1 / (1 + (d σ)²)`` (inverse of :func:`sigma_from_alpha_bar`).

    Args:
        sigma: σ >= 0 in [0, 1] units (float or tensor); σ = 0 gives ᾱ = 1.
        data_scale: ``d``, the width of the model's data range (2 for [-1, 1]).

    Returns:
        ``ᾱ`` in (0, 1], a float for a float, a tensor for a tensor.

    Example:
        >>> alpha_bar_from_sigma(1.0), alpha_bar_from_sigma(0.0)
        (0.2, 1.0)
    """
    s = _float(sigma)
    return 1.0 / (1.0 + (data_scale * s) ** 2)


def to_vp(x: Tensor, sigma: Level, data_scale: float = 2.0) -> Tensor:
    """The VP state of a noisy image: ``x_t = √ᾱ · d (x - 1/2)`` with ``ᾱ = 1 / (1 + (d σ)²)``.

    If ``x = x0 + σ ε`` then ``x_t = √ᾱ x0' + √(1 - ᾱ) ε`` with ``x0' = d (x0 - 1/2)`` in
    ``[-d/2, d/2]``, because ``d √ᾱ σ = √(1 - ᾱ)``.

    Args:
        x: Noisy images in [0, 1] units.
        sigma: Their level σ: a float, a 0-d tensor, or ``(B,)`` for images ``(B, ...)``.
        data_scale: ``d`` (2 for a model trained on [-1, 1]: ``x_t = √ᾱ (2x - 1)``).

    Returns:
        ``x_t``, the same shape as ``x``.
    """
    ab = _rows(alpha_bar_from_sigma(sigma, data_scale), x)
    return _sqrt(ab) * (data_scale * (x - 0.5))


def from_vp(x_t: Tensor, alpha_bar: Level, data_scale: float = 2.0) -> Tensor:
    """Inverse of :func:`to_vp`: ``x = x_t / (d √ᾱ) + 1/2`` (``(x_t/√ᾱ + 1)/2`` for d = 2).

    The result is ``x0 + σ ε`` at ``σ = sigma_from_alpha_bar(ᾱ, d)``; a model output ``x̂0'`` in
    ``[-d/2, d/2]`` maps to [0, 1] units with ``ᾱ = 1``.

    Args:
        x_t: VP states (or, with ``alpha_bar = 1``, clean data in the model's range).
        alpha_bar: ``ᾱ`` in (0, 1]: a float, a 0-d tensor, or ``(B,)`` for states ``(B, ...)``.
        data_scale: ``d`` (2 for [-1, 1]).

    Returns:
        ``x`` in [0, 1] units, the same shape as ``x_t``.
    """
    ab = _rows(_float(alpha_bar), x_t)
    return x_t / (data_scale * _sqrt(ab)) + 0.5


def eps_from_x0(x: Tensor, x0_hat: Tensor, sigma: Level) -> Tensor:
    """The noise estimate ``ε̂ = (x - x̂0) / σ``; it equals the VP model's ε̂ for any ``d``.

    Proof: with ``x_t = d √ᾱ (x - 1/2)`` and ``x̂0' = d (x̂0 - 1/2)``, the VP relation
    ``ε̂ = (x_t - √ᾱ x̂0') / √(1 - ᾱ)`` gives ``ε̂ = d √ᾱ (x - x̂0) / √(1 - ᾱ) = (x - x̂0) / σ``
    because ``σ = √(1 - ᾱ) / (d √ᾱ)``.

    Args:
        x: Noisy images at level σ, in [0, 1] units.
        x0_hat: Estimate of the clean images (e.g. ``prior.denoise(x, sigma)``).
        sigma: σ > 0: a float, a 0-d tensor, or ``(B,)``.

    Returns:
        ``ε̂``, the same shape as ``x``.

    Example:
        >>> import torch
        >>> eps_from_x0(torch.tensor([1.5]), torch.tensor([0.5]), 0.5)
        tensor([2.])
    """
    return (x - x0_hat) / _rows(_float(sigma), x)


def x0_from_eps(x: Tensor, eps: Tensor, sigma: Level) -> Tensor:
    """The clean estimate of a noise estimate: ``x̂0 = x - σ ε̂`` (inverse of :func:`eps_from_x0`).

    In VP symbols this is ``x̂0' = (x_t - √(1 - ᾱ) ε̂) / √ᾱ`` mapped by ``x̂0 = x̂0'/d + 1/2``.

    Args:
        x: Noisy images at level σ, in [0, 1] units.
        eps: Noise estimate ``ε̂`` (a VP model's output, unchanged).
        sigma: σ >= 0: a float, a 0-d tensor, or ``(B,)``.

    Returns:
        ``x̂0``, the same shape as ``x``.
    """
    return x - _rows(_float(sigma), x) * eps


def ddim_noise_scale(sigma: Level, sigma_next: Level, eta: float) -> Level:
    """Std ``c`` of the fresh noise in a DDIM step from σ to σ' (in [0, 1] units).

    ``c = η σ' √(σ² - σ'²) / σ``. Derivation: DDIM's (Song et al. 2021, eq. 16; as used by DDRM
    and DDNM) ``c_vp = η √((1 - ᾱ')/(1 - ᾱ)) √(1 - ᾱ/ᾱ')`` is a std in VP units at ``t-1``, and a
    VP state at ᾱ' maps to ours by dividing by ``d √ᾱ'``, so ``c = c_vp / (d √ᾱ')``. With
    ``ᾱ = 1/(1 + d²σ²)``: ``(1 - ᾱ')/ᾱ' = d²σ'²``, ``1 - ᾱ = d²σ²ᾱ`` and
    ``1 - ᾱ/ᾱ' = d²(σ² - σ'²)ᾱ``, so ``c² = η² σ'² (σ² - σ'²)/σ²``: ``d`` cancels, which is why
    this function takes no ``data_scale``. For η = 1 and consecutive DDPM steps this is DDPM's
    posterior variance ``β̃_t = (1 - ᾱ_{t-1})/(1 - ᾱ_t) β_t`` divided by ``d² ᾱ_{t-1}``.

    Args:
        sigma: Current level σ > 0 (float, or tensor — tensors are not checked).
        sigma_next: Next level, ``0 <= σ' <= σ``.
        eta: η in [0, 1]: 0 is deterministic DDIM, 1 is DDPM's ancestral sampler.

    Returns:
        ``c`` (float for floats, tensor if either level is a tensor).

    Raises:
        ValueError: For float levels outside ``σ > 0, 0 <= σ' <= σ``, or η outside [0, 1].

    Example:
        >>> ddim_noise_scale(5.0, 3.0, 1.0)  # 3 · 4 / 5
        2.4
    """
    eta = float(eta)
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must be in [0, 1], got {eta}")
    s, sn = _float(sigma), _float(sigma_next)
    if not isinstance(s, Tensor) and not isinstance(sn, Tensor) and not (s > 0.0 and 0.0 <= sn <= s):
        raise ValueError(f"a DDIM step needs sigma > 0 and 0 <= sigma_next <= sigma, got sigma = {s}, sigma_next = {sn}")
    return eta * sn * _sqrt((s - sn) * (s + sn)) / s


def ddim_step(
    x: Tensor,
    x0_hat: Tensor,
    sigma: Level,
    sigma_next: Level,
    eta: float,
    noise: Tensor | None = None,
) -> Tensor:
    """One DDIM step (η = 1: DDPM's ancestral step) from level σ to σ', written in invkit's units.

    ``x' = x̂0 + √(σ'² - c²) ε̂ + c z`` with ``ε̂ = (x - x̂0)/σ``, ``c = η σ' √(σ² - σ'²)/σ``
    (:func:`ddim_noise_scale`) and ``z`` = ``noise``. Computed as
    ``√(σ'² - c²) = σ' √((1 - η²) + η² σ'²/σ²)`` (a sum of non-negative terms, no cancellation).

    Derivation from the VP update (DDIM eq. 12 with eq. 16's ``c_vp``; DDRM, DDNM):

        x_{t-1} = √ᾱ' x̂0' + √(1 - ᾱ' - c_vp²) ε̂ + c_vp z,
        c_vp    = η √((1 - ᾱ')/(1 - ᾱ)) √(1 - ᾱ/ᾱ').

    Map it to our units with ``x' = x_{t-1} / (d √ᾱ') + 1/2`` (:func:`from_vp`) and
    ``x̂0' = d (x̂0 - 1/2)``: the first term becomes ``x̂0 - 1/2`` (which the ``+ 1/2`` restores),
    the second ``√((1 - ᾱ')/(d² ᾱ') - c_vp²/(d² ᾱ')) ε̂ = √(σ'² - c²) ε̂`` and the third ``c z``
    with ``c = c_vp/(d √ᾱ')``. ``ε̂`` is the same in both views (:func:`eps_from_x0`). ``σ' = 0``
    (``ᾱ' = 1``) gives ``c = 0`` and returns ``x̂0`` exactly; ``η = 0`` gives the deterministic
    ``x' = x̂0 + σ' ε̂``.

    Args:
        x: Current images at level σ, in [0, 1] units.
        x0_hat: The prior's estimate ``denoise(x, σ)``.
        sigma: σ > 0: a float, a 0-d tensor, or ``(B,)``.
        sigma_next: σ' with ``0 <= σ' <= σ``, same forms.
        eta: η in [0, 1].
        noise: Standard normal ``z`` shaped like ``x``; required unless η = 0 or σ' is the
            float 0.

    Returns:
        The images at level σ', the same shape as ``x``.

    Raises:
        ValueError: Invalid levels or η (see :func:`ddim_noise_scale`), or ``noise`` missing.

    Example:
        >>> import torch
        >>> x, x0 = torch.tensor([1.5]), torch.tensor([0.5])
        >>> ddim_step(x, x0, 1.0, 0.5, eta=0.0)  # x̂0 + σ' ε̂ with ε̂ = 1
        tensor([1.])
        >>> ddim_step(x, x0, 1.0, 0.0, eta=1.0)
        tensor([0.5000])
    """
    c = ddim_noise_scale(sigma, sigma_next, eta)
    sn = _float(sigma_next)
    if not isinstance(sn, Tensor) and sn == 0.0:
        return x0_hat.clone()
    if eta > 0.0 and noise is None:
        raise ValueError("ddim_step with eta > 0 needs noise (a standard normal tensor shaped like x)")
    s = _rows(_float(sigma), x)
    sn = _rows(sn, x)
    ratio = sn / s
    keep = sn * _sqrt((1.0 - eta * eta) + (eta * ratio) ** 2)
    out = x0_hat + keep * ((x - x0_hat) / s)
    if eta > 0.0:
        out = out + _rows(c, x) * noise
    return out


def vp_start_std(sigma: float, data_scale: float = 2.0) -> float:
    """Std of the VP samplers' start ``x_T ~ N(0, I)`` seen in our units at level σ_T: ``√(1/d² + σ_T²)``.

    ``x_T = d √ᾱ_T (x − 1/2)`` with ``x_T ~ N(0, I)`` gives ``x = 1/2 + n / (d √ᾱ_T)``, and
    ``1/(d² ᾱ_T) = (1 + d²σ_T²)/d² = 1/d² + σ_T²``. So the start is ``1/2 + vp_start_std(σ_T) n``:
    the prior's noisy law at σ_T if the data had variance ``1/d²`` around mid-grey.

    Example:
        >>> vp_start_std(0.0)  # ᾱ = 1: the data-scale std 1/d
        0.5
    """
    return math.sqrt(1.0 / (data_scale * data_scale) + float(sigma) ** 2)
