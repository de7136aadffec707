"""The full `invkit solve` command end to end: both modes, folders, samples, metrics, sizes, errors.

Real photos from scikit-image, cut small (<= 32x32) so each run is a few seconds on one CPU
core; the analytic `gaussian` prior everywhere except one tiny run of the built-in default prior.
End-to-end behaviour runs as a subprocess (`python -m invkit`, what the console script runs);
the error matrix calls the same `invkit.cli.main` in-process (one line on stderr, exit status),
with a few errors repeated through a subprocess to show that no traceback escapes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from invkit.cli import main
from invkit.runner import JSON_KEYS
from invkit.io import Measurement, read_image, read_measurement, write_image, write_measurement
from invkit.metrics import psnr, ssim
from invkit.random import sample_seed

GAUSS = ["--prior", "gaussian"]
STABLE_JSON_KEYS = (
    "image", "output", "mode", "operator", "operator_params", "solver", "prior", "shape", "sigma_y", "steps",
    "samples", "seed", "device", "seconds", "psnr_measurement", "psnr_restored", "ssim_measurement", "ssim_restored",
    "lpips_measurement", "lpips_restored", "measurement_metrics_from", "std_mean", "std_max", "files",
    # appended with the noise models and --select (issue 14)
    "noise", "select", "selected_sample", "residuals", "psnr_oracle", "ssim_oracle", "oracle_sample",
    "scored_up_to_ambiguities",
    "model_check",
    "operator_defaults",
    "prior_tiles", "estimated_seconds",
    "solver_params", "prior_params",
)


def run(*args: str, **kw) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "INVKIT_BLOCK_PLUGINS"}
    return subprocess.run([sys.executable, "-m", "invkit", *args], capture_output=True, text=True, timeout=600, env=env, **kw)


def _tensor(arr: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(arr.astype(np.float32) / 255.0)
    return (t.permute(2, 0, 1) if t.dim() == 3 else t[None])[None]


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> dict[str, Path]:
    """chelsea 24x32 RGB, camera 30x30 grey (not a multiple of 8), astronaut 32x32 RGB."""
    from skimage import data

    folder = tmp_path_factory.mktemp("photos")
    pool = torch.nn.functional.avg_pool2d
    images = {
        "chelsea": pool(_tensor(data.chelsea()), 8)[:, :, :24, :32],
        "camera": pool(_tensor(data.camera()), 16)[:, :, :30, :30],
        "astronaut": pool(_tensor(data.astronaut()), 8)[:, :, 8:40, 20:52],
    }
    paths = {}
    for name, x in images.items():
        paths[name] = folder / f"{name}.png"
        write_image(paths[name], x)
    return paths


def lines(text: str) -> list[str]:
    return [ln for ln in text.strip().splitlines() if ln.strip()]


# ---------------------------------------------------------------------------- simulate mode
def test_simulate_json_metrics_match_an_independent_computation(photos, tmp_path):
    out = tmp_path / "r.png"
    proc = run("solve", "--simulate", "--operator", "gaussian_blur", "--arg", "sigma=1.0", "--sigma-y", "0.02", *GAUSS,
               "--steps", "3", "--input", str(photos["chelsea"]), "--output", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(ln) for ln in lines(proc.stdout)]  # stdout holds only JSON
    assert len(records) == 1
    rec = records[0]
    assert tuple(rec) == JSON_KEYS == STABLE_JSON_KEYS  # documented keys: renaming one is a breaking change
    assert rec["mode"] == "simulate" and rec["operator"] == "gaussian_blur" and rec["operator_params"]["sigma"] == 1.0
    assert rec["sigma_y"] == 0.02 and rec["steps"] == 3 and rec["samples"] == 1 and rec["shape"] == [3, 24, 32]
    assert rec["measurement_metrics_from"] == "measurement" and rec["std_mean"] is None
    assert rec["noise"] == {"name": "gaussian", "sigma": 0.02} and rec["select"] == "mean" and rec["selected_sample"] is None
    assert len(rec["residuals"]) == 1 and rec["psnr_oracle"] is None and rec["oracle_sample"] is None  # one sample: no oracle
    assert rec["lpips_restored"] is None or isinstance(rec["lpips_restored"], float)
    assert rec["solver_params"]["eta"] == 0.85 and rec["solver_params"]["eta_b"] == 1.0  # DDRM's defaults, filled in
    assert rec["prior_params"] == {"kind": "dct", "mean": 0.5, "variance": 0.04, "alpha": None, "cutoff": None}
    assert "wrote" in proc.stderr  # messages moved off stdout
    # The simulated measurement is the same draw as `invkit degrade --seed 0` (lossless file).
    meas = tmp_path / "m.safetensors"
    assert run("degrade", "--operator", "gaussian_blur", "--arg", "sigma=1.0", "--sigma-y", "0.02", "--input", str(photos["chelsea"]), "--output", str(meas)).returncode == 0
    clean = read_image(photos["chelsea"]).x
    y = read_measurement(meas).y
    assert rec["psnr_measurement"] == pytest.approx(psnr(y, clean), abs=1e-6)
    assert rec["ssim_measurement"] == pytest.approx(ssim(y, clean), abs=1e-6)
    restored = read_image(out).x
    assert rec["psnr_restored"] == pytest.approx(psnr(restored, clean), abs=0.05)  # file is rounded to 8 bits
    # the side-by-side picture: clean | measurement | restoration
    fig = tmp_path / "r_figure.png"
    assert rec["files"] == {"restored": str(out), "std": None, "samples": [], "figure": str(fig)}
    w, h = Image.open(fig).size
    assert w > 3 * 128 and h > 3 * 24  # three panels, each enlarged to >= 128 px wide


def test_simulate_table_and_pseudo_inverse_for_compact_measurements(photos, tmp_path):
    out = tmp_path / "sr.png"
    proc = run("solve", "--simulate", "--operator", "inpainting", "--arg", "fraction=0.5", *GAUSS, "--steps", "3",
               "--input", str(photos["camera"]), "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert "PSNR meas." in text and "SSIM rest." in text and "camera.png" in text
    assert "*" in text and "pseudo-inverse" in text
    assert read_image(out).x.shape == (1, 1, 30, 30)
    assert (tmp_path / "sr_figure.png").is_file()


# ---------------------------------------------------------------------------- measurement mode
def test_measurement_mode_samples_mean_std_and_figure(photos, tmp_path):
    meas = tmp_path / "blurred.png"
    assert run("degrade", "--operator", "gaussian_blur", "--arg", "sigma=1.0", "--sigma-y", "0.02", "--input", str(photos["chelsea"]), "--output", str(meas)).returncode == 0
    out = tmp_path / "restored.png"
    proc = run("solve", "--operator", "gaussian_blur", "--arg", "sigma=1.0", "--sigma-y", "0.02", *GAUSS, "--steps", "3",
               "--samples", "3", "--batch", "2", "--input", str(meas), "--output", str(out), "--figure", "--json")
    assert proc.returncode == 0, proc.stderr
    rec = json.loads(proc.stdout)
    assert rec["mode"] == "measurement" and rec["psnr_restored"] is None and rec["measurement_metrics_from"] is None
    assert rec["samples"] == 3 and rec["std_max"] > rec["std_mean"] > 0
    samples = [tmp_path / f"restored_sample{i}.png" for i in (1, 2, 3)]
    assert rec["files"]["samples"] == [str(p) for p in samples]
    stack = torch.cat([read_image(p).x for p in samples])
    mean = read_image(out).x
    assert float((mean - stack.mean(0, keepdim=True)).abs().max()) <= 1.5 / 255  # each file rounded once
    std = read_image(tmp_path / "restored_std.png").x
    assert std.shape == (1, 1, 24, 32) and float(std.max()) == 1.0  # white = std_max
    assert (tmp_path / "restored_figure.png").is_file()
    # the samples differ (posterior draws), and the same seed reproduces them with another --batch
    assert float((stack[0] - stack[1]).abs().max()) > 0
    again = tmp_path / "again.png"
    proc = run("solve", "--operator", "gaussian_blur", "--arg", "sigma=1.0", "--sigma-y", "0.02", *GAUSS, "--steps", "3",
               "--samples", "3", "--batch", "3", "--input", str(meas), "--output", str(again), "--quiet")
    assert proc.returncode == 0 and proc.stdout == "" and proc.stderr == ""
    # (equal up to float rounding: CPU BLAS may differ in the last bits between runs, flipping a rounding)
    diff = (read_image(again).x - mean).abs()
    assert float(diff.max()) <= 1.0001 / 255 and float((diff > 0).float().mean()) < 0.02
    for i in (1, 2, 3):  # each sample, not only their mean
        diff = (read_image(tmp_path / f"again_sample{i}.png").x - stack[i - 1]).abs()
        assert float(diff.max()) <= 1.0001 / 255 and float((diff > 0).float().mean()) < 0.02


def test_sigma_y_default_is_estimated_for_noisy_photos(photos, tmp_path):
    meas = tmp_path / "noisy.png"
    assert run("degrade", "--operator", "gaussian_blur", "--arg", "sigma=2.0", "--sigma-y", "0.05", "--input", str(photos["astronaut"]), "--output", str(meas)).returncode == 0
    proc = run("solve", "--operator", "gaussian_blur", "--arg", "sigma=2.0", *GAUSS, "--steps", "2", "--input", str(meas), "--output", str(tmp_path / "a.png"), "--json")
    assert proc.returncode == 0, proc.stderr
    assert 0.03 < json.loads(proc.stdout)["sigma_y"] < 0.07  # defaults: the estimate, not 8-bit rounding
    assert "estimated" in proc.stderr and "at least the 8-bit quantisation noise" in proc.stderr
    proc = run("solve", "--operator", "gaussian_blur", "--arg", "sigma=2.0", *GAUSS, "--steps", "2", "--sigma-y", "auto", "--input", str(meas), "--output", str(tmp_path / "b.png"), "--json")
    assert proc.returncode == 0, proc.stderr
    assert 0.03 < json.loads(proc.stdout)["sigma_y"] < 0.07


def test_folder_input_restores_every_file(photos, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("chelsea", "camera"):
        (folder / f"{name}.png").write_bytes(photos[name].read_bytes())
    x = read_image(photos["astronaut"]).x
    from invkit.registry import get_registry

    op = get_registry().build_operator("inpainting", (3, 32, 32), {"fraction": 0.3})
    write_measurement(folder / "holes.safetensors", Measurement(y=op.forward(x), operator="inpainting", params=dict(op.config), in_shape=(3, 32, 32), sigma_y=0.01))
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    proc = run("solve", "--operator", "denoising", *GAUSS, "--steps", "2", "--input", str(folder), "--output", str(out), "--json")
    # --operator applies to the image files; the measurement file names its own operator and it must agree
    assert proc.returncode == 2 and "made by operator 'inpainting'" in proc.stderr and not out.exists()
    (folder / "holes.safetensors").unlink()
    proc = run("solve", "--operator", "denoising", *GAUSS, "--steps", "2", "--input", str(folder), "--output", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    recs = [json.loads(ln) for ln in lines(proc.stdout)]
    assert [Path(r["image"]).name for r in recs] == ["camera.png", "chelsea.png"]
    assert sorted(p.name for p in out.iterdir()) == ["camera.png", "chelsea.png"]
    # simulate over the folder: a table with a mean row, figures next to the outputs
    proc = run("solve", "--simulate", "--operator", "gaussian_blur", "--arg", "sigma=1.0", "--sigma-y", "0.05", *GAUSS, "--steps", "2",
               "--input", str(folder), "--output", str(out))
    assert proc.returncode == 2 and "exists" in proc.stderr and "--force" in proc.stderr
    proc = run("solve", "--simulate", "--operator", "gaussian_blur", "--arg", "sigma=1.0", "--sigma-y", "0.05", *GAUSS, "--steps", "2",
               "--input", str(folder), "--output", str(out), "--force")
    assert proc.returncode == 0, proc.stderr
    table = [ln for ln in lines(proc.stdout) if not ln.startswith("wrote")]
    assert table[0].startswith("image") and table[-1].startswith("mean") and len(table) == 4
    assert (out / "camera_figure.png").is_file() and (out / "chelsea_figure.png").is_file()
    proc = run("solve", "--operator", "denoising", *GAUSS, "--input", str(folder), "--output", str(folder))
    assert proc.returncode == 2 and "is the input folder" in proc.stderr


def test_measurement_folder_with_measurement_files(photos, tmp_path):
    folder = tmp_path / "meas"
    folder.mkdir()
    for name, frac in (("chelsea", 0.3), ("astronaut", 0.5)):
        assert run("degrade", "--operator", "inpainting", "--arg", f"fraction={frac}", "--sigma-y", "0.01", "--input", str(photos[name]),
                   "--output", str(folder / f"{name}.safetensors")).returncode == 0
    out = tmp_path / "filled"
    proc = run("solve", *GAUSS, "--steps", "2", "--input", str(folder), "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "operator inpainting" in proc.stdout and proc.stdout.count("wrote") == 2
    assert read_image(out / "astronaut.png").x.shape == (1, 3, 32, 32)


def test_16bit_photos_stay_16bit(photos, tmp_path):
    x = read_image(photos["astronaut"]).x
    clean16 = tmp_path / "clean16.png"
    write_image(clean16, x, bits=16)  # 16-bit RGB PNG (Pillow cannot write these; invkit can)
    meas = tmp_path / "blur16.png"
    proc = run("degrade", "--operator", "gaussian_blur", "--arg", "sigma=1.0", "--sigma-y", "0.01", "--input", str(clean16), "--output", str(meas))
    assert proc.returncode == 0 and "16-bit image" in proc.stdout, proc.stderr
    assert read_image(meas).bits == 16
    out = tmp_path / "r16.png"
    proc = run("solve", "--operator", "gaussian_blur", "--arg", "sigma=1.0", *GAUSS, "--steps", "2", "--input", str(meas), "--output", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    rec = json.loads(proc.stdout)
    assert read_image(out).bits == 16 and 0.005 < rec["sigma_y"] < 0.02  # the 0.01 noise, far above 16-bit rounding
    proc = run("solve", "--operator", "gaussian_blur", "--arg", "sigma=1.0", *GAUSS, "--steps", "2", "--input", str(meas), "--output", str(tmp_path / "r8.png"), "--bits", "8")
    assert proc.returncode == 0 and read_image(tmp_path / "r8.png").bits == 8


# ---------------------------------------------------------------------------- the default prior
def test_default_prior_tiny_grey_with_pad(photos, tmp_path):
    out = tmp_path / "cam.png"
    args = ["solve", "--simulate", "--operator", "gaussian_blur", "--arg", "sigma=1.0", "--sigma-y", "0.02", "--steps", "2",
            "--input", str(photos["camera"]), "--output", str(out)]
    proc = run(*args)
    assert proc.returncode == 2
    msg = proc.stderr.strip()
    assert len(msg.splitlines()) == 1 and "divisible by 8" in msg and "--pad (reflect to 32x32" in msg and "--crop (centre 24x24)" in msg
    proc = run(*args, "--pad", "--json", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    rec = json.loads(proc.stdout)
    assert rec["prior"] == "default" and rec["shape"] == [1, 30, 30] and rec["device"] == "cpu"
    assert "padded 30x30 -> 32x32" in proc.stderr
    assert read_image(out).x.shape == (1, 1, 30, 30)


# ---------------------------------------------------------------------------- sizes
def test_crop_resize_and_measurement_padding(photos, tmp_path):
    # compressed sensing needs powers of two: --crop takes the largest centred one
    proc = run("solve", "--simulate", "--operator", "compressed_sensing", *GAUSS, "--steps", "2", "--input", str(photos["camera"]),
               "--output", str(tmp_path / "cs.png"), "--crop", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["shape"] == [1, 16, 16] and "cropped 30x30 -> 16x16" in proc.stderr
    # --resize N: longest side N, then the nearest size the operator takes (factor 4 divides it)
    proc = run("solve", "--simulate", "--operator", "super_resolution", "--arg", "factor=4", *GAUSS, "--steps", "2",
               "--input", str(photos["chelsea"]), "--output", str(tmp_path / "sr.png"), "--resize", "18", "--json")
    assert proc.returncode == 0, proc.stderr
    h, w = json.loads(proc.stdout)["shape"][1:]
    assert h % 4 == 0 and w % 4 == 0 and max(h, w) in (16, 20)
    # a real low-resolution photo: pad the measurement so the image is a multiple of 8, crop the result back
    lr = tmp_path / "lr.png"
    assert run("degrade", "--operator", "super_resolution", "--arg", "factor=2", "--input", str(photos["camera"]), "--output", str(lr)).returncode == 0
    # (the default prior needs multiples of 8: 15x15 -> 16x16 measurement pixels -> 32x32 image -> 30x30 result)
    proc = run("solve", "--operator", "super_resolution", "--arg", "factor=2", "--steps", "2", "--input", str(lr), "--output", str(tmp_path / "hr.png"), "--pad")
    assert proc.returncode == 0, proc.stderr
    assert "padded 15x15 -> 16x16 measurement pixels" in proc.stderr and "prior default" in proc.stdout
    assert read_image(tmp_path / "hr.png").x.shape == (1, 1, 30, 30)


def test_large_image_cost_is_stated_or_refused(tmp_path):
    from skimage import data

    big = tmp_path / "rocket.png"
    write_image(big, _tensor(data.rocket()))  # 640x427 = 0.27 MP: over the estimate threshold
    out = tmp_path / "o.png"
    proc = run("solve", "--operator", "denoising", "--prior", "gaussian", "--prior-arg", "kind=isotropic", "--sigma-y", "0.01", "--steps", "1",
               "--input", str(big), "--output", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    assert "rocket.png: 640x427 pixels (0.273 MP): about" in proc.stderr and "per prior evaluation" in proc.stderr
    assert "for 1 step on cpu (from timings at 256x256 and 512x512)" in proc.stderr
    rec = json.loads(proc.stdout)
    low, high = rec["estimated_seconds"]  # the estimate, recorded beside the time taken
    assert 0 < low <= high
    assert rec["prior_params"]["kind"] == "isotropic"  # the --prior-arg given, recorded
    # a time budget the estimate is over: refused before any work, with the limit that would run it
    proc = run("solve", "--operator", "denoising", *GAUSS, "--input", str(big), "--output", str(tmp_path / "t.png"), "--max-minutes", "1e-6")
    assert proc.returncode == 2 and not (tmp_path / "t.png").exists()
    assert "over --max-minutes 1e-06" in proc.stderr and "to run it anyway" in proc.stderr and "--max-minutes " in proc.stderr.split("or ")[-1]
    # --simulate: the input is the image restored, so --resize is advised in its pixels, not the measurement's
    proc = run("solve", "--simulate", "--operator", "super_resolution", "--arg", "factor=4", *GAUSS, "--input", str(big),
               "--output", str(tmp_path / "s.png"), "--max-minutes", "1e-6", "--crop")
    assert proc.returncode == 2 and "over --max-minutes" in proc.stderr and "input's longest side" not in proc.stderr, proc.stderr
    proc = run("solve", "--operator", "denoising", *GAUSS, "--input", str(big), "--output", str(tmp_path / "p.png"), "--max-megapixels", "0.1")
    assert proc.returncode == 2 and not (tmp_path / "p.png").exists()
    msg = proc.stderr.strip()
    assert len(msg.splitlines()) == 1
    assert "over --max-megapixels 0.1" in msg and "--resize 387 (longest side" in msg and "--max-megapixels 0.3 to run it anyway" in msg
    assert "for 20 steps" in msg and "a step costs" not in msg  # ddrm: its 20 default steps, one evaluation each
    # dps: its 1000 default steps, each a gradient through the prior (about 3 evaluations): the estimate says so
    proc = run("solve", "--operator", "denoising", "--solver", "dps", *GAUSS, "--input", str(big), "--output", str(tmp_path / "q.png"),
               "--max-megapixels", "0.1")
    assert proc.returncode == 2 and "for 1000 steps" in proc.stderr and "(a step costs about 3 of them)" in proc.stderr


# ---------------------------------------------------------------------------- progress
def _run_on_terminal(args: list[str]) -> str:
    """Run invkit with stderr on a pseudo-terminal; return what was drawn there."""
    import pty

    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "invkit", *args], stderr=slave, stdout=subprocess.DEVNULL)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    proc.wait(timeout=600)
    os.close(master)
    assert proc.returncode == 0
    return b"".join(chunks).decode(errors="replace")


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
def test_progress_bar_only_on_a_terminal(photos, tmp_path):
    args = ["solve", "--operator", "denoising", *GAUSS, "--sigma-y", "0.01", "--steps", "4", "--samples", "2", "--input", str(photos["chelsea"])]
    drawn = _run_on_terminal([*args, "--output", str(tmp_path / "a.png")])
    assert "chelsea.png" in drawn and "8/8 steps" in drawn and "s/step" in drawn and "sample 2/2" in drawn
    assert _run_on_terminal([*args, "--output", str(tmp_path / "b.png"), "--quiet"]) == ""
    proc = run(*args, "--output", str(tmp_path / "c.png"))  # not a terminal: no bar
    assert proc.returncode == 0 and "\r" not in proc.stderr and "steps" not in proc.stderr


# ---------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "args,message",
    [
        (["--operator", "blurr"], "unknown operator 'blurr'; known operators: anisotropic_blur, "),
        (["--operator", "denoising", "--prior", "nope"], "unknown prior 'nope'; known priors: adm-ffhq256, adm-imagenet256-cond"),
        (["--operator", "denoising", "--solver", "nope"], "unknown solver 'nope'; known solvers: ddnm, ddnm_plus, ddrm, "),
        (["--operator", "denoising", "--prior", "missing.safetensors"], "prior checkpoint not found"),
        (["--operator", "denoising", "--samples", "0"], "--samples must be >= 1"),
        (["--operator", "denoising", "--sigma-y", "-1"], "--sigma-y must be a finite number >= 0"),
        (["--operator", "denoising", "--sigma-y", "nan"], "--sigma-y must be a finite number >= 0"),
        (["--operator", "denoising", "--size", "3,10,10"], "has shape (3, 24, 32), but operator 'denoising' on images (3, 10, 10)"),
        (["--operator", "colorization"], "colorization"),
        (["--operator", "denoising", "--pad", "--crop"], "--pad and --crop exclude each other"),
        (["--operator", "denoising", "--crop", "0,0,99,99"], "the region exceeds the 24x32"),
        (["--operator", "denoising", "--crop", "1,2"], "give Y,X,H,W"),
        (["--operator", "denoising", "--resize", "a"], "give N (longest side in pixels) or H,W"),
        (["--operator", "denoising", "--device", "cuda:99"], "--device cuda:99"),
        (["--operator", "denoising", "--device", "warp"], "is not a device"),
        (["--simulate"], "--simulate needs --operator"),
        (["--simulate", "--operator", "denoising", "--sigma-y", "auto"], "--sigma-y auto estimates the noise of a measurement"),
        (["--operator", "denoising", "--noise", "poisson", "--sigma-y", "0.05"], "poisson noise has none"),
        (["--operator", "denoising", "--noise", "poisson", "--sigma-y", "auto"], "drop --sigma-y"),
        (["--operator", "denoising", "--noise", "speckle"], "--noise 'speckle' is not a noise model; use one of: gaussian, poisson"),
        (["--simulate", "--operator", "compressed_sensing", "--crop", "--noise", "poisson", "--solver", "dps"], "operator 'compressed_sensing' can make negative ones"),
        (["--operator", "denoising", "--select", "median"], "--select must be one of mean, residual or None, got 'median'"),
        ([], "which records no operator; pass --operator NAME"),
    ],
)
def test_solve_errors_one_line_exit_2(photos, tmp_path, capsys, args, message):
    out = tmp_path / "o.png"
    argv = ["solve", "--input", str(photos["chelsea"]), "--output", str(out), *(GAUSS if "--prior" not in args else []), *args]
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and err.startswith("invkit: error: ")
    assert not out.exists()


def test_file_errors_one_line_exit_2(photos, tmp_path, capsys):
    def check(argv: list[str], message: str) -> None:
        code = main(["solve", *GAUSS, *argv])
        err = capsys.readouterr().err
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err

    out = ["--output", str(tmp_path / "o.png")]
    check(["--operator", "denoising", "--input", str(tmp_path / "missing.png"), *out], "does not exist")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    check(["--operator", "denoising", "--input", str(bad), *out], "cannot read image")
    x = read_image(photos["chelsea"]).x
    nan = x.clone()
    nan[0, 1, 2, 3] = float("nan")
    write_measurement(tmp_path / "nan.safetensors", Measurement(y=nan, operator="denoising", in_shape=(3, 24, 32), sigma_y=0.01))
    check(["--input", str(tmp_path / "nan.safetensors"), *out], "contains 1 NaN or infinite value(s)")
    write_measurement(tmp_path / "short.safetensors", Measurement(y=torch.zeros(1, 100), operator="inpainting", params={"fraction": 0.5}, in_shape=(3, 24, 32)))
    check(["--input", str(tmp_path / "short.safetensors"), *out], "has shape (100,), but operator 'inpainting' on images (3, 24, 32) measures (1152,)")
    check(["--simulate", "--operator", "denoising", "--input", str(tmp_path / "nan.safetensors"), *out], "--simulate needs a clean image")
    check(["--operator", "denoising", "--input", str(photos["chelsea"]), "--output", str(photos["chelsea"])], "is the input file")
    check(["--operator", "denoising", "--input", str(photos["chelsea"]), "--output", str(tmp_path / "no" / "o.png")], "does not exist; create it first")
    check(["--operator", "denoising", "--input", str(photos["chelsea"]), "--output", str(tmp_path / "o.txt")], "must be an image file")
    existing = tmp_path / "e.png"
    existing.write_bytes(b"keep")
    check(["--operator", "denoising", "--input", str(photos["chelsea"]), "--output", str(existing)], "exists; pass --force")
    assert existing.read_bytes() == b"keep"
    # a derived output (the std map) that exists blocks the run before any work
    (tmp_path / "s_std.png").write_bytes(b"keep")
    check(["--operator", "denoising", "--samples", "2", "--input", str(photos["chelsea"]), "--output", str(tmp_path / "s.png")], "s_std.png exists")
    assert not (tmp_path / "s.png").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    check(["--operator", "denoising", "--input", str(empty), "--output", str(tmp_path / "eo")], "holds no images")


def test_errors_through_the_process_and_debug(photos, tmp_path):
    nan = read_image(photos["chelsea"]).x.clone()
    nan[0, 0, 0, 0] = float("inf")
    path = tmp_path / "inf.safetensors"
    write_measurement(path, Measurement(y=nan, operator="denoising", in_shape=(3, 24, 32)))
    args = ["solve", *GAUSS, "--input", str(path), "--output", str(tmp_path / "o.png")]
    proc = run(*args)
    assert proc.returncode == 2 and proc.stderr.startswith("invkit: error: measurement") and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    proc = run(*args, "--debug")  # after the subcommand, as well as before it
    assert proc.returncode == 2 and "Traceback" in proc.stderr and "RestoreError" in proc.stderr
    proc = run("solve", "--prior", "nope", "--operator", "denoising", "--input", str(photos["chelsea"]), "--output", str(tmp_path / "o.png"))
    assert proc.returncode == 2 and "known priors: " in proc.stderr and "Traceback" not in proc.stderr
    assert all(f" {name}," in proc.stderr for name in ("checkpoint", "default", "gaussian", "gaussian_mixture", "adm-ffhq256"))


def test_help_documents_modes_files_and_json_keys():
    proc = run("solve", "--help")
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    for key in JSON_KEYS:
        assert key in text
    for phrase in ("--simulate", "OUT_std.EXT", "OUT_sample<i>.EXT", "OUT_figure.png", "pseudo-inverse", "--max-megapixels", "--pad", "JSON Lines"):
        assert phrase in text


def test_plugins_and_check_operator_json():
    proc = run("plugins", "--json")
    assert proc.returncode == 0
    rows = json.loads(proc.stdout)["plugins"]
    assert {"kind": "prior", "name": "default"}.items() <= next(r for r in rows if r["name"] == "default").items()
    proc = run("check-operator", "gaussian_blur", "--size", "1,8,9", "--arg", "sigma=1.0", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["operator"] == "gaussian_blur" and report["in_shape"] == [1, 8, 9]


def test_outputs_get_the_usual_file_mode(photos, tmp_path):
    """Atomic writes go through mkstemp (0600); the result must have the mode a plain write gives."""
    out = tmp_path / "mode.png"
    proc = run("solve", "--operator", "denoising", *GAUSS, "--steps", "2", "--input", str(photos["chelsea"]), "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask


def test_output_equal_to_input_through_symlink_or_other_path_is_refused(photos, tmp_path):
    link = tmp_path / "link.png"
    link.symlink_to(photos["chelsea"])
    before = photos["chelsea"].read_bytes()
    for out in (link, photos["chelsea"].parent / "." / photos["chelsea"].name):
        proc = run("solve", "--operator", "denoising", *GAUSS, "--input", str(photos["chelsea"]), "--output", str(out), "--force")
        assert proc.returncode == 2 and "input" in proc.stderr, proc.stderr
    assert photos["chelsea"].read_bytes() == before


def test_pad_finds_power_of_two_sizes(tmp_path):
    """48x48 with compressed sensing (powers of two): --pad reaches 64x64, --crop 32x32."""
    src = tmp_path / "rgb48.png"
    write_image(src, torch.rand(1, 3, 48, 48, generator=torch.Generator().manual_seed(0)))
    for flag, size in (("--pad", 64), ("--crop", 32)):
        out = tmp_path / f"cs{flag[2:]}.png"
        proc = run("solve", "--simulate", "--operator", "compressed_sensing", *GAUSS, "--steps", "2", "--input", str(src), "--output", str(out), flag, "--json")
        assert proc.returncode == 0, proc.stderr
        if flag == "--crop":
            assert read_image(out).x.shape[-2:] == (size, size)
        else:
            assert read_image(out).x.shape[-2:] == (48, 48)  # padded to 64 for the operator, cropped back


def test_sigterm_leaves_no_temporary_file(tmp_path):
    """SIGTERM during a write unwinds like Ctrl-C: the temporary file is removed, exit 130."""
    script = tmp_path / "slow.py"
    script.write_text(
        "import sys, time, invkit.io as io\n"
        "orig = io.atomic_write\n"
        "def slow(path, write):\n"
        "    def w(tmp):\n"
        "        write(tmp); print('writing', flush=True); time.sleep(30)\n"
        "    return orig(path, w)\n"
        "io.atomic_write = slow\n"
        "from invkit.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    src = tmp_path / "in.png"
    write_image(src, torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0)))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "INVKIT_BLOCK_PLUGINS"}
    proc = subprocess.Popen([sys.executable, str(script), "degrade", "--operator", "denoising", "--input", str(src), "--output", str(out_dir / "m.png")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout.readline().strip() == "writing"
    proc.terminate()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert list(out_dir.iterdir()) == []


def test_closed_pipe_and_missing_prior_path_are_quiet_one_liners(photos, tmp_path):
    proc = subprocess.run(f"{sys.executable} -m invkit plugins | head -1", shell=True, capture_output=True, text=True, timeout=300)
    assert proc.stdout.startswith("operators:") and "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr
    proc = run("solve", "--operator", "denoising", "--prior", "./no/such/", "--input", str(photos["chelsea"]), "--output", str(tmp_path / "o.png"))
    assert proc.returncode == 2 and "prior checkpoint not found" in proc.stderr


def test_16bit_rgb_tiff_without_tifffile_fails_before_any_work(monkeypatch, tmp_path):
    import builtins

    from invkit.runner import RestoreError, output_bits

    real_import = builtins.__import__

    def no_tifffile(name, *args, **kwargs):
        if name == "tifffile":
            raise ImportError("blocked")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tifffile)
    with pytest.raises(RestoreError, match="needs the tifffile package"):
        output_bits(None, 16, tmp_path / "o.tif", channels=3)
    assert output_bits(None, 16, tmp_path / "o.tif", channels=1) == 16  # grey: Pillow writes it
    assert output_bits(8, 16, tmp_path / "o.tif", channels=3) == 8


def test_solver_without_row_generators_gets_one_generator_per_batch(photos, tmp_path):
    """A plugin solver that never asked for per-row generators is not handed a list."""
    from invkit import Result, Solver, hookimpl, reset_registry
    from invkit.registry import get_registry

    seen: list[object] = []

    class Plain(Solver):
        name = "plain_test"

        def solve(self, problem, prior, *, steps=None, generator=None, callback=None):
            seen.append(generator)
            return Result(x=problem.y + 0.01 * torch.randn(problem.y.shape, generator=generator))

    class Plugin:
        @hookimpl
        def invkit_register_solvers(self, register):
            register("plain_test", Plain)

    reset_registry()
    try:
        assert get_registry().add_plugin(Plugin(), name="plain-test")
        for batch in ("1", "2"):
            out = tmp_path / f"b{batch}.png"
            assert main(["solve", "--solver", "plain_test", "--operator", "denoising", *GAUSS, "--sigma-y", "0.01", "--samples", "2",
                         "--batch", batch, "--input", str(photos["chelsea"]), "--output", str(out), "--quiet"]) == 0
    finally:
        reset_registry()
    assert len(seen) == 3 and all(isinstance(g, torch.Generator) for g in seen)
    # batch 1 gets sample i's own generator, so its samples equal the per-row seeds
    assert [g.initial_seed() for g in seen[:2]] == [sample_seed(0, 0), sample_seed(0, 1)]
    assert seen[2].initial_seed() == sample_seed(0, 0)


def test_figure_format_follows_its_suffix(photos, tmp_path, capsys):
    base = ["solve", "--operator", "denoising", *GAUSS, "--sigma-y", "0.02", "--steps", "2", "--input", str(photos["chelsea"]), "--quiet"]
    for name, magic in (("f.jpg", b"\xff\xd8\xff"), ("f.png", b"\x89PNG"), ("f.bmp", b"BM")):
        assert main([*base, "--output", str(tmp_path / f"o_{name}.png"), "--figure", str(tmp_path / name)]) == 0
        assert (tmp_path / name).read_bytes().startswith(magic), name
    out = tmp_path / "o.png"
    assert main([*base, "--output", str(out), "--figure", str(tmp_path / "f.gif")]) == 2
    err = capsys.readouterr().err
    assert "--figure" in err and "f.gif must be an image file (.png, .jpg" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
