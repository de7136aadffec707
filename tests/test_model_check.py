"""A measurement that the model does not explain is said, before and after the solve (issue 17:
deblurring a sharp photo with the default σ = 3 gave a black-and-white maze with exit 0), and the
operator parameters used are printed with their defaults marked.

Both sides of each threshold are tested on a tuning photo (scikit-image ``brick``, never an
evaluation image): its sharp crop treated as a σ = 3 blur, and the same crop really blurred.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from invkit.cli import main
from invkit.noise import GaussianNoise
from invkit.registry import get_registry
from invkit.runner.inputs import simulate_measurement
from invkit.runner.model_check import RESIDUAL_MIN_STEPS, RESIDUAL_WARN, TAIL_WARN, ModelCheck, effective_sigma, residual_calibrated, residual_ratio, tail_ratio


@pytest.fixture(scope="module")
def brick() -> torch.Tensor:
    from skimage import data

    crop = data.brick()[:64, :64].astype(np.float64) / 255.0
    return torch.from_numpy(crop).expand(3, 64, 64)[None].contiguous()


@pytest.fixture(scope="module")
def blur():
    return get_registry().build_operator("gaussian_blur", (3, 64, 64), [])


def test_noise_only_coefficients_tell_a_sharp_photo_from_a_blurred_one(brick, blur):
    sigma = 0.005
    y = simulate_measurement(blur, brick, GaussianNoise(sigma), seed=0)
    right, n = tail_ratio(blur, y, sigma)
    assert n > 1000 and 0.85 < right < 1.15  # pure noise there: RMS = sigma
    wrong, _ = tail_ratio(blur, brick.float() + (y - blur.forward(brick)).float(), sigma)  # the sharp photo, same noise
    assert wrong > TAIL_WARN


def test_no_verdict_without_tiny_singular_values_or_a_noise_level(brick):
    denoise = get_registry().build_operator("denoising", (3, 64, 64), [])
    assert tail_ratio(denoise, brick, 0.02) == (None, 0)  # s = 1 everywhere: nothing is erased
    blur = get_registry().build_operator("gaussian_blur", (3, 64, 64), [])
    assert tail_ratio(blur, brick, None) == (None, 0)
    assert effective_sigma(GaussianNoise(0.0), None) is None  # a noiseless float measurement: no unit


def test_the_residual_ratio_and_the_warnings():
    assert residual_ratio([3.0, 1.0, 2.0], 4, 0.5) == pytest.approx(2.0)  # median 2 / (sqrt(4) * 0.5)
    assert residual_ratio([math.inf], 4, 0.5) is None and residual_ratio([1.0], 4, None) is None
    assert ModelCheck(sigma=0.1, tail=TAIL_WARN, residual=RESIDUAL_WARN).warnings() == []  # at the threshold: fine
    check = ModelCheck(sigma=0.1, tail=TAIL_WARN + 0.1, tail_count=100, residual=RESIDUAL_WARN + 0.1, calibrated=True)
    assert len(check.before()) == 1 and len(check.after()) == 1 and check.record()["warnings"] == check.warnings()
    assert effective_sigma(GaussianNoise(0.0), 8) == pytest.approx(1 / (255 * math.sqrt(12)))


def test_the_residual_warns_only_where_it_was_calibrated(blur):
    """Masks, colorization and compressed sensing (constant singular values) measured 2.5-6.4x with
    the right model, and a blur 2.9x at 3 steps: their residual is recorded but does not warn."""
    reg = get_registry()
    assert residual_calibrated(blur, RESIDUAL_MIN_STEPS) and not residual_calibrated(blur, RESIDUAL_MIN_STEPS - 1)
    for name in ("inpainting", "colorization", "denoising"):
        assert not residual_calibrated(reg.build_operator(name, (3, 16, 16), []), 100), name
    assert residual_calibrated(reg.build_operator("bicubic_super_resolution", (3, 16, 16), ["factor=4"]), 20)
    assert ModelCheck(sigma=0.1, residual=10.0, calibrated=False).after() == []


def test_a_right_mask_model_does_not_warn(brick, tmp_path, capsys):
    """solve --simulate makes y itself, so the model is exact: no warning for inpainting either."""
    src = tmp_path / "brick.png"
    Image.fromarray((brick[0].permute(1, 2, 0).numpy() * 255).round().astype("uint8")).save(src)
    code = main(["solve", "--simulate", "--operator", "inpainting", "--sigma-y", "0.01", "--steps", "3", "--json",
                 "--input", str(src), "--output", str(tmp_path / "r.png")])
    captured = capsys.readouterr()
    record = json.loads(captured.out.strip().splitlines()[-1])
    assert code == 0 and "warning" not in captured.err and record["model_check"]["warnings"] == [], captured.err
    assert record["model_check"]["residual_rms_over_sigma"] is not None and not record["model_check"]["residual_calibrated"]


def _solve(src: Path, out: Path, capsys, *extra: str) -> tuple[dict, str]:
    code = main(["solve", "--operator", "gaussian_blur", "--input", str(src), "--output", str(out), "--steps", "10", "--json", *extra])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out.strip().splitlines()[-1]), captured.err


def test_solve_warns_on_a_sharp_photo_deblurred_as_a_blur_and_not_on_a_blurred_one(brick, blur, tmp_path, capsys):
    """Through the CLI with the default prior: the 8-bit sharp crop warns before and after the solve
    (stderr and JSON); the same crop blurred with sigma_y = 0.02 warns neither time."""
    sharp, blurred = tmp_path / "sharp.png", tmp_path / "blurred.png"
    Image.fromarray((brick[0, 0].numpy() * 255).round().astype("uint8")).save(sharp)
    y = simulate_measurement(blur, brick, GaussianNoise(0.02), seed=0)
    Image.fromarray((y[0].clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype("uint8")).save(blurred)

    record, err = _solve(sharp, tmp_path / "r1.png", capsys)
    check = record["model_check"]
    assert check["tail_rms_over_sigma"] > TAIL_WARN and check["residual_rms_over_sigma"] > RESIDUAL_WARN, check
    assert len(check["warnings"]) == 2 and err.count("warning: ") == 2, err
    assert "sharp.png: operator gaussian_blur with sigma=3.0 (default), boundary=reflect (default), threshold=0.0 (default)" in err
    assert record["operator_defaults"] == ["sigma", "boundary", "threshold"] and check["residual_calibrated"]

    record, err = _solve(blurred, tmp_path / "r2.png", capsys, "--arg", "sigma=3")
    check = record["model_check"]
    assert check["tail_rms_over_sigma"] < TAIL_WARN and check["residual_rms_over_sigma"] < RESIDUAL_WARN, check
    assert check["warnings"] == [] and "warning" not in err, err
    assert "with sigma=3.0, boundary=reflect (default)" in err and record["operator_defaults"] == ["boundary", "threshold"]


def test_a_photo_with_holes_is_a_mask_measurement_and_degrade_writes_its_view(brick, tmp_path, capsys):
    """`solve --operator inpainting --arg mask=file --arg mask_file=holes.png --input photo.png`
    takes y = photo[mask] in one command; degrade writes a compact inpainting measurement with a
    viewable image beside it, which solve reads back to the same kept pixels (8-bit rounded)."""
    photo, holes = tmp_path / "photo.png", tmp_path / "holes.png"
    Image.fromarray((brick[0].permute(1, 2, 0).numpy() * 255).round().astype("uint8")).save(photo)
    keep = np.ones((64, 64), dtype=np.uint8) * 255
    keep[20:30, 10:50] = 0
    Image.fromarray(keep).save(holes)
    mask = ["--operator", "inpainting", "--arg", "mask=file", "--arg", f"mask_file={holes}"]
    code = main(["solve", *mask, "--input", str(photo), "--output", str(tmp_path / "r.png"), "--steps", "2", "--sigma-y", "0.01", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert f"the measurement is the photo's {3 * (64 * 64 - 400)} pixels that operator inpainting keeps (of {3 * 64 * 64})" in captured.err

    meas = tmp_path / "m.safetensors"
    assert main(["degrade", *mask, "--input", str(photo), "--output", str(meas)]) == 0
    view = tmp_path / "m_view.png"
    assert f"wrote {view}: the measurement as an image" in capsys.readouterr().out
    pixels = np.asarray(Image.open(view))
    assert (pixels[20:30, 10:50] == 0).all() and (pixels[keep > 0] == np.asarray(Image.open(photo))[keep > 0]).all()
    # both files or neither: an existing view refuses the run before the measurement is written
    meas.unlink()
    assert main(["degrade", *mask, "--input", str(photo), "--output", str(meas)]) == 2
    assert "m_view.png exists" in capsys.readouterr().err and not meas.exists()


def test_a_folder_of_measurements_does_not_restore_their_views_again(brick, tmp_path, capsys):
    """degrade writes m_view.png beside m.safetensors; a folder run restores the measurement once."""
    folder, photo = tmp_path / "ms", tmp_path / "photo.png"
    folder.mkdir()
    Image.fromarray((brick[0].permute(1, 2, 0).numpy() * 255).round().astype("uint8")).save(photo)
    assert main(["degrade", "--operator", "inpainting", "--sigma-y", "0.01", "--input", str(photo), "--output", str(folder / "m.safetensors")]) == 0
    assert (folder / "m_view.png").is_file()
    code = main(["solve", "--prior", "gaussian", "--prior-arg", "kind=isotropic", "--steps", "1", "--input", str(folder), "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 0, err
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["m.png"] and "views beside a measurement): m_view.png" in err


def test_the_noise_of_a_photo_with_holes_is_estimated_from_its_measured_pixels(brick, tmp_path, capsys):
    """Reading degrade's view back estimated sigma_y from the black holes too: 0.0011 for noise 0.05."""
    photo = tmp_path / "photo.png"
    Image.fromarray((brick[0].permute(1, 2, 0).numpy() * 255).round().astype("uint8")).save(photo)
    box = ["--operator", "inpainting", "--arg", "mask=box"]
    assert main(["degrade", *box, "--sigma-y", "0.05", "--input", str(photo), "--output", str(tmp_path / "m.safetensors")]) == 0
    capsys.readouterr()
    assert main(["solve", *box, "--prior", "gaussian", "--prior-arg", "kind=isotropic", "--steps", "1",
                 "--input", str(tmp_path / "m_view.png"), "--output", str(tmp_path / "r.png")]) == 0
    err = capsys.readouterr().err
    sigma = float(err.split("sigma_y = ")[1].split()[0])
    assert 0.04 < sigma < 0.065, err
