"""DDPM U-Net (DDIM/DDRM/SDEdit layout): exact parameter layout of celeba_hq.ckpt and the forward pass."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from invkit_priors.networks.ddpm import DDPM_PRESETS, AttnBlock, DDPMConfig, DDPMUNet, ddpm_timestep_embedding
from _nets import randomize

DATA = Path(__file__).parent / "data"

TINY = dict(ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,), resolution=8)


def test_meta_build_matches_manifest_exactly() -> None:
    ref = json.loads((DATA / "ddpm_celebahq256.params.json").read_text())
    cfg = DDPMConfig.from_dict(ref["config"])
    assert cfg == DDPMConfig.from_dict(DDPM_PRESETS["celebahq256"])
    with torch.device("meta"):
        model = DDPMUNet(cfg)
    got = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert list(got) == list(ref["params"])
    assert got == ref["params"]
    total = sum(math.prod(s) for s in ref["params"].values())
    assert sum(p.numel() for p in model.parameters()) == total
    assert round(total / 1e6, 1) == 113.7


def test_config_from_yaml_like_dict() -> None:
    yaml_model = dict(
        type="simple", in_channels=3, out_ch=3, ch=128, ch_mult=[1, 1, 2, 2, 4, 4], num_res_blocks=2,
        attn_resolutions=[16], dropout=0.0, var_type="fixedsmall", ema_rate=0.999, ema=True,
        resamp_with_conv=True, image_size=256,
    )
    cfg = DDPMConfig.from_dict(yaml_model)
    assert cfg.resolution == 256 and cfg.attention_ds == (16,)
    assert DDPMConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown DDPM config key.*chanels"):
        DDPMConfig.from_dict({"chanels": 3})
    with pytest.raises(ValueError, match="GroupNorm"):
        DDPMConfig(ch=48)


def test_timestep_embedding_formula() -> None:
    t = torch.tensor([0.0, 3.0, 999.0])
    dim = 8
    emb = ddpm_timestep_embedding(t, dim)
    half = dim // 2
    for i, ti in enumerate(t.tolist()):
        for k in range(half):
            f = math.exp(-math.log(10000.0) * k / (half - 1))
            assert emb[i, k].item() == pytest.approx(math.sin(ti * f), abs=2e-4)
            assert emb[i, half + k].item() == pytest.approx(math.cos(ti * f), abs=2e-4)


def test_attention_block_matches_explicit_softmax() -> None:
    torch.manual_seed(0)
    block = randomize(AttnBlock(32))
    x = torch.randn(2, 32, 3, 4)
    h = block.norm(x)
    q, k, v = (m(h).reshape(2, 32, 12) for m in (block.q, block.k, block.v))
    w = torch.softmax(torch.einsum("bci,bcj->bij", q, k) / math.sqrt(32), dim=-1)
    attended = torch.einsum("bij,bcj->bci", w, v).reshape(2, 32, 3, 4)
    torch.testing.assert_close(block(x), x + block.proj_out(attended), atol=1e-5, rtol=1e-5)


def test_forward_fully_convolutional() -> None:
    torch.manual_seed(0)
    model = randomize(DDPMUNet(DDPMConfig(**TINY))).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 8, 12), torch.tensor([1.0, 700.0]))
        assert out.shape == (2, 3, 8, 12) and torch.isfinite(out).all()
        assert model(torch.randn(1, 3, 4, 6), 5).shape == (1, 3, 4, 6)
    with pytest.raises(ValueError, match="divisible by 2"):
        model(torch.randn(1, 3, 8, 7), torch.tensor([1.0]))


def test_downsample_pads_right_and_bottom_only() -> None:
    torch.manual_seed(0)
    model = DDPMUNet(DDPMConfig(**TINY))
    down = model.down[0].downsample
    x = torch.randn(1, 32, 8, 8)
    expected = F.conv2d(F.pad(x, (0, 1, 0, 1)), down.conv.weight, down.conv.bias, stride=2)
    torch.testing.assert_close(down(x), expected)
    no_conv = DDPMUNet(DDPMConfig(**TINY, resamp_with_conv=False))
    assert not any("sample" in k for k in no_conv.state_dict())


def test_shortcut_names() -> None:
    model = DDPMUNet(DDPMConfig(**TINY))
    keys = set(model.state_dict())
    assert "down.1.block.0.nin_shortcut.weight" in keys  # 32 -> 64 channels
    assert "down.0.block.0.nin_shortcut.weight" not in keys
    assert {"mid.block_1.conv1.weight", "mid.attn_1.q.weight", "up.0.block.1.nin_shortcut.weight"} <= keys
