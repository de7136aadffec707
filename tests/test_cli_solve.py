"""End-to-end `invkit degrade` / `invkit solve` on a real photo (scikit-image), via subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from invkit.io import read_image, read_measurement, write_image


def run(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "INVKIT_BLOCK_PLUGINS"}
    return subprocess.run([sys.executable, "-m", "invkit", *args], capture_output=True, text=True, timeout=600, env=env)


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    """A 24x32 crop of scikit-image's `chelsea`, downsampled 8x (small enough for fast tests)."""
    from skimage import data

    img = torch.from_numpy(data.chelsea().astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    small = torch.nn.functional.avg_pool2d(img, 8)[:, :, :24, :32]
    path = tmp_path_factory.mktemp("photo") / "chelsea_small.png"
    write_image(path, small)
    return path


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1.0 / ((a - b) ** 2).mean()))


def test_degrade_then_solve_image_measurement(photo, tmp_path):
    meas = tmp_path / "blurred.png"
    proc = run("degrade", "--operator", "gaussian_blur", "--arg", "sigma=1.0", "--input", str(photo), "--output", str(meas), "--sigma-y", "0.02")
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "restored.png"
    proc = run("solve", "--operator", "gaussian_blur", "--arg", "sigma=1.0", "--prior", "gaussian", "--input", str(meas), "--output", str(out), "--sigma-y", "0.02", "--steps", "10")
    assert proc.returncode == 0, proc.stderr
    assert "sigma_y=0.02" in proc.stdout
    clean = read_image(photo).x
    restored = read_image(out).x
    assert restored.shape == clean.shape
    assert psnr(restored, clean) > 18.0
    assert float((restored - read_image(meas).x).abs().mean()) > 0.005  # not the measurement written back


