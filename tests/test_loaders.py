"""Checkpoint files -> priors: original layouts load strictly and give the in-memory model's output;
mismatches are listed; class labels; invkit safetensors metadata; diffusers folders; the CLI
`invkit solve --prior PATH` end to end."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from invkit.runner import build_prior
from invkit.io import read_image, write_image
from invkit.prior import alphas_bar_from_betas, ddpm_sigma_grid, linear_betas, vp_sigma_grid
from invkit.registry import get_registry
from invkit_priors.networks.adm import ADM_PRESETS, ADMConfig, ADMUNet
from invkit_priors.checkpoints.safe_load import CheckpointError, CheckpointMismatchError, PickledCodeError
from invkit_priors.networks.ddpm import DDPM_PRESETS, DDPMConfig, DDPMUNet
from invkit_priors.checkpoints.catalogue import load_catalogue
from invkit_priors.checkpoints.flags import parse_flags
from invkit_priors.checkpoints.load import detect_arch, infer_ddpm_config, load_checkpoint_prior
from invkit_priors.adapters.vp import VPDiffusionPrior
from _nets import randomize as _randomize

DATA = Path(__file__).parent / "data"
AB = alphas_bar_from_betas(linear_betas())
ADM_FLAGS = (
    "image_size=16,num_channels=32,channel_mult=1,2,num_res_blocks=1,attention_resolutions=8,"
    "num_head_channels=16,resblock_updown=True,learn_sigma=True"
)
DDPM_TINY = dict(ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,), resolution=8)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models: one intra-op thread (two threads on a busy 2-core machine are ~100x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Perturbed parameters (see _nets.randomize), in eval mode."""
    return _randomize(model, seed).eval()


def tiny_adm(seed: int = 1, flags: str = ADM_FLAGS, **overrides) -> ADMUNet:
    torch.manual_seed(0)
    return randomize(ADMUNet(ADMConfig.from_flags({**parse_flags(flags, "adm"), **overrides})), seed)


def tiny_ddpm(seed: int = 1, **overrides) -> DDPMUNet:
    torch.manual_seed(0)
    return randomize(DDPMUNet(DDPMConfig(**{**DDPM_TINY, **overrides})), seed)


def noisy(shape=(2, 3, 16, 16)) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(5))


def same_denoise(a, b, x: torch.Tensor, sigmas=(0.01, 0.4, 7.0)) -> None:
    for s in sigmas:
        torch.testing.assert_close(a.denoise(x, s), b.denoise(x, s), rtol=0, atol=0)


# ------------------------------------------------------------------ ADM and DDPM files
@pytest.mark.parametrize("layout", ["plain", "ema"])
def test_adm_file_loads_and_matches_in_memory_model(layout: str, tmp_path: Path) -> None:
    model = tiny_adm(seed=1)
    path = tmp_path / "adm.pt"
    if layout == "plain":
        torch.save(model.state_dict(), path)
    else:  # a training state: the EMA weights are what a sampler wants
        torch.save({"model": tiny_adm(seed=2).state_dict(), "ema": model.state_dict(), "step": 7}, path)
    ref = VPDiffusionPrior(model, AB, learned_sigma=True)
    prior = load_checkpoint_prior(path, flags=ADM_FLAGS)
    assert prior.provenance.arch == "adm" and prior.learned_sigma and prior.prediction == "epsilon"
    assert all(not p.requires_grad and p.device.type == "cpu" for p in prior.model.parameters())
    torch.testing.assert_close(prior.sigma_grid, ddpm_sigma_grid(), rtol=0, atol=0)
    x = noisy()
    same_denoise(prior, ref, x)
    # The same through the registry's `checkpoint` prior, as `--prior-arg` strings.
    built = get_registry().build("prior", "checkpoint", [f"path={path}", "arch=adm", f"flags={ADM_FLAGS}"])
    same_denoise(built, ref, x)


@pytest.mark.parametrize("layout", ["plain", "ema"])
def test_ddpm_file_loads_with_config_from_its_shapes(layout: str, tmp_path: Path) -> None:
    model = tiny_ddpm(seed=1)
    path = tmp_path / "ddpm.ckpt"
    state = model.state_dict()
    torch.save(state if layout == "plain" else {"ema": state, "model": tiny_ddpm(seed=2).state_dict()}, path)
    prior = load_checkpoint_prior(path)  # arch and configuration read off the file
    assert prior.provenance.arch == "ddpm" and prior.provenance.config_origin == "the parameter shapes"
    assert DDPMConfig.from_dict(prior.provenance.config) == DDPMConfig(**DDPM_TINY)
    same_denoise(prior, VPDiffusionPrior(model, AB), noisy((2, 3, 8, 8)))
    # Explicit configuration (k=v pairs) gives the same model.
    flags = "ch=32,ch_mult=1,2,num_res_blocks=1,attn_resolutions=4,resolution=8"
    same_denoise(load_checkpoint_prior(path, arch="ddpm", flags=flags), prior, noisy((1, 3, 8, 8)))


