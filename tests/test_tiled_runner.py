"""``invkit solve --tile``: the runner evaluates the prior on tiles when asked, or above
``TILE_AUTO_PIXELS`` with ``--tile auto`` (issue 18), and says so in the notes and the JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from invkit.cli import main
from invkit.runner import TILE_AUTO_PIXELS

#: An isotropic Gaussian prior denoises pixel by pixel (receptive field 0): tiled = untiled.
LOCAL = ["--prior", "gaussian", "--prior-arg", "kind=isotropic"]


def _run(capsys, *argv: str) -> tuple[int, dict | None, str]:
    code = main(["solve", "--json", *argv])
    out = capsys.readouterr()
    lines = out.out.strip().splitlines()
    return code, json.loads(lines[-1]) if lines else None, out.err


def test_tiles_on_equal_tiles_off_for_a_local_prior(tmp_path, capsys):
    src = tmp_path / "in.png"
    Image.fromarray((np.random.default_rng(0).random((72, 104, 3)) * 255).astype("uint8")).save(src)
    base = ["--operator", "gaussian_blur", "--arg", "sigma=1", "--sigma-y", "0.05", *LOCAL, "--steps", "3", "--input", str(src)]
    code, on, err = _run(capsys, *base, "--output", str(tmp_path / "on.png"), "--tile", "on", "--tile-size", "32", "--tile-overlap", "8")
    assert code == 0 and on["prior_tiles"] == [32, 8], err
    assert "the prior runs on 12 tiles of 32x32 (overlap 8) per evaluation (--tile on)" in err
    code, off, err = _run(capsys, *base, "--output", str(tmp_path / "off.png"), "--tile", "off")
    assert code == 0 and off["prior_tiles"] is None and "the prior runs on" not in err
    assert np.array_equal(np.asarray(Image.open(tmp_path / "on.png")), np.asarray(Image.open(tmp_path / "off.png")))


def test_auto_tiles_only_above_the_threshold(tmp_path, capsys):
    side = int(TILE_AUTO_PIXELS**0.5) // 8 * 8  # side² <= the threshold
    tall = side + 8
    while tall * side <= TILE_AUTO_PIXELS:  # the first multiple of 8 above it
        tall += 8
    for name, shape in (("small", (side, side)), ("large", (tall, side))):
        src = tmp_path / f"{name}.png"
        Image.new("RGB", shape[::-1], (120, 130, 140)).save(src)
        code, record, err = _run(capsys, "--operator", "denoising", "--sigma-y", "0.05", *LOCAL, "--steps", "1",
                                 "--input", str(src), "--output", str(tmp_path / f"{name}_out.png"))
        assert code == 0, err
        assert (record["prior_tiles"] is not None) == (name == "large"), (name, record["prior_tiles"])


@pytest.mark.parametrize(
    "extra,says",
    [
        (["--tile-size", "100"], "multiples of the prior's size_multiple 8; use e.g. --tile-size 96"),
        (["--tile-size", "64", "--tile-overlap", "64"], "--tile-overlap 64 must be below --tile-size 64"),
        (["--tile-overlap", "-8"], "--tile-overlap must be an integer number of pixels >= 0"),
    ],
)
def test_bad_tiles_are_refused_before_any_work(extra, says, tmp_path, capsys):
    src = tmp_path / "in.png"
    Image.new("RGB", (64, 64)).save(src)
    code = main(["solve", "--operator", "denoising", "--sigma-y", "0.05", "--tile", "on", *extra, "--input", str(src), "--output", str(tmp_path / "o.png")])
    err = capsys.readouterr().err
    assert code == 2 and says in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o.png").exists()


@pytest.mark.parametrize("args, tiled", [(["kind=isotropic"], True), (["kind=dct"], False)])
def test_auto_tiles_only_tileable_priors(args, tiled):
    """``--tile auto`` tiles a prior only when it says tiles keep its meaning (``Prior.tileable``):
    the pixel-wise isotropic Gaussian yes, the DCT-basis Gaussian (a whole-image model) no;
    ``--tile on`` forces tiles either way."""
    from invkit import TiledPrior, get_registry
    from invkit.runner import RestoreOptions
    from invkit.runner.restore import tiling

    prior = get_registry().build("prior", "gaussian", args)
    assert prior.tileable is tiled
    large = (3, 1024, 1032)
    assert isinstance(tiling(prior, RestoreOptions(input="in.png", output="out.png", tile="auto"))(large), TiledPrior) is tiled
    assert isinstance(tiling(prior, RestoreOptions(input="in.png", output="out.png", tile="on"))(large), TiledPrior)
    assert tiling(prior, RestoreOptions(input="in.png", output="out.png", tile="auto"))((3, 64, 64)) is prior


def test_network_priors_are_tileable():
    from invkit import get_registry

    assert get_registry().build("prior", "default", []).tileable
    from invkit_priors.adapters.vp import VPDiffusionPrior

    assert VPDiffusionPrior.tileable
