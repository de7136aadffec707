"""Hostile and oversized inputs are refused in one line with exit code 2, before anything large
is allocated (issue 17).

Sizes are checked from the image file's header (:func:`invkit.io.image_size`) after working out
what ``--resize``/``--crop`` and the operator (a super-resolution factor) make of them; the
advice in a refusal names an option that works when followed.
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from invkit.cli import main
from invkit.io import image_size, read_image, write_measurement, Measurement

GAUSS = ["--prior", "gaussian", "--prior-arg", "kind=isotropic"]


def _limited(args: list[str], limit_bytes: int = 1 << 30, timeout: float = 60.0) -> subprocess.CompletedProcess:
    """``invkit ARGS`` in a subprocess whose address space is capped (RLIMIT_AS) and time bounded."""

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))

    env = {k: v for k, v in os.environ.items() if k != "INVKIT_BLOCK_PLUGINS"}
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run([sys.executable, "-m", "invkit", *args], capture_output=True, text=True, timeout=timeout,
                          preexec_fn=cap, env=env)


@pytest.fixture(scope="module")
def small_png(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("hostile") / "small.png"
    Image.new("RGB", (64, 64), (100, 120, 140)).save(path)
    return path


@pytest.fixture(scope="module")
def huge_png(tmp_path_factory) -> Path:
    """A 12000 × 12000 grey PNG: ~140 KB on disk, 144 MP (1.15 GB as float64) decoded."""
    path = tmp_path_factory.mktemp("hostile") / "huge.png"
    Image.new("L", (12000, 12000), 0).save(path)
    return path


def test_image_size_reads_the_header_only(huge_png, tmp_path):
    """The header gives the size read_image would return, the EXIF rotation included, for a
    file whose decoding alone would exceed a 1 GiB address space."""
    assert image_size(huge_png) == (1, 12000, 12000)
    probe = subprocess.run(
        [sys.executable, "-c", f"import resource; resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30)); "
         f"from invkit.io import image_size; print(image_size({str(huge_png)!r}))"],
        capture_output=True, text=True, timeout=60,
    )
    assert probe.returncode == 0 and probe.stdout.strip() == "(1, 12000, 12000)", probe.stderr[-2000:]
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90°: read_image returns it upright, H and W swapped
    for suffix in (".jpg", ".png"):
        path = tmp_path / f"rotated{suffix}"
        Image.new("RGB", (40, 20)).save(path, exif=exif)
        assert image_size(path) == tuple(read_image(path).x.shape[1:]) == (3, 40, 20)
    grey16 = tmp_path / "g16.png"
    Image.new("I;16", (30, 10)).save(grey16)
    assert image_size(grey16) == tuple(read_image(grey16).x.shape[1:]) == (1, 10, 30)


@pytest.mark.parametrize("case", ["resize-20000", "resize-100000", "12000-squared"])
def test_oversized_work_is_refused_under_a_1_gib_address_space(case, small_png, huge_png, tmp_path):
    """Each was an allocation of 9.6 GB, 240 GB or a MemoryError (exit 1) before the size check."""
    out = tmp_path / "o.png"
    if case == "12000-squared":
        args = ["--input", str(huge_png)]
    else:
        args = ["--input", str(small_png), "--resize", case.split("-")[1]]
    proc = _limited(["solve", "--operator", "denoising", *GAUSS, "--output", str(out), *args])
    assert proc.returncode == 2, proc.stderr[-3000:]
    msg = proc.stderr.strip()
    assert len(msg.splitlines()) == 1 and "Traceback" not in msg
    assert "over --max-megapixels 4" in msg and "--resize 2000" in msg
    assert not out.exists()


def test_super_resolution_advice_restores_within_the_limit(small_png, tmp_path, capsys):
    """SR ×40 of a 64² measurement: the advised --resize is in measurement pixels (50, restored
    at 2000²), not 2000 (which restored 80000² and gave the same advice again)."""
    out = tmp_path / "o.png"
    code = main(["solve", "--operator", "super_resolution", "--arg", "factor=40", *GAUSS, "--input", str(small_png), "--output", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "is 2560x2560 pixels" in err, err
    n = int(re.search(r"--resize (\d+)", err).group(1))
    assert n == 50 and "restored at 2000" in err
    assert (n * 40) ** 2 <= 4e6
    # following it restores at 2000² (one step of the cheap Gaussian prior)
    code = main(["solve", "--operator", "super_resolution", "--arg", "factor=40", *GAUSS, "--input", str(small_png), "--output", str(out),
                 "--resize", str(n), "--steps", "1", "--sigma-y", "0.01"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert Image.open(out).size == (2000, 2000)


def test_compact_measurement_advice_does_not_name_resize(tmp_path, capsys):
    """A .safetensors measurement cannot be resized (--resize is refused for it): the advice says to
    make the measurement smaller instead; and the operator is never built at the huge size."""
    path = tmp_path / "m.safetensors"
    y = torch.zeros(1, 3, 100, 100)
    write_measurement(path, Measurement(y=y, operator="super_resolution", params={"factor": 40}, in_shape=(3, 4000, 4000)))
    code = main(["solve", *GAUSS, "--input", str(path), "--output", str(tmp_path / "o.png")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "is 4000x4000 pixels" in err and "--resize" not in err and "make the measurement from an image of at most" in err


def test_decompression_bomb_is_a_bad_input(small_png, tmp_path, capsys, monkeypatch):
    """Pillow's decompression-bomb refusal (over 2 × MAX_IMAGE_PIXELS) was an internal error (exit 1)."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # the 64² file is then a "bomb"
    code = main(["solve", "--operator", "denoising", *GAUSS, "--sigma-y", "0.01", "--input", str(small_png), "--output", str(tmp_path / "o.png")])
    err = capsys.readouterr().err
    assert code == 2 and "decompression bomb" in err.lower() and "Downscale it" in err, err
    assert Image.MAX_IMAGE_PIXELS == 1000  # image_size restores Pillow's limit