def test_ddpm_learned_sigma_and_shape_inference_on_the_manifest() -> None:
    manifest = json.loads((DATA / "ddpm_celebahq256.params.json").read_text())
    state = {k: torch.empty(shape, device="meta") for k, shape in manifest["params"].items()}
    assert detect_arch(state) == "ddpm"
    assert infer_ddpm_config(state) == DDPMConfig(**DDPM_PRESETS["celebahq256"])
    for name in ("adm_imagenet256_uncond", "adm_ffhq256"):
        keys = json.loads((DATA / f"{name}.params.json").read_text())["params"]
        assert detect_arch(keys) == "adm"


def test_ddpm_with_variance_channels(tmp_path: Path) -> None:
    model = tiny_ddpm(seed=3, out_ch=6)
    path = tmp_path / "ddpm6.pt"
    torch.save(model.state_dict(), path)
    prior = load_checkpoint_prior(path)
    assert prior.learned_sigma
    same_denoise(prior, VPDiffusionPrior(model, AB, learned_sigma=True), noisy((1, 3, 8, 8)))


def test_mismatched_files_list_the_keys(tmp_path: Path) -> None:
    path = tmp_path / "adm.pt"
    torch.save(tiny_adm().state_dict(), path)
    with pytest.raises(CheckpointMismatchError, match=r"missing: .*unexpected: .*ADM flags from flags") as info:
        load_checkpoint_prior(path, flags=ADM_FLAGS.replace("num_res_blocks=1", "num_res_blocks=2"))
    assert info.value.missing and info.value.unexpected
    with pytest.raises(CheckpointMismatchError, match=r"mis-shaped: .*file \[64, 32, 3, 3\] vs model"):
        load_checkpoint_prior(path, flags=ADM_FLAGS.replace("channel_mult=1,2", "channel_mult=1,3"))
    ddpm = tmp_path / "ddpm.pt"
    torch.save(tiny_ddpm().state_dict(), ddpm)
    with pytest.raises(CheckpointMismatchError, match=r"missing: time_embed.0.weight"):
        load_checkpoint_prior(ddpm, arch="adm", flags=ADM_FLAGS)
    with pytest.raises(CheckpointMismatchError, match="DDPM configuration from flags"):
        load_checkpoint_prior(ddpm, flags="celebahq256")


def test_adm_needs_flags_unless_the_catalogue_knows_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "tiny_adm_v1.pt"
    model = tiny_adm()
    torch.save(model.state_dict(), path)
    with pytest.raises(ValueError, match=r"need their architecture flags.*flags=PRESET"):
        load_checkpoint_prior(path)
    # An in-house catalogue entry (INVKIT_CATALOGUE) names the file: its flags are used.
    extra = tmp_path / "site.json"
    entry = {"name": "tiny-adm", "title": "test", "arch": "adm", "flags": ADM_FLAGS, "files": [{"path": "tiny_adm_v1.pt", "sources": []}]}
    extra.write_text(json.dumps({"format": "invkit-catalogue-v1", "entries": [entry]}))
    monkeypatch.setenv("INVKIT_CATALOGUE", str(extra))
    prior = load_checkpoint_prior(path)
    assert prior.provenance.config_origin == "catalogue entry tiny-adm"
    same_denoise(prior, VPDiffusionPrior(model, AB, learned_sigma=True), noisy())


def test_catalogue_flags_build_the_reference_manifests_exactly() -> None:
    cat = load_catalogue(None)
    manifests = {
        "adm-imagenet256-uncond": "adm_imagenet256_uncond",
        "adm-imagenet256-cond": "adm_imagenet256_cond",
        "adm-ffhq256": "adm_ffhq256",
        "ddpm-celebahq256": "ddpm_celebahq256",
    }
    for name, manifest in manifests.items():
        entry = cat[name]
        flags = parse_flags(entry.flags, entry.arch)
        expected = json.loads((DATA / f"{manifest}.params.json").read_text())["params"]
        with torch.device("meta"):
            if entry.arch == "adm":
                net: torch.nn.Module = ADMUNet(ADMConfig.from_flags({k: v for k, v in flags.items() if k != "use_fp16"}))
            else:
                net = DDPMUNet(DDPMConfig.from_dict(flags))
        got = {k: list(v.shape) for k, v in net.state_dict().items()}
        assert got == expected, name
    # Every ADM/DDPM entry's flags parse into a valid configuration.
    for entry in cat.values():
        if entry.arch == "adm":
            ADMConfig.from_flags(parse_flags(entry.flags, "adm"))
            assert entry.class_cond == ("--class_cond True" in entry.flags)
        elif entry.arch == "ddpm":
            DDPMConfig.from_dict(parse_flags(entry.flags, "ddpm"))


