"""Poisson noise through `invkit degrade` and `invkit solve`, and what a run writes of several samples.

* `degrade --noise poisson` writes a v2 measurement file that records the noise model, with
  whole photon counts over the rate; `solve --solver dps` restores it end to end (tiny, few steps,
  the analytic `gaussian` prior);
* the refusals, each one line and exit status 2 before any work: `--sigma-y` with Poisson, an
  operator that can make negative measurements (compressed sensing), a Gaussian-only solver
  (ddrm, naming dps), a choice that contradicts the file's record;
* a v1 file (written in the old layout) is still restored as Gaussian with its sigma_y;
* `--select residual` writes the sample of smallest ||y - A(x)|| (a deterministic test solver),
  an operator with `mean_is_meaningful = False` gets it by default, and `--simulate` reports the
  oracle best of K, labelled so.

The CLI runs in-process (`invkit.cli.main`: what the console script runs) to keep this fast.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from invkit.cli import main
from invkit.io import Measurement, read_image, read_measurement, write_image, write_measurement
from invkit.metrics import psnr
from invkit.noise import PoissonNoise

GAUSS = ["--prior", "gaussian"]


@pytest.fixture(scope="module")
def camera(tmp_path_factory) -> Path:
    """scikit-image's `camera`, 16x16 grey (averaged 32x32 blocks)."""
    from skimage import data

    x = torch.from_numpy(data.camera().astype(np.float32) / 255.0)[None, None]
    path = tmp_path_factory.mktemp("img") / "camera16.png"
    write_image(path, torch.nn.functional.avg_pool2d(x, 32))
    return path


def one_error(capsys, argv: list[str], *messages: str) -> str:
    """Run argv; assert exit status 2 with one line on stderr holding every message; return it."""
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("invkit: error: ") and "Traceback" not in err, err
    for message in messages:
        assert message in err, err
    return err


@pytest.fixture
def poisson_file(camera, tmp_path, capsys) -> Path:
    meas = tmp_path / "p.safetensors"
    code = main(["degrade", "--operator", "gaussian_blur", "--arg", "sigma=0.8", "--noise", "poisson", "--noise-arg", "rate=255",
                 "--seed", "3", "--input", str(camera), "--output", str(meas)])
    out = capsys.readouterr().out
    assert code == 0 and "Poisson noise rate=255" in out, out
    return meas


# ---------------------------------------------------------------------------- degrade and solve
def test_degrade_poisson_writes_a_v2_file_of_photon_counts(poisson_file, camera):
    from safetensors import safe_open

    with safe_open(str(poisson_file), framework="pt") as f:
        assert f.metadata()["format"] == "invkit-measurement-v2"
    m = read_measurement(poisson_file)
    assert m.noise == PoissonNoise(255.0) and m.sigma_y is None and m.operator == "gaussian_blur"
    counts = m.y.double() * 255
    assert float((counts - counts.round()).abs().max()) < 1e-3 and float(m.y.min()) >= 0 and float(m.y.max()) <= 1
    # it is the noise, not the clean blur, and the same draw as `solve --simulate` with the seed
    from invkit.registry import get_registry
    from invkit.runner import simulate_measurement

    op = get_registry().build_operator("gaussian_blur", (1, 16, 16), {"sigma": 0.8})
    clean = read_image(camera).x
    assert torch.equal(m.y, simulate_measurement(op, clean, PoissonNoise(255.0), 3))
    assert float((m.y - op.forward(clean)).abs().max()) > 1 / 255


