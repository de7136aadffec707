"""The DDPM U-Net of Ho et al. (2020), in the layout of the PyTorch port used by DDIM/DDRM/SDEdit.

:class:`DDPMUNet` is our own implementation. Built from a :class:`DDPMConfig` (the ``model``
section of those projects' YAML configs) it has exactly the parameter names and shapes of the
published PyTorch checkpoints — CelebA-HQ 256 ``celeba_hq.ckpt`` (113.7 M parameters) and the
LSUN church/bedroom/cat models share this layout — so their state dicts load strictly.

Layout (parameter names in brackets)::

    temb        sinusoidal(t, ch) -> Linear [temb.dense.0] -> swish -> Linear [temb.dense.1]
    conv_in     3x3 conv in -> ch
    down.i      per level i: num_res_blocks x (ResnetBlock [block.j] [+ AttnBlock attn.j]),
                then (except the last level) downsample [downsample.conv]
    mid         block_1, attn_1, block_2
    up.i        per level (deepest first, stored at index i): num_res_blocks + 1 x (concat skip,
                ResnetBlock [+ AttnBlock]), then (except level 0) upsample [upsample.conv]
    norm_out    GroupNorm, swish, conv_out 3x3 -> out_ch

ResnetBlock: ``norm1``, ``conv1``, ``temb_proj`` (added after conv1), ``norm2``, dropout,
``conv2``, and ``nin_shortcut`` (1x1) or ``conv_shortcut`` (3x3) when channels change. AttnBlock:
``norm`` and 1x1 convolutions ``q``, ``k``, ``v``, ``proj_out`` (single head). GroupNorm has 32
groups and eps 1e-6; the downsampling conv pads one pixel on the right/bottom only, as in the
original TensorFlow code.

The network is fully convolutional (``H``, ``W`` multiples of ``2 ** (levels - 1)``); attention
is placed by downsampling factor ``resolution // r`` for each ``r`` in ``attn_resolutions``.

Example:
    >>> import torch
    >>> from invkit_priors.networks.ddpm import DDPMConfig, DDPMUNet
    >>> net = DDPMUNet(DDPMConfig(ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(8,), resolution=16))
    >>> net(torch.zeros(1, 3, 16, 24), torch.tensor([500.0])).shape
    torch.Size([1, 3, 16, 24])
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from invkit.params import parse_bool

from .inputs import check_unet_inputs, network_config

__all__ = ["DDPMConfig", "DDPMUNet", "DDPM_PRESETS", "ddpm_timestep_embedding"]

#: Keys of the DDIM/DDRM ``model:`` config section that do not describe the network.
_IGNORED_KEYS = frozenset({"type", "var_type", "ema_rate", "ema"})


@dataclass
class DDPMConfig:
    """Architecture of a DDPM U-Net, named as in the DDIM/DDRM YAML configs.

    Attributes:
        ch: Base channel count (the time embedding has ``4 ch``).
        ch_mult: Channel multipliers per level.
        num_res_blocks: ResnetBlocks per level on the way down (one more on the way up).
        attn_resolutions: Feature-map sizes (at ``resolution``) with attention.
        resolution: Training resolution (``data.image_size`` in those configs).
        resamp_with_conv: Learned convolutions in the up/downsampling layers.
        out_ch: Output channels.
        in_channels: Input channels.
        dropout: Dropout rate inside the ResnetBlocks.
    """

    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4, 4)
    num_res_blocks: int = 2
    attn_resolutions: tuple[int, ...] = (16,)
    resolution: int = 256
    resamp_with_conv: bool = True
    out_ch: int = 3
    in_channels: int = 3
    dropout: float = 0.0

    def __post_init__(self) -> None:
        self.ch_mult = tuple(int(m) for m in _seq(self.ch_mult))
        self.attn_resolutions = tuple(int(r) for r in _seq(self.attn_resolutions))
        for name in ("ch", "num_res_blocks", "resolution", "out_ch", "in_channels"):
            setattr(self, name, int(getattr(self, name)))
        self.dropout = float(self.dropout)
        self.resamp_with_conv = parse_bool(self.resamp_with_conv, "DDPM config 'resamp_with_conv'")
        if not self.ch_mult or self.ch <= 0 or self.num_res_blocks < 0:
            raise ValueError(f"invalid DDPM sizes: {self}")
        bad = sorted(w for w in {self.ch * m for m in self.ch_mult} | {self.ch} if w % 32)
        if bad:
            raise ValueError(f"DDPM channel counts {bad} are not divisible by the 32 GroupNorm groups")
        if any(r <= 0 for r in self.attn_resolutions):
            raise ValueError(f"attn_resolutions must be positive, got {self.attn_resolutions}")

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> DDPMConfig:
        """Build from a config mapping (the YAML ``model:`` section; ``image_size`` means ``resolution``).

        Keys that do not describe the network (``type``, ``var_type``, ``ema_rate``, ``ema``) are
        ignored; other unknown keys raise ``ValueError``.
        """
        known = {f.name for f in fields(cls)}
        items = {("resolution" if k == "image_size" else k): v for k, v in config.items()}
        unknown = sorted(k for k in items if k not in known and k not in _IGNORED_KEYS)
        if unknown:
            raise ValueError(f"unknown DDPM config key(s) {unknown}; known: {sorted(known)}")
        return cls(**{k: v for k, v in items.items() if k in known})

    def to_dict(self) -> dict[str, Any]:
        """The configuration as a plain dict (lists for the sequences)."""
        out = dataclasses.asdict(self)
        out["ch_mult"] = list(self.ch_mult)
        out["attn_resolutions"] = list(self.attn_resolutions)
        return out

    @property
    def attention_ds(self) -> tuple[int, ...]:
        """Downsampling factors with attention: ``resolution // r``."""
        return tuple(self.resolution // r for r in self.attn_resolutions)


def _seq(value: Any) -> Sequence[Any]:
    if isinstance(value, str):
        return [v for v in value.replace("(", "").replace(")", "").replace("[", "").replace("]", "").split(",") if v.strip()]
    if isinstance(value, int):
        return [value]
    return list(value)


#: The configuration of the public CelebA-HQ 256 checkpoint (``tests/data/ddpm_celebahq256.params.json``).
DDPM_PRESETS: dict[str, dict[str, Any]] = {
    "celebahq256": dict(
        ch=128, ch_mult=(1, 1, 2, 2, 4, 4), num_res_blocks=2, attn_resolutions=(16,), resolution=256,
        resamp_with_conv=True, out_ch=3,
    ),
}


def ddpm_timestep_embedding(timesteps: Tensor, dim: int) -> Tensor:
    """Sinusoidal embedding in DDPM's layout: ``[sin(t f_k)]_k`` then ``[cos(t f_k)]_k``.

    ``f_k = 10000 ** (-k / (h - 1))`` for ``k < h = dim // 2`` (note ``h - 1``, unlike ADM);
    odd ``dim`` is zero-padded.

    Args:
        timesteps: ``(B,)`` timesteps (fractional allowed).
        dim: Embedding width.

    Returns:
        ``(B, dim)`` float32 embedding.
    """
    half = dim // 2
    k = torch.arange(half, dtype=torch.float32, device=timesteps.device)
    freqs = torch.exp(k * -(math.log(10000.0) / max(half - 1, 1)))
    phase = timesteps.to(torch.float32)[:, None] * freqs[None, :]
    emb = torch.cat([torch.sin(phase), torch.cos(phase)], dim=1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, channels, eps=1e-6)


class _Up(nn.Module):
    def __init__(self, channels: int, with_conv: bool) -> None:
        super().__init__()
        if with_conv:
            self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return self.conv(x) if hasattr(self, "conv") else x


class _Down(nn.Module):
    def __init__(self, channels: int, with_conv: bool) -> None:
        super().__init__()
        if with_conv:
            self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: Tensor) -> Tensor:
        if hasattr(self, "conv"):
            return self.conv(F.pad(x, (0, 1, 0, 1)))
        return F.avg_pool2d(x, 2)