def test_flag_forms_agree() -> None:
    readme = "--attention_resolutions 16 --class_cond False --diffusion_steps 1000 --image_size 256 --learn_sigma True --num_channels 128 --num_head_channels 64 --num_res_blocks 1 --resblock_updown True --use_scale_shift_norm True"
    preset = ADMConfig.preset("ffhq256")
    for form in (readme, "ffhq256", "ffhq256,dropout=0.0", json.dumps(ADM_PRESETS["ffhq256"]), dict(ADM_PRESETS["ffhq256"])):
        flags = {k: v for k, v in parse_flags(form, "adm").items() if k not in ("diffusion_steps",)}
        assert ADMConfig.from_flags(flags) == preset, form
    assert parse_flags("image_size=64 channel_mult=1,2,2,2; num_channels=64", "adm") == {
        "image_size": "64", "channel_mult": "1,2,2,2", "num_channels": "64"
    }
    with pytest.raises(ValueError, match="unknown ADM preset 'nope'"):
        parse_flags("nope", "adm")


def test_schedules_from_flags(tmp_path: Path) -> None:
    path = tmp_path / "adm.pt"
    torch.save(tiny_adm().state_dict(), path)
    prior = load_checkpoint_prior(path, flags=ADM_FLAGS + ",noise_schedule=cosine,diffusion_steps=100")
    t = torch.arange(101, dtype=torch.float64) / 100
    f = torch.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
    betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)
    torch.testing.assert_close(prior.sigma_grid, vp_sigma_grid(alphas_bar_from_betas(betas)))
    short = load_checkpoint_prior(path, flags=ADM_FLAGS + ",diffusion_steps=250,predict_xstart=True")
    assert short.num_timesteps == 250 and short.prediction == "x0"
    torch.testing.assert_close(short.alphas_bar, alphas_bar_from_betas(torch.linspace(4e-4, 0.08, 250, dtype=torch.float64)))


# ------------------------------------------------------------------ class labels
def test_class_conditional_label_rules(tmp_path: Path) -> None:
    model = tiny_adm(class_cond=True, num_classes=10)
    path = tmp_path / "cond.pt"
    torch.save(model.state_dict(), path)
    flags = ADM_FLAGS + ",class_cond=True,num_classes=10"
    with pytest.raises(ValueError, match=r"class-conditional \(10 classes\); pass class_label=N"):
        load_checkpoint_prior(path, flags=flags)
    with pytest.raises(ValueError, match="out of range"):
        load_checkpoint_prior(path, flags=flags, class_label=10)
    prior = load_checkpoint_prior(path, flags=flags, class_label=3)
    x = noisy()
    same_denoise(prior, VPDiffusionPrior(model, AB, learned_sigma=True, class_label=3), x)
    other = VPDiffusionPrior(model, AB, learned_sigma=True, class_label=4)
    assert not torch.equal(prior.denoise(x, 0.5), other.denoise(x, 0.5))
    # Unconditional models refuse a label (ADM and DDPM alike).
    plain = tmp_path / "plain.pt"
    torch.save(tiny_adm().state_dict(), plain)
    with pytest.raises(ValueError, match="unconditional; drop class_label=3"):
        load_checkpoint_prior(plain, flags=ADM_FLAGS, class_label=3)
    ddpm = tmp_path / "ddpm.pt"
    torch.save(tiny_ddpm().state_dict(), ddpm)
    with pytest.raises(ValueError, match="unconditional"):
        get_registry().build("prior", "checkpoint", {"path": str(ddpm), "class_label": 1})


