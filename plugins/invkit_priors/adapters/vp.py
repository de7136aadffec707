"""Adapter from a variance-preserving (DDPM/ADM) network to invkit's ``denoise(x, sigma)``.

A VP network was trained on ``x_t = sqrt(ab_t) x0' + sqrt(1 - ab_t) eps`` with data ``x0'`` in
``[-1, 1]`` (``data_scale = 2``) and ``ab_t`` (alphas-bar) over ``T`` trained timesteps. invkit's
:class:`~invkit.prior.Prior` speaks the variance-exploding language in [0, 1] pixel units:
``x = x0 + sigma * n``. :class:`VPDiffusionPrior` converts once, here (DESIGN.md)::

    x'    = data_scale * (x - 0.5)             ([0, 1] -> [-1, 1]; 0.5 is data_center)
    s'    = data_scale * sigma
    x_vp  = x' / sqrt(1 + s'^2)                (= sqrt(ab) x' with ab = 1 / (1 + s'^2))
    t     = the timestep whose trained sigma is s' (see below)
    x0'   = x' - s' * eps(x_vp, t)             (epsilon prediction)
          = out                                ("x0" prediction)
          = sqrt(ab) x_vp - sqrt(1 - ab) v     ("v" prediction)
    x0    = x0' / data_scale + 0.5

**Timestep from sigma.** The trained grid is ``s'_t = sqrt((1 - ab_t) / ab_t)``, ascending in
``t``; in [0, 1] units it is :attr:`~invkit.Prior.sigma_grid`
(:func:`invkit.prior.vp_sigma_grid`). For a sigma between ``sigma_grid[i]`` and
``sigma_grid[i + 1]`` the model receives the continuous timestep ``t = i + f`` with ``f``
interpolated linearly in ``log sigma``; sigmas below the grid get ``t = 0`` and above it
``t = T - 1`` (the VP scaling always uses the true sigma). For a sigma **on** the grid ``t`` is
exactly the integer timestep ``i`` (a value within ``1e-4`` of an integer is snapped to it, so
grid sigmas that went through float32 still hit the trained timestep exactly). ``sigma = 0``
returns ``x`` unchanged.

**Learned variance.** A model trained with ``learn_sigma`` outputs ``2 C`` channels; the first
``C`` are the prediction (epsilon/x0/v) and the rest, the variance interpolation, are dropped.

**Device and precision** follow the model: inputs are moved to the device of its parameters
and cast to the dtype of its first parameter (an :class:`~invkit_priors.networks.adm.ADMUNet` with a
float16 torso still takes float32 and casts inside); the result comes back on ``x``'s device in
``x``'s dtype. ``half=True`` converts the model to float16 (``convert_to_fp16()`` where the
model has it, else ``.half()``). The model is put in ``eval()`` mode.

**Memory layout.** ``channels_last=True`` stores the weights and feeds the input in the NHWC
layout, which oneDNN convolves faster on the CPU. It is off by default because torch's CPU
GroupNorm kernel for NHWC input is less accurate when a group's mean is large next to its spread,
which a checkpoint we have not measured may hit; the ``default`` prior, measured, turns it on
(the numbers are in docs/measurements.md). In NCHW mode the input is made contiguous too (an
image permuted from HWC is NHWC in memory, which would otherwise select the NHWC kernels). The
result is returned in the ordinary contiguous layout.

**Gradients.** When ``x`` requires grad (DPS-style guidance) the result is differentiable in
``x``; otherwise the network runs under ``torch.no_grad()``.

Example:
    >>> import torch
    >>> from invkit.prior import alphas_bar_from_betas, linear_betas
    >>> from invkit_priors.adapters.vp import VPDiffusionPrior
    >>> zero_eps = lambda x, t: torch.zeros_like(x)
    >>> prior = VPDiffusionPrior(zero_eps, alphas_bar_from_betas(linear_betas()))
    >>> round(prior.sigma_min, 4), round(prior.sigma_max, 1)
    (0.005, 78.7)
    >>> float(prior.timesteps_for(prior.sigma_grid[[0, 250, 999]])[1])
    250.0
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from invkit.prior import Prior, sigma_rows, vp_sigma_grid

__all__ = ["VPDiffusionPrior", "Provenance", "PREDICTIONS", "PREDICTION_ALIASES", "resolve_prediction", "check_class_label"]

#: Parameterisations of the network output that the adapter understands.
PREDICTIONS: tuple[str, ...] = ("epsilon", "x0", "v")
#: Names of the parameterisations as other code writes them -> :data:`PREDICTIONS`.
PREDICTION_ALIASES: dict[str, str] = {
    "epsilon": "epsilon", "eps": "epsilon", "x0": "x0", "sample": "x0", "x_start": "x0",
    "v": "v", "v_prediction": "v",
}


@dataclass(frozen=True)
class Provenance:
    """What a checkpoint prior was loaded from (set by the checkpoint readers).

    Attributes:
        source: The file or folder.
        arch: ``"adm"``, ``"ddpm"`` or ``"diffusers"``.
        config: The network configuration used (flags or config.json entries).
        config_origin: Where the configuration came from (``"flags"``, ``"metadata"``, a
            catalogue entry, ``"the parameter shapes"``, or a config.json path).
        metadata: The file's invkit metadata, or a diffusers folder's scheduler config.
    """

    source: str
    arch: str
    config: dict[str, Any] = field(default_factory=dict)
    config_origin: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)


def resolve_prediction(explicit: str | None, *found: str | None) -> str:
    """The first given parameterisation name among ``explicit`` and ``found``, canonical; else ``"epsilon"``.

    Raises:
        ValueError: A name that is not in :data:`PREDICTION_ALIASES`.

    Example:
        >>> resolve_prediction(None, "v_prediction"), resolve_prediction(None)
        ('v', 'epsilon')
    """
    for value in (explicit, *found):
        if value is not None:
            key = str(value).strip().lower()
            if key not in PREDICTION_ALIASES:
                raise ValueError(f"unknown prediction {value!r}; expected one of epsilon, x0, v (or sample, v_prediction)")
            return PREDICTION_ALIASES[key]
    return "epsilon"


def check_class_label(class_label: Any, num_classes: int | None, source: str | Path) -> int | None:
    """The class label to bind: required (``0 <= N < num_classes``) for a class-conditional model, refused otherwise.

    Args:
        class_label: What the user gave (``None`` for nothing).
        num_classes: The model's class count, or ``None`` for an unconditional model.
        source: The checkpoint, named in the messages.

    Raises:
        ValueError: A label for an unconditional model, none for a conditional one, or out of range.
    """
    if num_classes is None:
        if class_label is not None:
            raise ValueError(f"{source}: the model is unconditional; drop class_label={class_label}")
        return None
    if class_label is None:
        raise ValueError(
            f"{source}: the model is class-conditional ({num_classes} classes); pass class_label=N with 0 <= N < {num_classes} "
            "(--prior-arg class_label=N)"
        )
    label = int(class_label)
    if not 0 <= label < num_classes:
        raise ValueError(f"{source}: class_label={label} is out of range; expected 0 <= N < {num_classes}")
    return label

_SNAP = 1e-4


class VPDiffusionPrior(Prior):
    """A VP diffusion network seen as an MMSE denoiser in [0, 1] units.

    Args:
        model: ``model(x_vp, t)`` (or ``model(x_vp, t, y=labels)`` when ``class_label`` is
            given) with ``t`` a ``(B,)`` float tensor of timesteps; a module or any callable.
        alphas_bar: ``(T,)`` cumulative products of ``1 - beta`` the model was trained with
            (strictly decreasing); e.g. ``alphas_bar_from_betas(linear_betas())``.
        prediction: What the network outputs: ``"epsilon"``, ``"x0"`` or ``"v"``.
        learned_sigma: The output has twice the input channels (prediction first).
        class_label: A class index (or ``(B,)`` tensor of indices) bound for a class-conditional
            model; ``None`` for an unconditional one.
        data_scale: Width of the model's data range over that of [0, 1] (2 for [-1, 1]).
        half: Convert the model to float16 (see the module notes).
        channels: Image channels; default the model's ``in_channels`` attribute if any.
        image_size: Preferred ``(H, W)``; default the model's ``image_size`` attribute if any.
        channels_last: Run a module in the NHWC memory layout (see the module notes).
        provenance: What the prior was loaded from (checkpoint readers set it), else ``None``.

    Raises:
        ValueError: On an unknown ``prediction`` or a non-decreasing ``alphas_bar``.
    """

    tileable = True  # a diffusion network: its output at a pixel depends on a neighbourhood

    def __init__(
        self,
        model: nn.Module | Callable[..., Tensor],
        alphas_bar: Tensor,
        prediction: Literal["epsilon", "x0", "v"] = "epsilon",
        learned_sigma: bool = False,
        class_label: int | Tensor | None = None,
        data_scale: float = 2.0,
        *,
        half: bool = False,
        channels: int | None = None,
        image_size: int | tuple[int, int] | None = None,
        channels_last: bool = False,
        provenance: Provenance | None = None,
    ) -> None:
        if prediction not in PREDICTIONS:
            raise ValueError(f"unknown prediction {prediction!r}; expected one of {list(PREDICTIONS)}")
        ab = torch.as_tensor(alphas_bar, dtype=torch.float64).detach().cpu().reshape(-1)
        if ab.numel() < 2 or not bool(torch.all((ab > 0) & (ab < 1))) or not bool(torch.all(ab[1:] < ab[:-1])):
            raise ValueError("alphas_bar must hold at least 2 values in (0, 1), strictly decreasing")
        if data_scale <= 0:
            raise ValueError(f"data_scale must be positive, got {data_scale}")
        self.model = model
        self.provenance = provenance
        self.size_multiple = int(getattr(model, "size_multiple", 1) or 1)  # the network's, stated on the prior
        self.prediction = prediction
        self.learned_sigma = bool(learned_sigma)
        self.class_label = class_label
        self.data_scale = float(data_scale)
        self.alphas_bar = ab
        self.sigma_grid = vp_sigma_grid(ab, self.data_scale)
        #: Clip the estimate to the data range [0, 1] (guided-diffusion's ``clip_denoised``; off by
        #: default): see :meth:`denoise`. Set with ``--prior-arg clip=true`` (on a
        #: :class:`~invkit.TiledPrior`, set it on the prior it tiles).
        self.clip = False
        self._log_grid = torch.log(self.sigma_grid)
        self.data_center = 0.5
        if isinstance(model, nn.Module):
            model.eval()
            if half:
                convert = getattr(model, "convert_to_fp16", None)
                if callable(convert):
                    convert()
                else:
                    model.half()
        elif half:
            raise ValueError("half=True needs an nn.Module model")
        self.channels_last = False
        self.set_channels_last(channels_last)
        self.channels = channels if channels is not None else getattr(model, "in_channels", None)
        size = image_size if image_size is not None else getattr(model, "image_size", None)
        self.image_size = (size, size) if isinstance(size, int) else (tuple(size) if size is not None else None)

    @property
    def num_timesteps(self) -> int:
        """Number of trained timesteps ``T``."""
        return int(self.alphas_bar.numel())

    def timesteps_for(self, sigma: Tensor | float) -> Tensor:
        """The (continuous) model timestep for noise levels in [0, 1] units.

        Args:
            sigma: Noise level(s), any shape.

        Returns:
            float64 timesteps of the same shape on the CPU: exact integers on the grid, linear in
            ``log sigma`` between grid points, clamped to ``[0, T - 1]`` outside it.
        """
        s = torch.as_tensor(sigma, dtype=torch.float64).detach().cpu()
        lg = self._log_grid
        ls = torch.log(s.clamp(min=float(self.sigma_grid[0]), max=float(self.sigma_grid[-1])))
        i = (torch.searchsorted(lg, ls.reshape(-1), right=True) - 1).clamp(0, lg.numel() - 2).reshape(ls.shape)
        t = i + (ls - lg[i]) / (lg[i + 1] - lg[i])
        nearest = torch.round(t)
        return torch.where((t - nearest).abs() < _SNAP, nearest, t)

    def _labels(self, batch: int, device: torch.device) -> Tensor | None:
        if self.class_label is None:
            return None
        y = torch.as_tensor(self.class_label, dtype=torch.long, device=device)
        if y.ndim == 0:
            y = y.expand(batch)
        if y.shape != (batch,):
            raise ValueError(f"class_label must be an int or have shape ({batch},), got {tuple(y.shape)}")
        return y

    def set_gradient_checkpointing(self, on: bool = True) -> None:
        """Let gradients through ``denoise`` recompute the network's activations instead of storing them.

        For solvers that differentiate through the prior (DPS) on large images: less memory,
        one more network forward per backward. Needs a network with
        ``set_gradient_checkpointing`` (the ADM U-Net has it).

        Raises:
            ValueError: ``on`` for a network without it.
        """
        setter = getattr(self.model, "set_gradient_checkpointing", None)
        if setter is None:
            if on:
                raise ValueError(f"{type(self.model).__name__} has no gradient checkpointing; drop grad_checkpoint")
            return
        setter(on)

    def set_channels_last(self, on: bool = True) -> None:
        """Switch the network between the NHWC (``on``) and NCHW memory layouts.

        The choice stays with the model: after moving it to another device, call this again
        (the ``default`` prior's loader turns NHWC on for the CPU only; on CUDA it is
        unmeasured). Only from Python: the CLI's checkpoint priors always run NCHW.

        Args:
            on: NHWC when True, NCHW when False.

        Raises:
            ValueError: ``on`` for a model that is not an ``nn.Module``.
        """
        if on and not isinstance(self.model, nn.Module):
            raise ValueError("channels_last=True needs an nn.Module model")
        if isinstance(self.model, nn.Module):
            self.model.to(memory_format=torch.channels_last if on else torch.contiguous_format)
        self.channels_last = bool(on)

    def _model_device_dtype(self, x: Tensor) -> tuple[torch.device, torch.dtype]:
        if isinstance(self.model, nn.Module):
            for p in self.model.parameters():
                return p.device, (p.dtype if p.is_floating_point() else x.dtype)
        return x.device, x.dtype

    def denoise(self, x: Tensor, sigma: float | Tensor, *, clip: bool | None = None) -> Tensor:
        """MMSE estimate of ``x0`` from ``x = x0 + sigma * n`` (all in [0, 1] units).

        Args:
            x: ``(B, C, H, W)`` noisy images.
            sigma: A float or a ``(B,)`` tensor of noise levels.
            clip: Clip the estimate to ``[0, 1]``; None: :attr:`clip` (a caller that averages
                estimates, like the default prior's grey path, clips the average instead).

        Returns:
            ``(B, C, H, W)`` estimate, on ``x``'s device in ``x``'s dtype; when clipping,
            clipped to ``[0, 1]`` (rows with ``sigma = 0`` are ``x`` itself either way). The exact
            MMSE estimate of images in ``[0, 1]`` lies in that box (a mean of points in a convex
            set), and clipping moves no pixel of an estimate away from any image in it, so the
            clipped estimate is never further from the truth, pixel by pixel. Gradients through
            clipped pixels are zero (a solver that differentiates through ``denoise``, DPS, gets
            none there); a solver's own clipping of its x̂0 (DPS's ``clip_x0``) is separate and
            sees the clipped estimate.
        """
        if x.ndim != 4:
            raise ValueError(f"x must be (B, C, H, W), got {tuple(x.shape)}")
        b, c = x.shape[:2]
        s = sigma_rows(sigma, b)
        if not bool(torch.any(s > 0)):
            return x
        device, dtype = self._model_device_dtype(x)
        sp = self.data_scale * s  # sigma in model units, float64
        a = 1.0 / torch.sqrt(1.0 + sp * sp)  # sqrt(alphas_bar(sigma))
        t = self.timesteps_for(s)

        def col(v: Tensor) -> Tensor:
            return v.to(device=device, dtype=x.dtype).view(b, 1, 1, 1)

        xp = self.data_scale * (x.to(device) - self.data_center)
        x_vp = xp * col(a)
        # The input's layout decides the kernels as much as the weights' do (an image read through
        # numpy and permuted is NHWC in memory), so it is set explicitly either way.
        x_in = x_vp.to(dtype).contiguous(memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)
        args: tuple = (x_in, t.to(device=device, dtype=torch.float32))
        kwargs = {}
        y = self._labels(b, device)
        if y is not None:
            kwargs["y"] = y
        if x.requires_grad:
            out = self.model(*args, **kwargs)
        else:
            with torch.no_grad():
                out = self.model(*args, **kwargs)

        expected = 2 * c if self.learned_sigma else c
        if out.ndim != 4 or out.shape[0] != b or out.shape[1] != expected or out.shape[2:] != x.shape[2:]:
            hint = "" if out.ndim != 4 or out.shape[1] not in (c, 2 * c) else (
                f" (set learned_sigma={out.shape[1] == 2 * c})"
            )
            raise ValueError(
                f"model output {tuple(out.shape)} does not match input {tuple(x.shape)} with "
                f"learned_sigma={self.learned_sigma}: expected {expected} channels{hint}"
            )
        out = out[:, :c].to(x.dtype).contiguous()

        if self.prediction == "epsilon":
            x0p = xp - col(sp) * out
        elif self.prediction == "x0":
            x0p = out
        else:  # v = sqrt(ab) eps - sqrt(1 - ab) x0  =>  x0 = sqrt(ab) x_vp - sqrt(1 - ab) v
            x0p = col(a) * x_vp - col(sp * a) * out
        x0 = (x0p / self.data_scale + self.data_center).to(x.device)
        if (self.clip if clip is None else clip):
            x0 = x0.clamp(0.0, 1.0)
        if bool(torch.any(s == 0)):
            x0 = torch.where((s == 0).to(x.device).view(b, 1, 1, 1), x, x0)
        return x0