def test_solve_a_poisson_measurement_with_dps(poisson_file, tmp_path, capsys):
    out = tmp_path / "r.png"
    code = main(["solve", "--solver", "dps", *GAUSS, "--steps", "4", "--samples", "2", "--batch", "2",
                 "--input", str(poisson_file), "--output", str(out), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    rec = json.loads(captured.out)
    assert rec["noise"] == {"name": "poisson", "rate": 255.0} and rec["sigma_y"] is None
    assert rec["solver"] == "dps" and rec["steps"] == 4 and rec["select"] == "mean" and rec["selected_sample"] is None
    # the recorded residuals are ‖y − A(x_i)‖ of the samples written (to their 16-bit rounding)
    from invkit.registry import get_registry

    m = read_measurement(poisson_file)
    op = get_registry().build_operator("gaussian_blur", (1, 16, 16), m.params)
    again = [float(torch.linalg.vector_norm(m.y.double() - op.forward(read_image(Path(f)).x.double()))) for f in rec["files"]["samples"]]
    assert len(again) == 2 and rec["residuals"] == pytest.approx(again, rel=0.02, abs=1e-3)
    assert "Poisson noise rate=255" in captured.err  # the summary line
    assert read_image(out).x.shape == (1, 1, 16, 16)


def test_simulate_poisson_records_the_noise_model(camera, tmp_path, capsys):
    code = main(["solve", "--simulate", "--operator", "super_resolution", "--arg", "factor=2", "--noise", "poisson", "--noise-arg", "rate=50",
                 "--solver", "dps", *GAUSS, "--steps", "3", "--input", str(camera), "--output", str(tmp_path / "s.png"), "--json", "--quiet"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    rec = json.loads(captured.out)
    assert rec["noise"] == {"name": "poisson", "rate": 50.0} and rec["mode"] == "simulate" and rec["psnr_restored"] is not None


# ---------------------------------------------------------------------------- refusals
@pytest.mark.parametrize("command", ["degrade", "solve"])
def test_sigma_y_with_poisson_is_a_usage_error(camera, tmp_path, capsys, command):
    out = tmp_path / ("m.safetensors" if command == "degrade" else "o.png")
    extra = [] if command == "degrade" else ["--simulate", "--solver", "dps", *GAUSS]
    one_error(capsys, [command, *extra, "--operator", "denoising", "--noise", "poisson", "--sigma-y", "0.05", "--input", str(camera), "--output", str(out)],
              "--sigma-y is the std of Gaussian noise, but poisson noise has none", "--noise-arg rate=255", "drop --sigma-y")
    assert not out.exists()


def test_compressed_sensing_with_poisson_is_refused(camera, tmp_path, capsys):
    for argv in (["degrade", "--output", str(tmp_path / "cs.safetensors")],
                 ["solve", "--simulate", "--solver", "dps", *GAUSS, "--output", str(tmp_path / "cs.png")]):
        one_error(capsys, [*argv, "--operator", "compressed_sensing", "--noise", "poisson", "--input", str(camera)],
                  "Poisson noise needs a non-negative clean measurement A(x)", "operator 'compressed_sensing' can make negative ones",
                  "--noise gaussian")
    assert list(tmp_path.iterdir()) == []


def test_phase_retrieval_with_poisson_is_refused(camera, tmp_path, capsys):
    for argv in (["degrade", "--output", str(tmp_path / "pr.safetensors")],
                 ["solve", "--simulate", "--solver", "dps", *GAUSS, "--output", str(tmp_path / "pr.png")]):
        one_error(capsys, [*argv, "--operator", "phase_retrieval", "--noise", "poisson", "--input", str(camera)],
                  "Poisson noise counts photons of a measurement in [0, 1] and clips it", "operator 'phase_retrieval' measures values beyond 1",
                  "--noise gaussian")
    assert list(tmp_path.iterdir()) == []


def test_ddrm_refuses_a_poisson_measurement_naming_dps(poisson_file, tmp_path, capsys):
    out = tmp_path / "r.png"
    one_error(capsys, ["solve", *GAUSS, "--input", str(poisson_file), "--output", str(out)],
              "solver 'ddrm' cannot take this problem: it needs Gaussian measurement noise, got PoissonNoise", "solvers that take it: ", "dps")
    assert not out.exists()


def test_choices_that_contradict_the_record_or_the_model_are_refused(poisson_file, camera, tmp_path, capsys):
    base = ["solve", "--solver", "dps", *GAUSS, "--steps", "2", "--output", str(tmp_path / "o.png")]
    meas = ["--input", str(poisson_file)]
    one_error(capsys, [*base, *meas, "--noise", "gaussian"], "records poisson noise; --noise gaussian contradicts it")
    one_error(capsys, [*base, *meas, "--noise-arg", "rate=100"], "made with poisson noise rate=255; --noise-arg rate=100 contradicts it")
    one_error(capsys, [*base, *meas, "--sigma-y", "auto"], "records poisson noise, which has none", "drop --sigma-y")
    photo = tmp_path / "counts.png"  # an image file keeps no noise model: --noise poisson says it; 8 bits hold k/255 exactly
    assert main(["degrade", "--operator", "denoising", "--noise", "poisson", "--input", str(camera), "--output", str(photo), "--quiet"]) == 0
    counts = read_image(photo).x.double() * 255
    assert float((counts - counts.round()).abs().max()) < 1e-4
    one_error(capsys, ["degrade", "--operator", "denoising", "--noise", "poisson", "--noise-arg", "rate=100", "--input", str(camera),
                       "--output", str(tmp_path / "c100.png")],
              "Poisson counts at rate 100 are not whole steps of a 8-bit image", "write a .safetensors file")
    assert not (tmp_path / "c100.png").exists()
    one_error(capsys, [*base, "--operator", "denoising", "--noise", "poisson", "--input", str(photo), "--resize", "8"],
              "--resize interpolates measurement counts.png", "use --pad or --crop")
    one_error(capsys, [*base, "--input", str(camera), "--operator", "denoising", "--noise", "laplace"], "--noise 'laplace' is not a noise model")
    one_error(capsys, [*base, "--input", str(camera), "--operator", "denoising", "--noise", "poisson", "--noise-arg", "rate=0"],
              "parameter 'rate' = 0.0 is out of range")
    one_error(capsys, [*base, "--input", str(camera), "--operator", "denoising", "--noise-arg", "sigma=0.1"], "--noise-arg needs --noise NAME")
    one_error(capsys, [*base, "--input", str(camera), "--operator", "denoising", "--noise", "gaussian", "--noise-arg", "sigma=0.1"],
              "Gaussian noise takes its level from --sigma-y")
    one_error(capsys, [*base, "--input", str(camera), "--operator", "denoising", "--select", "best"], "--select must be one of mean, residual")
    negative = tmp_path / "neg.safetensors"
    write_measurement(negative, Measurement(y=torch.full((1, 1, 4, 4), -0.2), operator="denoising", in_shape=(1, 4, 4)))
    one_error(capsys, [*base, "--input", str(negative), "--noise", "poisson"], "has negative values (minimum -0.2)", "use --noise gaussian")
    # agreeing values are fine: the recorded model is used
    assert main([*base, *meas, "--noise", "poisson", "--noise-arg", "rate=255", "--quiet"]) == 0


def test_v1_measurement_file_is_restored_as_gaussian(camera, tmp_path, capsys):
    from safetensors.torch import save_file

    from invkit.registry import get_registry
    from invkit.runner import simulate_measurement

    op = get_registry().build_operator("gaussian_blur", (1, 16, 16), {"sigma": 0.8})
    y = simulate_measurement(op, read_image(camera).x, 0.02, 0)
    old = tmp_path / "v1.safetensors"  # the v1 layout, as `invkit degrade` wrote it before the noise model was recorded
    save_file({"y": y}, str(old), metadata={
        "format": "invkit-measurement-v1", "operator": json.dumps("gaussian_blur"), "params": json.dumps(dict(op.config)),
        "in_shape": json.dumps([1, 16, 16]), "sigma_y": json.dumps(0.02), "bits": json.dumps(None)})
    code = main(["solve", *GAUSS, "--steps", "2", "--input", str(old), "--output", str(tmp_path / "r.png"), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    rec = json.loads(captured.out)
    assert rec["noise"] == {"name": "gaussian", "sigma": 0.02} and rec["sigma_y"] == 0.02 and rec["solver"] == "ddrm"
    one_error(capsys, ["solve", *GAUSS, "--input", str(old), "--output", str(tmp_path / "p.png"), "--noise", "poisson"],
              "records gaussian noise; --noise poisson contradicts it")


# ---------------------------------------------------------------------------- what is written of K samples
class _Offsets:
    """A test solver: sample = y + c (A = identity), c drawn from the sample's own generator; its residual is |c| sqrt(n)."""

    name = "offsets_test"
    row_generators = True

    def solve(self, problem, prior, *, steps=None, generator=None, callback=None):
        from invkit import Result

        gens = generator if isinstance(generator, list) else [generator]
        c = torch.stack([0.4 * torch.rand((), generator=g, dtype=torch.float64) - 0.2 for g in gens]).to(problem.y.dtype)
        return Result(x=(problem.y + c.view(-1, 1, 1, 1)).clamp(0, 1))


@pytest.fixture
def offsets_registry():
    from invkit import Solver, hookimpl, reset_registry
    from invkit.registry import get_registry
    from invkit_operators.denoising import Denoising

    class Offsets(_Offsets, Solver):
        pass

    class Meanless(Denoising):
        """Denoising that says its posterior mean is meaningless (as phase retrieval would)."""

        name = "meanless_test"
        mean_is_meaningful = False

    class Plugin:
        @hookimpl
        def invkit_register_solvers(self, register):
            register("offsets_test", Offsets)

        @hookimpl
        def invkit_register_operators(self, register):
            register("meanless_test", Meanless)

    reset_registry()
    assert get_registry().add_plugin(Plugin(), name="offsets-test")
    yield
    reset_registry()


def test_select_residual_writes_the_smallest_residual_sample(offsets_registry, camera, tmp_path, capsys):
    out = tmp_path / "r.png"
    argv = ["solve", "--solver", "offsets_test", *GAUSS, "--operator", "denoising", "--sigma-y", "0.01", "--samples", "4", "--batch", "2",
            "--bits", "16", "--input", str(camera), "--output", str(out), "--json"]
    assert main([*argv, "--select", "residual"]) == 0
    rec = json.loads(capsys.readouterr().out)
    y = read_image(camera).x.double()
    samples = [read_image(p).x.double() for p in rec["files"]["samples"]]
    residuals = [float((y - s).norm()) for s in samples]  # computed again from the written samples
    assert rec["residuals"] == pytest.approx(residuals, abs=1e-3)
    best = int(np.argmin(residuals))
    assert len(set(np.round(residuals, 3))) == 4 and rec["select"] == "residual" and rec["selected_sample"] == best + 1
    assert out.read_bytes() == Path(rec["files"]["samples"][best]).read_bytes()  # that very sample, not the mean
    # the default for an operator whose mean is meaningful: the mean
    assert main([*argv[:-3], "--output", str(tmp_path / "m.png"), "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["select"] == "mean" and rec["selected_sample"] is None
    mean = torch.stack(samples).mean(0)
    assert float((read_image(tmp_path / "m.png").x.double() - mean).abs().max()) < 2 / 65535


def test_operator_without_a_meaningful_mean_defaults_to_residual(offsets_registry, camera, tmp_path, capsys):
    argv = ["solve", "--solver", "offsets_test", *GAUSS, "--operator", "meanless_test", "--sigma-y", "0.01", "--samples", "3",
            "--input", str(camera), "--json", "--quiet"]
    assert main([*argv, "--output", str(tmp_path / "a.png")]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["select"] == "residual" and rec["selected_sample"] == int(np.argmin(rec["residuals"])) + 1
    assert main([*argv, "--output", str(tmp_path / "b.png"), "--select", "mean"]) == 0  # asked for: the mean
    assert json.loads(capsys.readouterr().out)["select"] == "mean"


def test_simulate_reports_the_oracle_best_of_k(offsets_registry, camera, tmp_path, capsys):
    base = ["solve", "--simulate", "--solver", "offsets_test", *GAUSS, "--operator", "denoising", "--sigma-y", "0.01", "--bits", "16",
            "--input", str(camera)]
    argv = [*base, "--samples", "3", "--output", str(tmp_path / "s.png")]
    assert main([*argv, "--select", "residual"]) == 0
    text = capsys.readouterr().out
    assert "PSNR oracle" in text and "SSIM oracle" in text
    assert "oracle best of 3: the sample closest to the clean image by PSNR" in text and "only --simulate reports it" in text
    assert "rest. = the sample of smallest residual" in text
    assert main([*base, "--samples", "3", "--output", str(tmp_path / "j.png"), "--json", "--quiet"]) == 0
    rec = json.loads(capsys.readouterr().out)
    clean = read_image(camera).x
    scores = [psnr(read_image(p).x, clean) for p in rec["files"]["samples"]]
    assert rec["oracle_sample"] == int(np.argmax(scores)) + 1 and rec["psnr_oracle"] == pytest.approx(max(scores), abs=0.01)
    assert rec["ssim_oracle"] is not None and rec["select"] == "mean"  # the mean written, the oracle only reported
    # one sample: no oracle to report
    assert main([*base, "--samples", "1", "--output", str(tmp_path / "one.png"), "--json", "--quiet"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["psnr_oracle"] is None and rec["oracle_sample"] is None