# ------------------------------------------------------------------ invkit's own files
def export_like_the_training_script(model: ADMUNet, path: Path, **meta_overrides: str) -> None:
    """The layout of scripts/train_default_prior.py `export`: float16 EMA weights + string metadata."""
    meta = {
        "format": "invkit-prior-v1",
        "architecture": "adm",
        "flags": json.dumps(model.config.to_flags()),
        "prediction": "epsilon",
        "schedule": json.dumps({"betas": "linear", "beta_start": 1e-4, "beta_end": 0.02, "steps": 1000}),
        "data_range": "[-1, 1]",
        "train_step": "123",
        **meta_overrides,
    }
    save_file({k: v.to(torch.float16).contiguous() for k, v in model.state_dict().items()}, str(path), metadata=meta)


def test_invkit_safetensors_load_with_no_arguments(tmp_path: Path) -> None:
    model = tiny_adm(seed=4, learn_sigma=False)
    path = tmp_path / "default.safetensors"
    export_like_the_training_script(model, path)
    prior = load_checkpoint_prior(path)
    assert prior.provenance.arch == "adm" and prior.provenance.config_origin == "metadata" and prior.provenance.metadata["train_step"] == "123"
    assert not prior.learned_sigma and prior.prediction == "epsilon"
    assert next(prior.model.parameters()).dtype == torch.float32  # fp16 file, fp32 model
    torch.testing.assert_close(prior.sigma_grid, ddpm_sigma_grid(), rtol=0, atol=0)
    ref = tiny_adm(seed=4, learn_sigma=False)
    with torch.no_grad():
        for p in ref.parameters():
            p.copy_(p.to(torch.float16).float())
    same_denoise(prior, VPDiffusionPrior(ref, AB), noisy())
    # `--prior FILE` with no --prior-arg at all.
    same_denoise(build_prior(get_registry(), str(path), []), prior, noisy((1, 3, 16, 16)))
    # Metadata decides the parameterisation and the schedule.
    other = tmp_path / "x0.safetensors"
    export_like_the_training_script(model, other, prediction="x0", schedule=json.dumps({"betas": "linear", "steps": 500}))
    p2 = load_checkpoint_prior(other)
    assert p2.prediction == "x0" and p2.num_timesteps == 500
    newer = tmp_path / "v2.safetensors"
    export_like_the_training_script(model, newer, format="invkit-prior-v2")
    with pytest.raises(CheckpointError, match="newer than this invkit"):
        load_checkpoint_prior(newer)


def test_unsafe_and_broken_files_are_refused(tmp_path: Path) -> None:
    class Payload:
        def __reduce__(self):  # pragma: no cover - never executed by the loader
            return (os.system, ("echo pwned",))

    evil = tmp_path / "evil.pt"
    torch.save({"state_dict": tiny_ddpm().state_dict(), "x": Payload()}, evil)
    with pytest.raises(PickledCodeError, match="pickled code"):
        load_checkpoint_prior(evil)
    good = tmp_path / "ddpm.pt"
    torch.save(tiny_ddpm().state_dict(), good)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint_prior(cut)
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_checkpoint_prior(tmp_path / "missing.pt")


# ------------------------------------------------------------------ diffusers (optional extra)
def _tiny_diffusers(folder: Path, prediction: str, layout: str, seed: int = 0):
    if os.environ.get("CI"):  # scripts/setup.sh installs the extra: without it CI is set up wrong, not a skip
        import diffusers
    else:
        diffusers = pytest.importorskip("diffusers", reason="the optional diffusers extra is not installed")
    torch.manual_seed(seed)
    unet = diffusers.UNet2DModel(
        sample_size=16, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=32, attention_head_dim=8,
    )
    randomize(unet, seed + 1)
    sched = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", prediction_type=prediction)
    if layout == "flat":  # google/ddpm-* repos: config.json, scheduler_config.json and weights side by side
        unet.save_pretrained(folder)
        sched.save_pretrained(folder)
    else:  # pipeline layout: unet/ and scheduler/
        unet.save_pretrained(folder / "unet")
        sched.save_pretrained(folder / "scheduler")
    return unet, sched