class ResnetBlock(nn.Module):
    """Residual block with an additive time embedding (DDPM's layout)."""

    def __init__(self, in_channels: int, out_channels: int, temb_channels: int, dropout: float, conv_shortcut: bool = False) -> None:
        super().__init__()
        self.norm1 = _norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.temb_proj = nn.Linear(temb_channels, out_channels)
        self.norm2 = _norm(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        # The shortcut's parameter name says which kind it is: nin_shortcut (1x1) or conv_shortcut (3x3).
        self._shortcut = ""
        if in_channels != out_channels:
            self._shortcut = "conv_shortcut" if conv_shortcut else "nin_shortcut"
            k = 3 if conv_shortcut else 1
            self.add_module(self._shortcut, nn.Conv2d(in_channels, out_channels, k, padding=k // 2))

    def forward(self, x: Tensor, temb: Tensor) -> Tensor:
        """Apply to ``x`` ``(B, C, H, W)`` given ``temb`` ``(B, E)``."""
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.temb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        if self._shortcut:
            x = self.get_submodule(self._shortcut)(x)
        return x + h


class AttnBlock(nn.Module):
    """Single-head residual self-attention with 1x1-conv projections."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = _norm(channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        """Apply to ``(B, C, H, W)``."""
        b, c, height, width = x.shape
        h = self.norm(x)
        # (B, 1, HW, C) tokens; one head with scale 1/sqrt(C). Contiguous, so that torch picks its
        # flash kernel rather than the O((HW)²)-memory math fallback (see invkit_priors.networks.adm._attention).
        q, k, v = (proj(h).reshape(b, 1, c, height * width).transpose(-1, -2).contiguous() for proj in (self.q, self.k, self.v))
        out = F.scaled_dot_product_attention(q, k, v)
        out = out.transpose(-1, -2).reshape(b, c, height, width)
        return x + self.proj_out(out)


class DDPMUNet(nn.Module):
    """The DDPM U-Net; ``forward(x, t)`` returns the noise prediction ``(B, out_ch, H, W)``.

    Args:
        config: A :class:`DDPMConfig` or a mapping for :meth:`DDPMConfig.from_dict`.

    Attributes:
        config: The configuration.
        in_channels: Input channels.
        out_channels: Output channels.
        image_size: Training resolution (preferred size).
        size_multiple: ``2 ** (levels - 1)``; ``H`` and ``W`` must be multiples of it.
    """

    def __init__(self, config: DDPMConfig | Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.config = network_config(config, DDPMConfig, DDPMConfig.from_dict)
        cfg = self.config
        ch, mults = cfg.ch, cfg.ch_mult
        temb_ch = 4 * ch
        attn_ds = set(cfg.attention_ds)
        levels = len(mults)
        self.ch = ch
        self.in_channels = cfg.in_channels
        self.out_channels = cfg.out_ch
        self.image_size = cfg.resolution
        self.size_multiple = 2 ** (levels - 1)
        self._attn_levels = [2**i in attn_ds for i in range(levels)]

        self.temb = nn.Module()
        self.temb.dense = nn.ModuleList([nn.Linear(ch, temb_ch), nn.Linear(temb_ch, temb_ch)])
        self.conv_in = nn.Conv2d(cfg.in_channels, ch, 3, padding=1)

        skips = [ch]
        width = ch
        self.down = nn.ModuleList()
        for i in range(levels):
            stage = nn.Module()
            stage.block = nn.ModuleList()
            stage.attn = nn.ModuleList()
            for _ in range(cfg.num_res_blocks):
                stage.block.append(ResnetBlock(width, ch * mults[i], temb_ch, cfg.dropout))
                width = ch * mults[i]
                if self._attn_levels[i]:
                    stage.attn.append(AttnBlock(width))
                skips.append(width)
            if i < levels - 1:
                stage.downsample = _Down(width, cfg.resamp_with_conv)
                skips.append(width)
            self.down.append(stage)

        self.mid = nn.Module()
        self.mid.block_1 = ResnetBlock(width, width, temb_ch, cfg.dropout)
        self.mid.attn_1 = AttnBlock(width)
        self.mid.block_2 = ResnetBlock(width, width, temb_ch, cfg.dropout)

        ups: list[nn.Module] = []
        for i in reversed(range(levels)):
            stage = nn.Module()
            stage.block = nn.ModuleList()
            stage.attn = nn.ModuleList()
            for _ in range(cfg.num_res_blocks + 1):
                stage.block.append(ResnetBlock(width + skips.pop(), ch * mults[i], temb_ch, cfg.dropout))
                width = ch * mults[i]
                if self._attn_levels[i]:
                    stage.attn.append(AttnBlock(width))
            if i > 0:
                stage.upsample = _Up(width, cfg.resamp_with_conv)
            ups.insert(0, stage)
        assert not skips
        self.up = nn.ModuleList(ups)

        self.norm_out = _norm(width)
        self.conv_out = nn.Conv2d(width, cfg.out_ch, 3, padding=1)

    def forward(self, x: Tensor, t: Tensor | float) -> Tensor:
        """Predict the noise.

        Args:
            x: ``(B, in_channels, H, W)``, ``H, W`` multiples of :attr:`size_multiple`.
            t: ``(B,)`` timesteps (fractional allowed) or a scalar for the batch.

        Returns:
            ``(B, out_ch, H, W)``.
        """
        t = check_unet_inputs("DDPMUNet", x, t, self.in_channels, self.size_multiple, len(self.config.ch_mult))

        dense = self.temb.dense
        temb = dense[1](F.silu(dense[0](ddpm_timestep_embedding(t, self.ch).to(dense[0].weight.dtype))))

        hs = [self.conv_in(x)]
        for i, stage in enumerate(self.down):
            for j, block in enumerate(stage.block):
                h = block(hs[-1], temb)
                if self._attn_levels[i]:
                    h = stage.attn[j](h)
                hs.append(h)
            if hasattr(stage, "downsample"):
                hs.append(stage.downsample(hs[-1]))

        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(hs[-1], temb)), temb)

        for i in reversed(range(len(self.up))):
            stage = self.up[i]
            for j, block in enumerate(stage.block):
                h = block(torch.cat([h, hs.pop()], dim=1), temb)
                if self._attn_levels[i]:
                    h = stage.attn[j](h)
            if hasattr(stage, "upsample"):
                h = stage.upsample(h)

        return self.conv_out(F.silu(self.norm_out(h)))
