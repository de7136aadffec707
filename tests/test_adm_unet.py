"""ADM U-Net: exact parameter layout of the public checkpoints, flags, and the forward pass."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from _nets import randomize
from invkit_priors.checkpoints.flags import parse_command_line
from invkit_priors.networks.adm import (
    ADM_PRESETS,
    AttentionBlock,
    ADMConfig,
    ADMUNet,
    GroupNorm32,
    timestep_embedding,
)

DATA = Path(__file__).parent / "data"

MANIFESTS = {
    "adm_imagenet256_uncond": ("imagenet256_uncond", 552.8),
    "adm_imagenet256_cond": ("imagenet256_cond", 553.8),
    "adm_ffhq256": ("ffhq256", 93.6),
}

TINY = dict(
    image_size=16, num_channels=32, channel_mult="1,2", num_res_blocks=1, attention_resolutions="8",
    num_head_channels=16, use_scale_shift_norm=True, resblock_updown=True, learn_sigma=True,
)


def manifest(name: str) -> dict:
    return json.loads((DATA / f"{name}.params.json").read_text())


def tiny(**overrides) -> ADMUNet:
    torch.manual_seed(0)
    return randomize(ADMUNet(ADMConfig.from_flags({**TINY, **overrides}))).eval()


@pytest.mark.parametrize("name", sorted(MANIFESTS))
def test_meta_build_matches_manifest_exactly(name: str) -> None:
    ref = manifest(name)
    with torch.device("meta"):
        model = ADMUNet(ADMConfig.from_flags(ref["config"]))
    got = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert list(got) == list(ref["params"])  # same keys, same order
    assert got == ref["params"]
    total = sum(math.prod(s) for s in ref["params"].values())
    assert sum(p.numel() for p in model.parameters()) == total
    assert round(total / 1e6, 1) == MANIFESTS[name][1]


@pytest.mark.parametrize("name", sorted(MANIFESTS))
def test_flags_round_trip_and_presets(name: str) -> None:
    ref = manifest(name)["config"]
    cfg = ADMConfig.from_flags(ref)
    assert cfg.to_flags() == ref
    assert ADMConfig.preset(MANIFESTS[name][0]) == cfg
    # Command-line strings as on the command line (all values strings) parse to the same thing.
    as_strings = {k: str(v) for k, v in ref.items()}
    assert ADMConfig.from_flags(as_strings) == cfg


def test_readme_command_line_flags() -> None:
    flags = (
        "--attention_resolutions 32,16,8 --class_cond False --diffusion_steps 1000 --image_size 256 "
        "--learn_sigma True --noise_schedule linear --num_channels 256 --num_head_channels 64 "
        "--num_res_blocks 2 --resblock_updown True --use_fp16 True --use_scale_shift_norm True"
    )
    cfg = ADMConfig.from_flags(parse_command_line(flags))
    ref = manifest("adm_imagenet256_uncond")["config"]
    assert cfg.to_flags() == {**ref, "use_fp16": True}
    assert cfg.channel_mults == (1, 1, 2, 2, 4, 4)
    assert cfg.attention_ds == (8, 16, 32)
    assert cfg.out_channels == 6


def test_flag_errors_and_defaults() -> None:
    with pytest.raises(ValueError, match="unknown ADM flag.*num_chanels"):
        ADMConfig.from_flags({"num_chanels": 64})
    with pytest.raises(ValueError, match="learn_sigma"):
        ADMConfig.from_flags({"learn_sigma": "maybe"})
    with pytest.raises(ValueError, match="no default channel_mult for image_size 96"):
        ADMConfig(image_size=96)
    with pytest.raises(ValueError, match="GroupNorm"):
        ADMConfig(num_channels=48, channel_mult="1,2")
    assert ADMConfig(image_size=64).channel_mults == (1, 2, 3, 4)
    assert ADMConfig(image_size=128).channel_mults == (1, 1, 2, 3, 4)
    assert ADMConfig(image_size=512, num_channels=256).channel_mults == (0.5, 1, 1, 2, 2, 4, 4)
    assert ADMConfig(channel_mult=(1, 2, 2)).channel_mult == "1,2,2"
    assert ADMConfig.small(num_res_blocks=2).num_res_blocks == 2


def test_small_preset_size() -> None:
    cfg = ADMConfig.small()
    assert cfg.to_flags() == ADM_PRESETS["small"]
    with torch.device("meta"):
        model = ADMUNet(cfg)
    n = sum(p.numel() for p in model.parameters())
    assert 2e6 <= n <= 10e6
    assert model.out_channels == 3 and model.size_multiple == 8


def test_timestep_embedding_formula() -> None:
    t = torch.tensor([0.0, 1.0, 37.5, 999.0])
    dim = 10
    emb = timestep_embedding(t, dim)
    half = dim // 2
    for i, ti in enumerate(t.tolist()):
        for k in range(half):
            f = 10000.0 ** (-k / half)
            assert emb[i, k].item() == pytest.approx(math.cos(ti * f), abs=2e-4)
            assert emb[i, half + k].item() == pytest.approx(math.sin(ti * f), abs=2e-4)
    odd = timestep_embedding(t, 7)
    assert odd.shape == (4, 7) and torch.all(odd[:, -1] == 0)


def test_groupnorm32_computes_in_float32() -> None:
    norm = GroupNorm32(32, 64)
    x = (torch.randn(2, 64, 4, 4) * 300).half()
    out = norm(x)
    assert out.dtype == torch.float16
    ref = F.group_norm(x.float(), 32, norm.weight, norm.bias, norm.eps)
    torch.testing.assert_close(out.float(), ref, atol=2e-3, rtol=2e-3)


def reference_attention(qkv: torch.Tensor, heads: int, new_order: bool) -> torch.Tensor:
    """Attention written out with explicit softmax, from the documented channel layouts."""
    b, width, length = qkv.shape
    ch = width // (3 * heads)
    if new_order:  # channels ordered (q|k|v), each (heads, ch)
        q, k, v = (part.reshape(b * heads, ch, length) for part in qkv.chunk(3, dim=1))
    else:  # channels ordered (heads, q|k|v, ch)
        q, k, v = qkv.reshape(b * heads, 3 * ch, length).split(ch, dim=1)
    w = torch.softmax(torch.einsum("nct,ncs->nts", q, k) / math.sqrt(ch), dim=-1)
    return torch.einsum("nts,ncs->nct", w, v).reshape(b, heads * ch, length)


@pytest.mark.parametrize("new_order", [False, True])
def test_attention_block_orders(new_order: bool) -> None:
    torch.manual_seed(1)
    block = randomize(AttentionBlock(64, num_head_channels=16, use_new_attention_order=new_order))
    x = torch.randn(2, 64, 3, 5)
    flat = x.reshape(2, 64, -1)
    qkv = block.qkv(block.norm(flat))
    expected = (flat + block.proj_out(reference_attention(qkv, 4, new_order))).reshape(x.shape)
    torch.testing.assert_close(block(x), expected, atol=1e-5, rtol=1e-5)
    # The two orders read the same weights differently.
    other = AttentionBlock(64, num_head_channels=16, use_new_attention_order=not new_order)
    other.load_state_dict(block.state_dict())
    assert not torch.allclose(other(x), block(x), atol=1e-4)


def test_fresh_model_outputs_zero_like_the_original() -> None:
    model = ADMUNet(ADMConfig.from_flags(TINY))
    out = model(torch.randn(1, 3, 16, 16), torch.tensor([3.0]))
    assert out.shape == (1, 6, 16, 16) and torch.all(out == 0)


def test_fully_convolutional_any_multiple() -> None:
    model = tiny()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 48), torch.tensor([10.0, 500.5]))
        assert out.shape == (2, 6, 32, 48) and torch.isfinite(out).all()
        scalar_t = model(torch.randn(1, 3, 16, 8), 7)
        assert scalar_t.shape == (1, 6, 16, 8)
    with pytest.raises(ValueError, match="divisible by 2"):
        model(torch.randn(1, 3, 16, 15), torch.tensor([1.0]))
    with pytest.raises(ValueError, match="expects"):
        model(torch.randn(1, 4, 16, 16), torch.tensor([1.0]))


def test_small_preset_runs_at_non_square_size() -> None:
    torch.manual_seed(0)
    model = randomize(ADMUNet(ADMConfig.small())).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 32, 48), torch.tensor([250.0]))
    assert out.shape == (1, 3, 32, 48) and torch.isfinite(out).all()


def test_class_conditioning() -> None:
    model = tiny(class_cond=True)
    assert model.label_emb.weight.shape == (1000, 128)
    x = torch.randn(2, 3, 8, 8)
    t = torch.tensor([5.0, 5.0])
    with torch.no_grad():
        a = model(x, t, torch.tensor([1, 1]))
        b = model(x, t, torch.tensor([1, 2]))
    torch.testing.assert_close(a[0], b[0])
    assert not torch.allclose(a[1], b[1])
    with pytest.raises(ValueError, match="needs class labels"):
        model(x, t)
    with pytest.raises(ValueError, match="unconditional"):
        tiny()(x, t, torch.tensor([0, 0]))


def test_timestep_changes_output_and_batch_independence() -> None:
    model = tiny()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        both = model(x, torch.tensor([10.0, 900.0]))
        first = model(x[:1], torch.tensor([10.0]))
        second = model(x[1:], torch.tensor([900.0]))
    torch.testing.assert_close(both, torch.cat([first, second]), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(first, model(x[:1], torch.tensor([11.0])).detach())


def test_learn_sigma_and_plain_variants() -> None:
    assert tiny(learn_sigma=False).out_channels == 3
    plain = ADMUNet(ADMConfig.from_flags({**TINY, "resblock_updown": False, "use_scale_shift_norm": False}))
    keys = plain.state_dict().keys()
    assert "input_blocks.2.0.op.weight" in keys  # strided conv downsampling
    assert any(k.endswith(".conv.weight") for k in keys)  # conv upsampling
    assert plain.input_blocks[1][0].emb_layers[1].weight.shape == (32, 128)  # additive embedding
    with torch.no_grad():
        assert plain(torch.randn(1, 3, 16, 16), torch.tensor([1.0])).shape == (1, 6, 16, 16)


def test_fp16_torso() -> None:
    model = tiny()
    x = torch.randn(1, 3, 8, 8)
    t = torch.tensor([100.0])
    with torch.no_grad():
        ref = model(x, t)
        model.convert_to_fp16()
        assert model.torso_dtype == torch.float16
        assert model.input_blocks[1][0].in_layers[2].weight.dtype == torch.float16
        assert model.input_blocks[1][0].in_layers[0].weight.dtype == torch.float32  # norms stay fp32
        assert model.time_embed[0].weight.dtype == torch.float32 and model.out[2].weight.dtype == torch.float32
        half = model(x, t)
        assert half.dtype == torch.float32
        torch.testing.assert_close(half, ref, atol=2e-2, rtol=2e-2)
        model.convert_to_fp32()  # back to float32 storage (the weights keep their fp16 rounding)
        assert model.torso_dtype == torch.float32
        torch.testing.assert_close(model(x, t), half, atol=2e-2, rtol=2e-2)
    built = ADMUNet(ADMConfig.from_flags({**TINY, "use_fp16": True}))
    assert built.torso_dtype == torch.float16


def test_gradient_checkpointing_same_gradients() -> None:
    x = torch.randn(1, 3, 8, 8)
    t = torch.tensor([42.0])
    grads = []
    for flag in (False, True):
        model = tiny(use_checkpoint=flag)
        model(x, t).square().sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    torch.testing.assert_close(grads[0], grads[1])


def test_head_counts_from_num_heads_and_upsample() -> None:
    model = ADMUNet(ADMConfig.from_flags({**TINY, "num_head_channels": -1, "num_heads": 4, "num_heads_upsample": 2}))
    encoder = [m.num_heads for m in model.input_blocks.modules() if isinstance(m, AttentionBlock)]
    decoder = [m.num_heads for m in model.output_blocks.modules() if isinstance(m, AttentionBlock)]
    assert encoder == [4] and model.middle_block[1].num_heads == 4 and decoder == [2, 2]
    by_channels = ADMUNet(ADMConfig.from_flags(TINY))
    assert {m.num_heads for m in by_channels.modules() if isinstance(m, AttentionBlock)} == {4}  # 64 / 16


@pytest.mark.skipif(not hasattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu"), reason="this torch has no CPU flash attention")
@pytest.mark.parametrize("arch", ["adm", "ddpm"])
def test_attention_takes_the_flash_kernel_not_the_quadratic_memory_fallback(arch: str) -> None:
    """Strided q/k/v make torch fall back to bmm + softmax with a (T, T) matrix per head."""
    from torch.profiler import profile

    from invkit_priors.networks.ddpm import DDPMConfig, DDPMUNet

    torch.manual_seed(0)
    if arch == "adm":
        net = ADMUNet(ADMConfig.from_flags(dict(image_size=16, num_channels=32, channel_mult="1,2", num_res_blocks=1,
                                                 attention_resolutions="2", num_head_channels=16))).eval()
    else:
        net = DDPMUNet(DDPMConfig(ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(8,), resolution=16)).eval()
    with torch.inference_mode(), profile() as prof:
        net(torch.randn(1, 3, 16, 16), torch.tensor([10.0]))
    ops = {e.key for e in prof.key_averages()}
    assert "aten::_scaled_dot_product_flash_attention_for_cpu" in ops
    assert "aten::_softmax" not in ops


def test_the_network_takes_configurations_not_text() -> None:
    with pytest.raises(TypeError, match=r"ADMConfig: got text '--image_size 64'; read it with invkit_priors.checkpoints.flags.parse_flags"):
        ADMUNet("--image_size 64")  # type: ignore[arg-type]


def test_gradient_checkpointing_changes_neither_outputs_nor_gradients(monkeypatch) -> None:
    import invkit_priors.networks.adm as adm
    from invkit.prior import alphas_bar_from_betas, linear_betas
    from invkit_priors.adapters.vp import VPDiffusionPrior

    net = randomize(ADMUNet(ADMConfig.from_flags(TINY))).double().eval()
    prior = VPDiffusionPrior(net, alphas_bar_from_betas(linear_betas()), learned_sigma=True)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def grad() -> tuple[torch.Tensor, torch.Tensor]:
        xr = x.clone().requires_grad_(True)
        out = prior.denoise(xr, 0.3)
        (g,) = torch.autograd.grad(out.square().sum(), xr)
        return out.detach(), g

    calls = []
    real = adm._grad_checkpoint
    monkeypatch.setattr(adm, "_grad_checkpoint", lambda *a, **k: calls.append(1) or real(*a, **k))
    plain = grad()
    assert not calls
    prior.set_gradient_checkpointing(True)
    blocks = [m for m in net.modules() if hasattr(m, "use_checkpoint")]
    assert blocks and all(m.use_checkpoint for m in blocks) and net.config.use_checkpoint
    checkpointed = grad()
    assert len(calls) >= len(blocks)  # every block went through torch.utils.checkpoint (not merely flagged)
    with torch.no_grad():
        before = len(calls)
        prior.denoise(x, 0.3)
    assert len(calls) == before  # no gradients: nothing to checkpoint
    assert torch.equal(plain[0], checkpointed[0]) and torch.allclose(plain[1], checkpointed[1], rtol=1e-12, atol=1e-14)
    prior.set_gradient_checkpointing(False)
    assert not any(m.use_checkpoint for m in blocks)
    with pytest.raises(ValueError, match="has no gradient checkpointing"):
        VPDiffusionPrior(lambda x, t: torch.zeros_like(x), alphas_bar_from_betas(linear_betas())).set_gradient_checkpointing(True)


def test_the_default_prior_takes_grad_checkpoint_from_the_registry() -> None:
    import invkit

    def flags(prior) -> set[bool]:
        return {m.use_checkpoint for m in prior.rgb.model.modules() if hasattr(m, "use_checkpoint")}

    assert flags(invkit.get_registry().build("prior", "default", ["grad_checkpoint=true"])) == {True}
    assert flags(invkit.get_registry().build("prior", "default", [])) == {False}
