"""The runner (invkit.runner): one restore loop for the CLI, Python users and the benchmarks.

* `invkit solve --simulate --seed S` and the default-prior benchmark's own per-case function draw
  identical samples (16-bit outputs byte for byte), the same posterior mean, and report exactly
  equal PSNR/SSIM (one seeding rule, one metrics module);
* the runner restores a folder from Python, reporting progress through its callback;
* every option set from Python is checked (type and range) before any work.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from invkit.cli import main
from invkit.io import read_image, write_image
from invkit.registry import get_registry
from invkit.runner import DegradeOptions, RestoreError, RestoreOptions, degrade, restore

from _scripts import load_module

ROOT = Path(__file__).resolve().parents[1]


def _benchmark():
    """benchmarks/default_prior.py as a module."""
    return load_module("bench_default_prior", ROOT / "benchmarks" / "default_prior.py")


def test_solve_simulate_and_the_benchmark_compute_the_same_cases(tmp_path, capsys):
    from skimage import data

    from invkit_solvers.ddrm import DDRM

    bench = _benchmark()
    from _eval_data import eval_crop  # on sys.path once the benchmark is loaded

    clean = tmp_path / "astronaut.png"
    write_image(clean, eval_crop(data.astronaut(), 64)[None], bits=8)
    x = read_image(clean).x[0]  # what solve reads
    image, task, steps = "astronaut", "deblur_noisy", 3
    spec = bench.TASKS[task]
    prior = get_registry().build("prior", "default")
    # the benchmark's cases: samples 0 and 1 with their scores, and their posterior mean
    cases = [bench.ddrm_case(image, task, x, k, DDRM(), prior, steps, "cpu") for k in range(2)]
    mean, mean_scores = bench.ddrm_mean_scores([sample for sample, _ in cases], x)
    assert all(sample.dtype == torch.float32 for sample, _ in cases)

    seed = bench.seed_of("measure", image, task)
    op_args = [a for key, value in spec["args"].items() for a in ("--arg", f"{key}={value}")]
    out = tmp_path / "restored.png"
    argv = ["solve", "--simulate", "--operator", spec["op"], *op_args, "--sigma-y", str(spec["sigma_y"]), "--seed", str(seed),
            "--steps", str(steps), "--samples", "2", "--bits", "16", "--device", "cpu",
            "--input", str(clean), "--output", str(out), "--json", "--quiet"]
    assert main(argv) == 0
    record = json.loads(capsys.readouterr().out)
    assert (record["psnr_restored"], record["ssim_restored"]) == (mean_scores["psnr"], mean_scores["ssim"])

    def same_file(written: str, t: torch.Tensor) -> bool:
        ref = tmp_path / "bench.png"
        write_image(ref, t[None], bits=16)
        return Path(written).read_bytes() == ref.read_bytes()

    assert same_file(record["files"]["restored"], mean)
    assert [same_file(f, sample) for f, (sample, _) in zip(record["files"]["samples"], cases)] == [True, True]

    # one sample from Python: the benchmark's single-sample scores
    [one] = restore(RestoreOptions(clean, tmp_path / "one.png", simulate=True, operator=spec["op"], sigma_y=spec["sigma_y"], seed=seed,
                                   steps=steps, bits=16, device="cpu"))
    sample, scores = cases[0]
    assert (one["psnr_restored"], one["ssim_restored"]) == (scores["psnr"], scores["ssim"]) and same_file(one["output"], sample)
    # both records carry the parameters the prior and solver were built with (device passed on)
    for rec in (record, one):
        assert rec["prior_params"] == {"device": "cpu", "half": False, "grad_checkpoint": False, "clip": False}
        assert rec["solver_params"] == {"eta": 0.85, "eta_b": 1.0, "svd_rtol": 1e-3, "max_dense": rec["solver_params"]["max_dense"]}


def test_restore_a_folder_from_python_with_progress(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    g = torch.Generator().manual_seed(0)
    for name in ("a", "b"):
        write_image(photos / f"{name}.png", torch.rand(1, 3, 12, 16, generator=g), bits=8)
    events = []
    notes: list[str] = []
    opts = RestoreOptions(photos, tmp_path / "out", simulate=True, operator="denoising", sigma_y=0.05, prior="gaussian",
                          steps=3, samples=2, batch=2, device="cpu")
    records = restore(opts, on_progress=events.append, on_note=notes.append)
    assert [Path(r["image"]).name for r in records] == ["a.png", "b.png"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if p.stem in ("a", "b")) == ["a.png", "b.png"]
    kinds = [(e.image.name, e.kind) for e in events]
    assert kinds == [("a.png", "start"), *[("a.png", "step")] * 3, ("a.png", "done"),
                     ("b.png", "start"), *[("b.png", "step")] * 3, ("b.png", "done")]
    last_step = [e for e in events if e.kind == "step"][-1]
    assert (last_step.done, last_step.total, last_step.first, last_step.last, last_step.index, last_step.images) == (3, 3, 1, 2, 1, 2)


def _opts(tmp_path: Path, **fields) -> RestoreOptions:
    return RestoreOptions(tmp_path / "missing.png", tmp_path / "out.png", operator="denoising", prior="gaussian", device="cpu", **fields)


@pytest.mark.parametrize(
    "fields,message",
    [
        ({"resize": 0}, "--resize must be an integer N >= 1 (longest side), two integers (H, W) >= 1, or None, got 0"),
        ({"resize": (0, 8)}, "--resize must be"),
        ({"resize": (8, 8, 8)}, "--resize must be"),
        ({"resize": 8.5}, "--resize must be"),
        ({"crop": (-1, 0, 8, 8)}, "--crop must be True (centred) or a region (Y, X, H, W)"),
        ({"crop": (0, 0, 0, 8)}, "--crop must be"),
        ({"crop": "centre"}, "--crop must be True (centred) or a region (Y, X, H, W) of integers, Y, X >= 0 and H, W >= 1, or None, got 'centre'"),
        ({"crop": (0, 0, 8)}, "--crop must be"),
        ({"size": (3, 0, 8)}, "--size must be three integers (C, H, W) >= 1 or None"),
        ({"size": (3, 8)}, "--size must be"),
        ({"bits": 12}, "--bits must be 8, 16 or None, got 12"),
        ({"bits": "8"}, "--bits must be"),
        ({"samples": 0}, "--samples must be >= 1, got 0"),
        ({"batch": 1.5}, "--batch must be an integer >= 1, got 1.5"),
        ({"steps": 0}, "--steps must be >= 1, got 0"),
        ({"steps": "3"}, "--steps must be an integer >= 1 or None, got '3'"),
        ({"seed": 1.5}, "--seed must be an integer"),
        ({"max_megapixels": 0}, "--max-megapixels must be > 0, got 0"),
        ({"max_megapixels": float("nan")}, "--max-megapixels must be > 0, got nan"),
        ({"max_megapixels": "4"}, "--max-megapixels must be a number > 0"),
        ({"max_minutes": 0}, "--max-minutes must be > 0, got 0"),
        ({"max_minutes": True}, "--max-minutes must be a number > 0"),
        ({"sigma_y": -0.1}, "--sigma-y must be a finite number >= 0 (or auto), got -0.1"),
        ({"sigma_y": "loud"}, "--sigma-y must be a finite number >= 0 (or auto)"),
        ({"pad": "yes"}, "--pad must be True or False"),
        ({"figure": 3}, "--figure must be True, a path or None"),
        ({"operator_args": "sigma=1"}, '--arg must be a list of "K=V" strings or None'),
        ({"solver": None}, "--solver must be a name"),
        ({"pad": True, "crop": True}, "--pad and --crop exclude each other"),
        ({"noise": 3}, "--noise must be a noise model name or None, got 3"),
        ({"noise": "poisson", "sigma_y": 0.1}, "--sigma-y is the std of Gaussian noise, but poisson noise has none"),
        ({"noise": "poisson", "noise_args": ["rate=-2"]}, "--noise-arg: noise 'poisson': parameter 'rate' = -2.0 is out of range"),
        ({"noise_args": "rate=2"}, '--noise-arg must be a list of "K=V" strings'),
        ({"noise": "gaussian", "noise_args": ["sigma=0.1"]}, "Gaussian noise takes its level from --sigma-y"),
        ({"select": "best"}, "--select must be one of mean, residual or None, got 'best'"),
    ],
)
def test_options_set_from_python_are_checked_before_any_work(tmp_path, fields, message):
    with pytest.raises(RestoreError) as err:
        restore(_opts(tmp_path, **fields))  # the input does not exist: the options are refused first
    assert message in str(err.value) and len(str(err.value).splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_options_in_range_pass_and_lists_become_tuples(tmp_path):
    from invkit.runner import check_options

    opts = _opts(tmp_path, crop=[0, 0, 8, 8], resize=[8, 8], size=[3, 8, 8], bits=16, sigma_y="auto")
    check_options(opts, get_registry())
    assert (opts.crop, opts.resize, opts.size) == ((0, 0, 8, 8), (8, 8), (3, 8, 8))
    check_options(_opts(tmp_path, crop=True, resize=12, seed=-3), get_registry())


def test_size_crop_and_resize_text_is_read_by_the_core_parsers():
    """``--size`` goes through invkit.forward.as_shape and ``--crop``/``--resize`` through
    invkit.params.int_tuple (``,`` or ``x`` between the numbers), each with its own message."""
    from invkit.runner import parse_crop, parse_resize, parse_size

    assert parse_size("3,16,24") == parse_size("3x16x24") == (3, 16, 24)
    assert parse_crop("0,1,8,8") == (0, 1, 8, 8) and parse_crop("centre") is True
    assert parse_resize("64") == 64 and parse_resize("32,48") == parse_resize("32x48") == (32, 48)
    for bad in ("3,16", "3,a,24", "3,0,24"):
        with pytest.raises(RestoreError, match=r"^--size '.*' is not three positive integers C,H,W"):
            parse_size(bad)
    with pytest.raises(RestoreError, match="give Y,X,H,W"):
        parse_crop("1,2")
    with pytest.raises(RestoreError, match="give N"):
        parse_resize("a")


@pytest.mark.parametrize("sigma", [-1.0, float("nan"), float("inf"), "auto"])
def test_degrade_refuses_a_bad_sigma_with_the_solve_message(tmp_path, sigma):
    src = tmp_path / "x.png"
    write_image(src, torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0)), bits=8)
    with pytest.raises(RestoreError, match=r"^--sigma-y must be a finite number >= 0, got "):
        degrade(DegradeOptions(src, tmp_path / "y.png", operator="denoising", sigma_y=sigma))
    assert not (tmp_path / "y.png").exists()


def test_degrade_from_python_writes_what_solve_simulate_measures(tmp_path):
    src = tmp_path / "x.png"
    write_image(src, torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0)), bits=8)
    done = degrade(DegradeOptions(src, tmp_path / "y.safetensors", operator="gaussian_blur", operator_args=["sigma=1.0"], sigma_y=0.05, seed=4))
    assert done.kind == "lossless measurement" and done.op.in_shape == (3, 8, 8)
    from invkit.io import read_measurement
    from invkit.runner import simulate_measurement

    y = read_measurement(done.output).y
    assert torch.equal(y, simulate_measurement(done.op, read_image(src).x, 0.05, 4))


def test_degrade_poisson_from_python(tmp_path):
    from invkit.io import read_measurement
    from invkit.noise import PoissonNoise
    from invkit.runner import simulate_measurement

    src = tmp_path / "x.png"
    write_image(src, torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0)), bits=8)
    done = degrade(DegradeOptions(src, tmp_path / "y.safetensors", operator="super_resolution", operator_args=["factor=2"],
                                  noise="poisson", noise_args=["rate=40"], seed=2))
    assert done.noise == PoissonNoise(40.0)
    m = read_measurement(done.output)
    assert m.noise == PoissonNoise(40.0) and torch.equal(m.y, simulate_measurement(done.op, read_image(src).x, PoissonNoise(40.0), 2))
    counts = m.y.double() * 40
    assert float((counts - counts.round()).abs().max()) < 1e-4  # whole photons over the rate
    with pytest.raises(RestoreError, match="^--sigma-y is the std of Gaussian noise"):
        degrade(DegradeOptions(src, tmp_path / "z.safetensors", operator="denoising", noise="poisson", sigma_y=0.0))
    with pytest.raises(RestoreError, match="operator 'compressed_sensing' can make negative ones"):
        degrade(DegradeOptions(src, tmp_path / "z.safetensors", operator="compressed_sensing", noise="poisson"))
    assert not (tmp_path / "z.safetensors").exists()


def test_sample_residuals_are_those_of_the_clipped_images_that_are_written():
    from invkit.runner import sample_residuals

    from invkit.registry import get_registry

    op = get_registry().build_operator("denoising", (1, 2, 2))
    y = torch.full((1, 1, 2, 2), 0.5)
    samples = torch.tensor([[[[1.5, 0.5], [-0.5, 0.5]]], [[[0.5, 0.5], [0.5, 0.5]]]])
    assert sample_residuals(op, y, samples) == pytest.approx([2**0.5 / 2, 0.0])  # |1 − 0.5| and |0 − 0.5|, not 1 and 1


def test_record_value_writes_strict_json():
    from invkit.runner.report import record_value

    value = {"kappa": float("inf"), "low": float("-inf"), "means": (0.1, (0.2, float("nan"))), "path": Path("a/b"), 3: None, "ok": True}
    out = record_value(value)
    assert out == {"kappa": "inf", "low": "-inf", "means": [0.1, [0.2, "nan"]], "path": "a/b", "3": None, "ok": True}
    json.dumps(out, allow_nan=False)  # what `invkit solve --json` does


def test_json_record_of_a_checkpoint_path_and_a_non_finite_parameter(tmp_path, capsys):
    """``--prior PATH`` is recorded as prior ``checkpoint`` with its path, the device passed on and
    the --prior-arg given; a solver parameter of ``inf`` (DiffPIR's ``kappa``) still gives a record."""
    from invkit_priors.default.prior import default_weights_path

    clean = tmp_path / "x.png"
    write_image(clean, torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0)), bits=8)
    common = ["solve", "--simulate", "--operator", "gaussian_blur", "--arg", "sigma=1", "--sigma-y", "0.05", "--steps", "1", "--input", str(clean), "--json", "--quiet"]
    assert main([*common, "--output", str(tmp_path / "a.png"), "--prior", str(default_weights_path()), "--prior-arg", "clip=true"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["prior"] == str(default_weights_path())
    assert rec["prior_params"]["path"] == str(default_weights_path()) and rec["prior_params"]["clip"] is True
    assert rec["prior_params"]["device"] == "cpu" and rec["prior_params"]["arch"] == "auto"
    assert main([*common, "--output", str(tmp_path / "b.png"), "--prior", "gaussian", "--solver", "diffpir", "--solver-arg", "kappa=inf",
                 "--steps", "3"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["solver_params"]["kappa"] == "inf" and rec["psnr_restored"] is not None