def test_default_prior_restores_better_than_the_measurement(tmp_path):
    """A real quality check: 64x64 of `astronaut` (evaluation image), blur 1.5 px, noise 0.02."""
    from skimage import data

    img = torch.from_numpy(data.astronaut().astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    clean_path = tmp_path / "clean.png"
    write_image(clean_path, torch.nn.functional.avg_pool2d(img, 2)[:, :, 40:104, 90:154])
    meas, out = tmp_path / "blurred.png", tmp_path / "restored.png"
    op_args = ["--operator", "gaussian_blur", "--arg", "sigma=1.5"]
    assert run("degrade", *op_args, "--input", str(clean_path), "--output", str(meas), "--sigma-y", "0.02").returncode == 0
    proc = run("solve", *op_args, "--input", str(meas), "--output", str(out), "--sigma-y", "0.02", "--steps", "10", "--samples", "4", "--batch", "4", "--quiet")
    assert proc.returncode == 0, proc.stderr
    clean = read_image(clean_path).x
    gain = psnr(read_image(out).x, clean) - psnr(read_image(meas).x, clean)
    assert gain > 1.0, f"posterior mean only {gain:.2f} dB better than the blurred input"  # measured 2.5 dB


def test_compact_measurement_round_trip_and_defaults(photo, tmp_path):
    meas = tmp_path / "holes.safetensors"
    proc = run("degrade", "--operator", "inpainting", "--arg", "fraction=0.3", "--input", str(photo), "--output", str(meas), "--sigma-y", "0.01")
    assert proc.returncode == 0, proc.stderr
    m = read_measurement(meas)
    assert m.operator == "inpainting" and m.params["fraction"] == 0.3 and m.sigma_y == 0.01 and m.in_shape == (3, 24, 32)
    out = tmp_path / "filled.png"
    proc = run("solve", "--prior", "gaussian", "--input", str(meas), "--output", str(out), "--steps", "5")
    assert proc.returncode == 0, proc.stderr
    assert "operator inpainting" in proc.stdout and "sigma_y=0.01" in proc.stdout  # read back from the file


def test_quantised_image_sigma_y_is_never_below_rounding_noise(tmp_path):
    """A flat 8-bit image has no noise to estimate: the default is its quantisation noise, never 0."""
    flat = tmp_path / "flat.png"
    write_image(flat, torch.full((1, 3, 16, 16), 0.5))
    out = tmp_path / "denoised.png"
    proc = run("solve", "--operator", "denoising", "--prior", "gaussian", "--input", str(flat), "--output", str(out), "--steps", "3")
    assert proc.returncode == 0, proc.stderr
    assert f"sigma_y={1 / (255 * 12 ** 0.5):.4g}" in proc.stdout


@pytest.mark.parametrize(
    "args,message",
    [
        (["--operator", "blurr"], "unknown operator 'blurr'"),
        (["--operator", "denoising", "--prior", "nope"], "unknown prior 'nope'"),
        (["--operator", "denoising", "--solver", "nope"], "unknown solver 'nope'"),
        (["--operator", "gaussian_blur", "--arg", "sigma=-1"], "'sigma'"),
        # a solver's declared requirements, checked before any work: exact needs a Gaussian prior
        (["--operator", "denoising", "--solver", "exact", "--prior", "default"], "solver 'exact' cannot take this problem: it needs a prior with a known Gaussian"),
        (["--operator", "denoising", "--solver", "exact", "--prior", "default"], "solvers that take it: ddnm"),
    ],
)
def test_solve_errors_are_one_line(photo, tmp_path, args, message):
    base = ["solve", "--input", str(photo), "--output", str(tmp_path / "o.png")]
    if "--prior" not in args:
        base += ["--prior", "gaussian"]
    proc = run(*base, *args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o.png").exists()


def test_output_safety(photo, tmp_path):
    before = photo.read_bytes()
    proc = run("solve", "--operator", "denoising", "--prior", "gaussian", "--input", str(photo), "--output", str(photo))
    assert proc.returncode == 2 and "is the input file" in proc.stderr
    assert photo.read_bytes() == before
    existing = tmp_path / "exists.png"
    existing.write_bytes(b"keep")
    proc = run("solve", "--operator", "denoising", "--prior", "gaussian", "--input", str(photo), "--output", str(existing), "--steps", "2")
    assert proc.returncode == 2 and "--force" in proc.stderr and existing.read_bytes() == b"keep"
    proc = run("degrade", "--operator", "inpainting", "--input", str(photo), "--output", str(tmp_path / "m.png"))
    assert proc.returncode == 2 and ".safetensors" in proc.stderr
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"garbage")
    proc = run("solve", "--operator", "denoising", "--prior", "gaussian", "--input", str(bad), "--output", str(tmp_path / "z.png"))
    assert proc.returncode == 2 and "cannot read image" in proc.stderr


def test_default_prior_when_prior_is_omitted(photo, tmp_path):
    out = tmp_path / "default.png"
    proc = run("solve", "--operator", "denoising", "--input", str(photo), "--output", str(out), "--steps", "3", "--sigma-y", "0.05")
    assert proc.returncode == 0, proc.stderr
    assert "prior default" in proc.stdout
    assert read_image(out).x.shape == read_image(photo).x.shape


def test_recorded_operator_params_are_kept_and_contradictions_refused(photo, tmp_path):
    meas = tmp_path / "holes5.safetensors"
    proc = run("degrade", "--operator", "inpainting", "--arg", "fraction=0.3", "--arg", "seed=5", "--input", str(photo), "--output", str(meas))
    assert proc.returncode == 0, proc.stderr
    # an --arg that agrees with the file is fine and does not reset the others (seed stays 5)
    proc = run("solve", "--prior", "gaussian", "--input", str(meas), "--output", str(tmp_path / "a.png"), "--steps", "2", "--arg", "fraction=0.3", "--json")
    assert proc.returncode == 0, proc.stderr
    assert '"seed": 5' in proc.stdout
    proc = run("solve", "--prior", "gaussian", "--input", str(meas), "--output", str(tmp_path / "b.png"), "--steps", "2", "--arg", "seed=0")
    assert proc.returncode == 2 and "made with seed=5; --arg seed=0 contradicts it" in proc.stderr


def test_mask_file_is_recorded_with_an_absolute_path(photo, tmp_path):
    """A measurement made with a mask file restores from another folder with the same mask."""
    from PIL import Image

    work = tmp_path / "work"
    work.mkdir()
    mask = np.ones((24, 32), dtype=np.uint8) * 255
    mask[8:16, 10:20] = 0
    Image.fromarray(mask).save(work / "mask.png")
    proc = subprocess.run([sys.executable, "-m", "invkit", "degrade", "--operator", "inpainting", "--arg", "mask=file", "--arg", "mask_file=mask.png",
                           "--input", str(photo), "--output", "m.safetensors"], cwd=work, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    recorded = read_measurement(work / "m.safetensors").params["mask_file"]
    assert recorded == str((work / "mask.png").resolve())
    proc = run("solve", "--prior", "gaussian", "--input", str(work / "m.safetensors"), "--output", str(tmp_path / "r.png"), "--steps", "2")
    assert proc.returncode == 0, proc.stderr