@pytest.mark.parametrize(("prediction", "layout"), [("epsilon", "flat"), ("sample", "pipeline"), ("v_prediction", "flat")])
def test_diffusers_folder_matches_manual_formula(prediction: str, layout: str, tmp_path: Path) -> None:
    unet, sched = _tiny_diffusers(tmp_path / "model", prediction, layout)
    prior = build_prior(get_registry(), str(tmp_path / "model"), [])  # a folder: arch=diffusers
    assert prior.provenance.arch == "diffusers" and prior.prediction == {"epsilon": "epsilon", "sample": "x0", "v_prediction": "v"}[prediction]
    ab = sched.alphas_cumprod.double()
    torch.testing.assert_close(prior.alphas_bar, ab)
    x = noisy()
    for t in (0, 250, 999):
        sigma = float(prior.sigma_grid[t])
        xp, sp = 2 * x.double() - 1, 2 * sigma
        # the network input as the adapter forms it in float32, so both see identical outputs
        x_vp32 = (2 * (x - 0.5)) * torch.tensor(1 / math.sqrt(1 + sp * sp), dtype=torch.float32)
        x_vp = x_vp32.double()
        with torch.no_grad():
            out = unet(x_vp32, torch.full((2,), float(t)), return_dict=False)[0].double()
        if prediction == "epsilon":
            x0 = xp - sp * out
        elif prediction == "sample":
            x0 = out
        else:
            x0 = ab[t].sqrt() * x_vp - (1 - ab[t]).sqrt() * out
        # float32 network output, amplified by sigma in the epsilon formula
        torch.testing.assert_close(prior.denoise(x, sigma).double(), x0 / 2 + 0.5, rtol=0, atol=1e-6 * (1 + sp))


def test_diffusers_errors(tmp_path: Path) -> None:
    _tiny_diffusers(tmp_path / "m", "epsilon", "flat")
    (tmp_path / "m" / "scheduler_config.json").unlink()
    with pytest.raises(CheckpointError, match="no scheduler_config.json"):
        load_checkpoint_prior(tmp_path / "m")
    with pytest.raises(ValueError, match="folders are diffusers models"):
        load_checkpoint_prior(tmp_path / "m", arch="adm")
    with pytest.raises(CheckpointError, match="pass the model folder"):
        load_checkpoint_prior(tmp_path / "m" / "diffusion_pytorch_model.safetensors")


# ------------------------------------------------------------------ CLI acceptance
def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("INVKIT_BLOCK_PLUGINS", "INVKIT_CATALOGUE")}
    env["OMP_NUM_THREADS"] = "1"  # tiny model: one thread is fastest, also on a busy machine
    return subprocess.run([sys.executable, "-m", "invkit", *args], capture_output=True, text=True, timeout=300, env=env)


def test_cli_solve_with_a_checkpoint_path_runs_ddrm(tmp_path: Path) -> None:
    flags = "image_size=32,num_channels=32,channel_mult=1,2,num_res_blocks=1,attention_resolutions=16,num_head_channels=16,learn_sigma=True"
    model = tiny_adm(seed=6, flags=flags)
    assert model.out[2].weight.abs().sum() > 0  # the zero-initialised output layer was perturbed
    ckpt = tmp_path / "adm_small.pt"
    torch.save(model.state_dict(), ckpt)
    clean = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    image = tmp_path / "clean.png"
    write_image(image, clean)
    meas = tmp_path / "blurred.png"
    blur = get_registry().build_operator("gaussian_blur", (3, 32, 32), ["sigma=1.0"])
    write_image(meas, blur.forward(clean.double()).float())
    out = tmp_path / "restored.png"
    proc = run_cli(
        "solve", "--prior", str(ckpt), "--prior-arg", "arch=adm", "--prior-arg", f"flags={flags}",
        "--operator", "gaussian_blur", "--arg", "sigma=1.0", "--input", str(meas), "--output", str(out),
        "--sigma-y", "0.02", "--steps", "3",
    )
    assert proc.returncode == 0, proc.stderr
    assert f"with prior {ckpt}" in proc.stdout
    restored = read_image(out).x
    assert restored.shape == (1, 3, 32, 32) and torch.isfinite(restored).all()
    # One-line errors: a missing file, a file without the flags ADM needs.
    for extra, message in (
        ([str(tmp_path / "nope.pt")], "prior checkpoint not found"),
        ([str(ckpt)], "need their architecture flags"),
    ):
        proc = run_cli("solve", "--prior", *extra, "--operator", "gaussian_blur", "--input", str(meas), "--output", str(tmp_path / "o.png"))
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "o.png").exists()


def test_the_checkpoint_factory_takes_flags_as_text_or_as_a_mapping(tmp_path: Path) -> None:
    from invkit_priors.plugin import checkpoint

    model = tiny_adm()
    path = tmp_path / "m.pt"
    torch.save(model.state_dict(), path)
    as_text = checkpoint(str(path), flags=ADM_FLAGS)
    as_mapping = checkpoint(str(path), flags=parse_flags(ADM_FLAGS, "adm"))  # a Python caller's dict is not made text
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    assert torch.equal(as_text.denoise(x, 0.2), as_mapping.denoise(x, 0.2))
    assert as_text.provenance.config == as_mapping.provenance.config
