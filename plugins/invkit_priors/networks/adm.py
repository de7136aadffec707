"""The "ADM" U-Net of Dhariwal & Nichol (guided-diffusion), written for invkit.

:class:`ADMUNet` is our own implementation of the architecture that openai/guided-diffusion calls
``UNetModel``. Built from the same flags (:class:`ADMConfig`) it has exactly the parameter names
and shapes of the published checkpoints, so their state dicts load strictly
(:func:`invkit_priors.checkpoints.safe_load.load_strict`) — e.g. ``256x256_diffusion_uncond.pt``
(552.8 M parameters), ``256x256_diffusion.pt`` (class-conditional, 553.8 M) and DPS's
``ffhq_10m.pt`` (93.6 M); the reference manifests in ``tests/data`` are the contract.

Layout (parameter names in brackets)::

    time_embed      sinusoidal(t, C) -> Linear [time_embed.0] -> SiLU -> Linear [time_embed.2]
    label_emb       Embedding(num_classes, 4C), added to the time embedding (class_cond only)
    input_blocks    [0]: conv 3x3 in -> C; then per level num_res_blocks x (ResBlock [+ attention])
                    and, except at the last level, a downsampling block (ResBlock(down) or conv)
    middle_block    ResBlock, attention, ResBlock
    output_blocks   per level (deepest first) num_res_blocks + 1 x (concat skip, ResBlock
                    [+ attention]) and, except at level 0, an upsampling block
    out             GroupNorm [out.0] -> SiLU -> conv 3x3 [out.2] -> out_channels

A ResBlock is ``in_layers`` (GroupNorm [0], SiLU, conv [2]), ``emb_layers`` (SiLU, Linear [1],
giving a FiLM scale and shift with ``use_scale_shift_norm`` or an additive bias otherwise),
``out_layers`` (GroupNorm [0], SiLU, Dropout, conv [3], zero-initialised) and a
``skip_connection`` (1x1 conv when the channel count changes). An attention block is
``norm``, a 1x1 ``qkv`` Conv1d, multi-head dot-product attention and a zero-initialised 1x1
``proj_out`` Conv1d, applied residually over all spatial positions.

Conventions:

* The network is fully convolutional: any ``H, W`` divisible by ``2 ** (levels - 1)`` works; the
  attention placement is fixed by the downsampling factor (``image_size // resolution`` for each
  entry of ``attention_resolutions``), and attention covers every position at any resolution.
* GroupNorm (32 groups) computes in float32 (float64 for a float64 model) and returns the input
  dtype. ``use_fp16`` (or :meth:`ADMUNet.convert_to_fp16`) turns the convolutions of the torso
  (``input_blocks``, ``middle_block``, ``output_blocks``) into float16 as the original does; the
  embeddings, norms and the output head stay in float32, and the input/output dtype is the
  caller's.
* Timesteps may be fractional (the embedding is continuous); ``forward(x, timesteps, y)`` takes a
  ``(B,)`` tensor or a scalar.

Example:
    >>> import torch
    >>> from invkit_priors.networks.adm import ADMConfig, ADMUNet
    >>> cfg = ADMConfig.from_flags({"image_size": "32", "num_channels": "32", "channel_mult": "1,2",
    ...                             "attention_resolutions": "16", "num_res_blocks": "1"})
    >>> net = ADMUNet(cfg)
    >>> net(torch.zeros(2, 3, 32, 48), torch.tensor([10.0, 999.0])).shape
    torch.Size([2, 3, 32, 48])
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint as _grad_checkpoint

from invkit.params import parse_bool

from .inputs import check_unet_inputs, network_config

__all__ = [
    "ADMConfig",
    "ADMUNet",
    "ADM_PRESETS",
    "DIFFUSION_FLAGS",
    "GroupNorm32",
    "timestep_embedding",
]

#: Flags of guided-diffusion's ``create_model_and_diffusion`` that describe the diffusion
#: process, not the network; :meth:`ADMConfig.from_flags` accepts and ignores them.
DIFFUSION_FLAGS: frozenset[str] = frozenset(
    {
        "diffusion_steps",
        "noise_schedule",
        "timestep_respacing",
        "use_kl",
        "predict_xstart",
        "rescale_timesteps",
        "rescale_learned_sigmas",
        "sigma_small",
    }
)

def _parse_number(value: str) -> float | int:
    number = float(value)
    return int(number) if number.is_integer() else number


def _csv(name: str, value: Any) -> str:
    """Normalise a comma-separated flag (``"1,2,2"``, ``(1, 2, 2)``, ``16``) to its string form."""
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",") if v.strip()]
    elif isinstance(value, (int, float)):
        items = [str(value)]
    elif isinstance(value, Iterable):
        items = [str(v).strip() for v in value]
    else:
        raise ValueError(f"ADM flag {name!r}: expected a comma-separated list, got {value!r}")
    try:
        return ",".join(str(_parse_number(v)) for v in items)
    except ValueError:
        raise ValueError(f"ADM flag {name!r}: expected numbers separated by commas, got {value!r}") from None


@dataclass
class ADMConfig:
    """Architecture flags of an ADM U-Net, named and defaulted as in guided-diffusion.

    The defaults are guided-diffusion's ``model_and_diffusion_defaults()``. ``in_channels`` and
    ``num_classes`` are not flags there (3 and 1000 are hard-coded); they are kept here so that
    other data can be modelled, and appear in :meth:`to_flags` only when they differ from those.

    Attributes:
        image_size: Training resolution; sets the default ``channel_mult`` and turns
            ``attention_resolutions`` into downsampling factors.
        num_channels: Base channel count ``C`` (the time embedding has ``4 C``).
        num_res_blocks: ResBlocks per level on the way down (one more on the way up).
        channel_mult: Comma-separated multipliers of ``C`` per level, or ``""`` for the default of
            ``image_size`` (512: 0.5,1,1,2,2,4,4; 256: 1,1,2,2,4,4; 128: 1,1,2,3,4; 64: 1,2,3,4).
        learn_sigma: The network also outputs the variance interpolation (doubles out channels).
        class_cond: Add a learned class embedding (``num_classes`` classes).
        use_checkpoint: Gradient checkpointing in ResBlocks and attention (training memory only).
        attention_resolutions: Comma-separated feature-map sizes (at ``image_size``) with attention.
        num_heads: Attention heads, used when ``num_head_channels == -1``.
        num_head_channels: Channels per head (overrides ``num_heads``), or -1.
        num_heads_upsample: Heads in the decoder's attention (-1: same as ``num_heads``).
        use_scale_shift_norm: FiLM conditioning (scale and shift after the second GroupNorm).
        dropout: Dropout rate inside the ResBlocks.
        resblock_updown: Resample with ResBlocks instead of strided/nearest convolutions.
        use_fp16: Run the torso's convolutions in float16.
        use_new_attention_order: Split q, k, v before heads (``QKVAttention``) instead of heads
            before q, k, v (``QKVAttentionLegacy``, the default). Both share the same parameters
            but give different results, so a checkpoint must use the order it was trained with.
        in_channels: Image channels.
        num_classes: Classes of the label embedding when ``class_cond``.
    """

    image_size: int = 64
    num_channels: int = 128
    num_res_blocks: int = 2
    channel_mult: str = ""
    learn_sigma: bool = False
    class_cond: bool = False
    use_checkpoint: bool = False
    attention_resolutions: str = "16,8"
    num_heads: int = 4
    num_head_channels: int = -1
    num_heads_upsample: int = -1
    use_scale_shift_norm: bool = True
    dropout: float = 0.0
    resblock_updown: bool = False
    use_fp16: bool = False
    use_new_attention_order: bool = False
    in_channels: int = 3
    num_classes: int = 1000

    _EXTRA: ClassVar[dict[str, Any]] = {"in_channels": 3, "num_classes": 1000}

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type in ("bool", bool):
                value = parse_bool(value, f"ADM flag {f.name!r}")
            elif f.type in ("int", int):
                if isinstance(value, bool) or not isinstance(value, (int, str, float)):
                    raise ValueError(f"ADM flag {f.name!r}: expected an integer, got {value!r}")
                try:
                    number = float(value)
                except ValueError:
                    raise ValueError(f"ADM flag {f.name!r}: expected an integer, got {value!r}") from None
                if not number.is_integer():
                    raise ValueError(f"ADM flag {f.name!r}: expected an integer, got {value!r}")
                value = int(number)
            elif f.type in ("float", float):
                try:
                    value = float(value)
                except (TypeError, ValueError):
                    raise ValueError(f"ADM flag {f.name!r}: expected a number, got {value!r}") from None
            elif f.type in ("str", str):
                value = _csv(f.name, value)
            setattr(self, f.name, value)
        self._validate()

    # ------------------------------------------------------------------ flags
    @classmethod
    def from_flags(cls, flags: Mapping[str, Any]) -> ADMConfig:
        """Build from guided-diffusion flags.

        Args:
            flags: A mapping of flag names to values (strings as on the command line, or typed
                values; :func:`invkit_priors.checkpoints.flags.parse_flags` reads the text forms,
                e.g. the guided-diffusion README's ``MODEL_FLAGS``). Missing flags take the
                defaults; the diffusion-process flags (:data:`DIFFUSION_FLAGS`) are ignored.

        Returns:
            The configuration.

        Raises:
            ValueError: On an unknown flag or an unparsable value.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(k for k in flags if k not in known and k not in DIFFUSION_FLAGS)
        if unknown:
            raise ValueError(f"unknown ADM flag(s) {unknown}; known: {sorted(known)}")
        return cls(**{k: v for k, v in flags.items() if k in known})

    def to_flags(self) -> dict[str, Any]:
        """The flags as guided-diffusion names them (``in_channels``/``num_classes`` only if not default)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        for name, default in self._EXTRA.items():
            if out[name] == default:
                del out[name]
        return out

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> ADMConfig:
        """A named configuration from :data:`ADM_PRESETS`, with optional flag overrides."""
        if name not in ADM_PRESETS:
            raise ValueError(f"unknown ADM preset {name!r}; known: {sorted(ADM_PRESETS)}")
        return cls.from_flags({**ADM_PRESETS[name], **overrides})

    @classmethod
    def small(cls, **overrides: Any) -> ADMConfig:
        """The small preset for invkit's CPU-trainable default prior (see :data:`ADM_PRESETS`)."""
        return cls.preset("small", **overrides)

    # ------------------------------------------------------------- resolved
    @property
    def channel_mults(self) -> tuple[float, ...]:
        """The channel multipliers per level (``channel_mult`` or the default for ``image_size``)."""
        if self.channel_mult:
            return tuple(_parse_number(v) for v in self.channel_mult.split(","))
        defaults = {
            512: (0.5, 1, 1, 2, 2, 4, 4),
            256: (1, 1, 2, 2, 4, 4),
            128: (1, 1, 2, 3, 4),
            64: (1, 2, 3, 4),
        }
        if self.image_size not in defaults:
            raise ValueError(
                f"no default channel_mult for image_size {self.image_size} (defaults exist for "
                f"{sorted(defaults)}); give channel_mult explicitly, e.g. '1,2,2,2'"
            )
        return defaults[self.image_size]

    @property
    def attention_ds(self) -> tuple[int, ...]:
        """Downsampling factors with attention: ``image_size // r`` for each attention resolution."""
        if not self.attention_resolutions:
            return ()
        return tuple(self.image_size // int(_parse_number(r)) for r in self.attention_resolutions.split(","))

    @property
    def out_channels(self) -> int:
        """Output channels: ``in_channels``, doubled with ``learn_sigma``."""
        return self.in_channels * (2 if self.learn_sigma else 1)

    @property
    def levels(self) -> int:
        """Number of resolution levels (``len(channel_mults)``)."""
        return len(self.channel_mults)

    def _validate(self) -> None:
        mults = self.channel_mults
        if self.num_channels <= 0 or self.num_res_blocks < 0 or not mults:
            raise ValueError(f"invalid ADM sizes: {self}")
        widths = {int(m * self.num_channels) for m in mults}
        bad = sorted(w for w in widths if w % 32)
        if bad:
            raise ValueError(f"ADM channel counts {bad} are not divisible by the 32 GroupNorm groups")
        if any(r <= 0 for r in (int(_parse_number(v)) for v in self.attention_resolutions.split(",") if v)):
            raise ValueError(f"attention_resolutions must be positive, got {self.attention_resolutions!r}")
        if self.num_head_channels != -1:
            attn_widths = [int(m * self.num_channels) for lvl, m in enumerate(mults) if 2**lvl in self.attention_ds]
            attn_widths.append(int(mults[-1] * self.num_channels))  # middle block
            bad = sorted({w for w in attn_widths if w % self.num_head_channels})
            if bad:
                raise ValueError(f"attention widths {bad} are not divisible by num_head_channels={self.num_head_channels}")


# The flags every preset shares, and those the two ImageNet 256 presets share.
_PRESET_COMMON: dict[str, Any] = dict(
    use_checkpoint=False, num_heads=4, num_heads_upsample=-1, use_scale_shift_norm=True, dropout=0.0,
    resblock_updown=True, use_fp16=False, use_new_attention_order=False,
)
_IMAGENET256: dict[str, Any] = dict(
    image_size=256, num_channels=256, num_res_blocks=2, channel_mult="", learn_sigma=True,
    attention_resolutions="32,16,8", num_head_channels=64, **_PRESET_COMMON,
)
#: Flags of the public checkpoints (matching ``tests/data/adm_*.params.json``) and invkit's
#: ``small`` default prior (~6 M parameters, 64 px training crops, fully convolutional).
ADM_PRESETS: dict[str, dict[str, Any]] = {
    "imagenet256_uncond": dict(_IMAGENET256, class_cond=False),
    "imagenet256_cond": dict(_IMAGENET256, class_cond=True),
    "ffhq256": dict(
        image_size=256, num_channels=128, num_res_blocks=1, channel_mult="", learn_sigma=True,
        class_cond=False, attention_resolutions="16", num_head_channels=64, **_PRESET_COMMON,
    ),
    "small": dict(
        image_size=64, num_channels=64, num_res_blocks=1, channel_mult="1,2,2,2", learn_sigma=False,
        class_cond=False, attention_resolutions="8", num_head_channels=32, **_PRESET_COMMON,
    ),
}


# ====================================================================== layers
def timestep_embedding(timesteps: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps, ADM's layout.

    ``[cos(t f_0), ..., cos(t f_{h-1}), sin(t f_0), ..., sin(t f_{h-1})]`` with
    ``h = dim // 2`` and ``f_k = max_period ** (-k / h)``; a zero is appended for odd ``dim``.

    Args:
        timesteps: ``(B,)`` timesteps.
        dim: Embedding width.
        max_period: Longest period of the sinusoids.

    Returns:
        ``(B, dim)`` float32 embedding.
    """
    half = dim // 2
    k = torch.arange(half, dtype=torch.float32, device=timesteps.device)
    freqs = torch.exp(k * (-math.log(max_period) / half)) if half else k
    phase = timesteps.to(torch.float32)[:, None] * freqs[None, :]
    emb = torch.cat([torch.cos(phase), torch.sin(phase)], dim=1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class GroupNorm32(nn.GroupNorm):
    """GroupNorm that computes in at least float32 (float64 stays float64) and returns the input's dtype."""

    def forward(self, x: Tensor) -> Tensor:
        """Group-normalise ``x`` in at least float32, returning its dtype."""
        ct = torch.promote_types(torch.promote_types(x.dtype, self.weight.dtype), torch.float32)
        out = F.group_norm(x.to(ct), self.num_groups, self.weight.to(ct), self.bias.to(ct), self.eps)
        return out.to(x.dtype)


def _norm(channels: int) -> GroupNorm32:
    return GroupNorm32(32, channels)


def _zeroed(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class _Resample(nn.Module):
    """Parameter-free x2 resampling: nearest-neighbour up or 2x2 average-pool down."""

    def __init__(self, up: bool) -> None:
        super().__init__()
        self.up = up

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        return F.interpolate(x, scale_factor=2.0, mode="nearest") if self.up else F.avg_pool2d(x, 2)


class Upsample(nn.Module):
    """Nearest x2 upsampling followed by a 3x3 convolution (parameters ``conv.*``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Downsample(nn.Module):
    """Strided 3x3 convolution (parameters ``op.*``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        return self.op(x)


class ResBlock(nn.Module):
    """Residual block conditioned on the time(+class) embedding, optionally resampling.

    Args:
        channels: Input channels.
        emb_channels: Width of the embedding.
        dropout: Dropout rate before the last convolution.
        out_channels: Output channels (default: ``channels``).
        use_scale_shift_norm: FiLM conditioning instead of an additive embedding.
        up: Upsample x2 (nearest) between the first norm/activation and the first conv.
        down: Downsample x2 (average pool) likewise.
        use_checkpoint: Gradient checkpointing when gradients are enabled.
    """

    def __init__(
        self,
        channels: int,
        emb_channels: int,
        dropout: float,
        out_channels: int | None = None,
        use_scale_shift_norm: bool = False,
        up: bool = False,
        down: bool = False,
        use_checkpoint: bool = False,
    ) -> None:
        super().__init__()
        out_channels = out_channels or channels
        self.use_scale_shift_norm = use_scale_shift_norm
        self.use_checkpoint = use_checkpoint
        self.resample = up or down
        self.in_layers = nn.Sequential(_norm(channels), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1))
        if self.resample:
            self.h_upd: nn.Module = _Resample(up)
            self.x_upd: nn.Module = _Resample(up)
        else:
            self.h_upd = self.x_upd = nn.Identity()
        self.emb_layers = nn.Sequential(
            nn.SiLU(), nn.Linear(emb_channels, 2 * out_channels if use_scale_shift_norm else out_channels)
        )
        self.out_layers = nn.Sequential(
            _norm(out_channels),
            nn.SiLU(),
            nn.Dropout(p=dropout),
            _zeroed(nn.Conv2d(out_channels, out_channels, 3, padding=1)),
        )
        self.skip_connection: nn.Module = (
            nn.Identity() if out_channels == channels else nn.Conv2d(channels, out_channels, 1)
        )

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        """Apply to features ``x`` ``(B, C, H, W)`` given the embedding ``emb`` ``(B, E)``."""
        if self.use_checkpoint and torch.is_grad_enabled():
            return _grad_checkpoint(self._forward, x, emb, use_reentrant=False)
        return self._forward(x, emb)

    def _forward(self, x: Tensor, emb: Tensor) -> Tensor:
        norm_act, conv = self.in_layers[:-1], self.in_layers[-1]
        h = norm_act(x)
        if self.resample:
            h = self.h_upd(h)
            x = self.x_upd(x)
        h = conv(h)
        e = self.emb_layers(emb).to(h.dtype)[:, :, None, None]
        if self.use_scale_shift_norm:
            scale, shift = e.chunk(2, dim=1)
            h = self.out_layers[0](h) * (1 + scale) + shift
            h = self.out_layers[1:](h)
        else:
            h = self.out_layers(h + e)
        return self.skip_connection(x) + h


def _attention(qkv: Tensor, heads: int, new_order: bool) -> Tensor:
    """Multi-head attention over the last axis of ``qkv`` ``(B, 3 * heads * ch, T)`` -> ``(B, heads * ch, T)``.

    ``new_order=False`` reads ``qkv`` as ``(B, heads, 3, ch, T)`` (heads split first, the legacy
    order); ``new_order=True`` as ``(B, 3, heads, ch, T)``. The softmax scale is ``1/sqrt(ch)``.
    """
    b, width, length = qkv.shape
    ch = width // (3 * heads)
    if new_order:
        q, k, v = qkv.reshape(b, 3, heads, ch, length).unbind(1)
    else:
        q, k, v = qkv.reshape(b, heads, 3, ch, length).unbind(2)
    # (B, heads, T, ch) for scaled_dot_product_attention, contiguous: with strided inputs torch
    # falls back to the O(T²)-memory math kernel (docs/measurements.md).
    q, k, v = (t.transpose(-1, -2).contiguous() for t in (q, k, v))
    out = F.scaled_dot_product_attention(q, k, v)
    return out.transpose(-1, -2).reshape(b, heads * ch, length)


class AttentionBlock(nn.Module):
    """Residual self-attention over all spatial positions.

    Args:
        channels: Feature channels.
        num_heads: Heads, used when ``num_head_channels == -1``.
        num_head_channels: Channels per head, or -1.
        use_new_attention_order: q/k/v split before heads (see :func:`_attention`).
        use_checkpoint: Gradient checkpointing when gradients are enabled.
    """

    def __init__(
        self,
        channels: int,
        num_heads: int = 1,
        num_head_channels: int = -1,
        use_new_attention_order: bool = False,
        use_checkpoint: bool = False,
    ) -> None:
        super().__init__()
        if num_head_channels == -1:
            self.num_heads = num_heads
        else:
            if channels % num_head_channels:
                raise ValueError(f"attention width {channels} is not divisible by num_head_channels={num_head_channels}")
            self.num_heads = channels // num_head_channels
        if channels % self.num_heads:
            raise ValueError(f"attention width {channels} is not divisible by num_heads={self.num_heads}")
        self.new_order = use_new_attention_order
        self.use_checkpoint = use_checkpoint
        self.norm = _norm(channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = _zeroed(nn.Conv1d(channels, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        """Apply to features ``(B, C, *spatial)``."""
        if self.use_checkpoint and torch.is_grad_enabled():
            return _grad_checkpoint(self._forward, x, use_reentrant=False)
        return self._forward(x)

    def _forward(self, x: Tensor) -> Tensor:
        b, c, *spatial = x.shape
        flat = x.reshape(b, c, -1)
        h = _attention(self.qkv(self.norm(flat)), self.num_heads, self.new_order)
        return (flat + self.proj_out(h)).reshape(b, c, *spatial)


class _EmbedSequential(nn.Sequential):
    """A sequence of layers; ResBlocks also receive the embedding."""

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:  # type: ignore[override]  # noqa: D102
        for layer in self:
            x = layer(x, emb) if isinstance(layer, ResBlock) else layer(x)
        return x


# ====================================================================== model
class ADMUNet(nn.Module):
    """The ADM U-Net; ``forward(x, timesteps, y=None)`` returns ``(B, out_channels, H, W)``.

    Args:
        config: Architecture flags; a mapping is passed through :meth:`ADMConfig.from_flags`
            (text forms are read by :func:`invkit_priors.checkpoints.flags.parse_flags`).

    Attributes:
        config: The :class:`ADMConfig`.
        image_size: Training resolution (the preferred size; any multiple of
            :attr:`size_multiple` works).
        in_channels: Input channels.
        out_channels: Output channels (first ``in_channels`` the prediction, then the variance
            channels if ``learn_sigma``).
        num_classes: Classes of the label embedding, or ``None``.
        size_multiple: ``2 ** (levels - 1)``; ``H`` and ``W`` must be multiples of it.
    """

    def __init__(self, config: ADMConfig | Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.config = network_config(config, ADMConfig, ADMConfig.from_flags)
        cfg = self.config
        mults = cfg.channel_mults
        attention_ds = set(cfg.attention_ds)
        heads_up = cfg.num_heads if cfg.num_heads_upsample == -1 else cfg.num_heads_upsample
        c0 = cfg.num_channels
        emb_dim = 4 * c0

        self.image_size = cfg.image_size
        self.in_channels = cfg.in_channels
        self.out_channels = cfg.out_channels
        self.model_channels = c0
        self.num_classes = cfg.num_classes if cfg.class_cond else None
        self.size_multiple = 2 ** (len(mults) - 1)

        def res(cin: int, cout: int | None = None, **kw: bool) -> ResBlock:
            return ResBlock(cin, emb_dim, cfg.dropout, cout, cfg.use_scale_shift_norm, use_checkpoint=cfg.use_checkpoint, **kw)

        def attn(width: int, heads: int) -> AttentionBlock:
            return AttentionBlock(width, heads, cfg.num_head_channels, cfg.use_new_attention_order, cfg.use_checkpoint)

        self.time_embed = nn.Sequential(nn.Linear(c0, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        if self.num_classes is not None:
            self.label_emb = nn.Embedding(self.num_classes, emb_dim)

        # Encoder. ``skips`` records the width of every feature map kept for the decoder.
        width = int(mults[0] * c0)
        first_width = width
        self.input_blocks = nn.ModuleList([_EmbedSequential(nn.Conv2d(cfg.in_channels, width, 3, padding=1))])
        skips = [width]
        ds = 1
        for level, mult in enumerate(mults):
            for _ in range(cfg.num_res_blocks):
                layers: list[nn.Module] = [res(width, int(mult * c0))]
                width = int(mult * c0)
                if ds in attention_ds:
                    layers.append(attn(width, cfg.num_heads))
                self.input_blocks.append(_EmbedSequential(*layers))
                skips.append(width)
            if level < len(mults) - 1:
                down = res(width, width, down=True) if cfg.resblock_updown else Downsample(width)
                self.input_blocks.append(_EmbedSequential(down))
                skips.append(width)
                ds *= 2

        self.middle_block = _EmbedSequential(res(width), attn(width, cfg.num_heads), res(width))

        # Decoder, deepest level first; every block consumes one skip.
        self.output_blocks = nn.ModuleList()
        for level in reversed(range(len(mults))):
            target = int(mults[level] * c0)
            for i in range(cfg.num_res_blocks + 1):
                layers = [res(width + skips.pop(), target)]
                width = target
                if ds in attention_ds:
                    layers.append(attn(width, heads_up))
                if level > 0 and i == cfg.num_res_blocks:
                    layers.append(res(width, width, up=True) if cfg.resblock_updown else Upsample(width))
                    ds //= 2
                self.output_blocks.append(_EmbedSequential(*layers))
        assert not skips and width == first_width

        self.out = nn.Sequential(
            _norm(width), nn.SiLU(), _zeroed(nn.Conv2d(first_width, self.out_channels, 3, padding=1))
        )
        if cfg.use_fp16:
            self.convert_to_fp16()

    @classmethod
    def from_flags(cls, flags: Mapping[str, Any]) -> ADMUNet:
        """Build from guided-diffusion flags (see :meth:`ADMConfig.from_flags`)."""
        return cls(ADMConfig.from_flags(flags))

    # ---------------------------------------------------------------- precision
    def _torso_convs(self) -> Iterable[nn.Module]:
        for part in (self.input_blocks, self.middle_block, self.output_blocks):
            for m in part.modules():
                if isinstance(m, (nn.Conv1d, nn.Conv2d)):
                    yield m

    def convert_to_fp16(self) -> ADMUNet:
        """Store and run the torso's convolutions in float16 (norms, embeddings, head stay float32)."""
        for m in self._torso_convs():
            m.to(torch.float16)
        return self

    def convert_to_fp32(self) -> ADMUNet:
        """Undo :meth:`convert_to_fp16`."""
        for m in self._torso_convs():
            m.to(torch.float32)
        return self

    def set_gradient_checkpointing(self, on: bool = True) -> ADMUNet:
        """Recompute each ResBlock's and attention block's activations in the backward pass (``on``) or store them.

        Only matters when gradients flow (training, or DPS-style guidance through the network):
        peak memory drops to about one block's activations, at the cost of one more forward per
        block in the backward pass. Outputs and gradients are unchanged.
        """
        self.config.use_checkpoint = bool(on)
        for m in self.modules():
            if isinstance(m, (ResBlock, AttentionBlock)):
                m.use_checkpoint = bool(on)
        return self

    @property
    def torso_dtype(self) -> torch.dtype:
        """The dtype the torso runs in (that of its first convolution)."""
        return self.input_blocks[0][0].weight.dtype

    # ---------------------------------------------------------------- forward
    def forward(self, x: Tensor, timesteps: Tensor | float, y: Tensor | None = None) -> Tensor:
        """Predict from noisy images.

        Args:
            x: ``(B, in_channels, H, W)`` with ``H, W`` multiples of :attr:`size_multiple`.
            timesteps: ``(B,)`` timesteps (fractional allowed) or one scalar for the batch.
            y: ``(B,)`` integer class labels; required exactly when the model is class-conditional.

        Returns:
            ``(B, out_channels, H, W)`` in the dtype of ``x``.

        Raises:
            ValueError: On a wrong shape, a missing/unexpected label or a size that is not a
                multiple of :attr:`size_multiple`.
        """
        t = check_unet_inputs("ADMUNet", x, timesteps, self.in_channels, self.size_multiple, len(self.config.channel_mults))
        b = x.shape[0]
        if (y is None) != (self.num_classes is None):
            need = "needs class labels y" if self.num_classes is not None else "is unconditional; y must be None"
            raise ValueError(f"this ADMUNet {need}")

        emb = self.time_embed(timestep_embedding(t, self.model_channels).to(self.time_embed[0].weight.dtype))
        if y is not None:
            y = torch.as_tensor(y, device=x.device)
            if y.shape != (b,):
                raise ValueError(f"class labels y must have shape ({b},), got {tuple(y.shape)}")
            emb = emb + self.label_emb(y)

        h = x.to(self.torso_dtype)
        skips = []
        for block in self.input_blocks:
            h = block(h, emb)
            skips.append(h)
        h = self.middle_block(h, emb)
        for block in self.output_blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
        return self.out(h.to(x.dtype))
