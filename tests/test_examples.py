"""The gallery scripts of docs/examples/ run as plain scripts and restore something.

Each ``docs/examples/plot_*.py`` runs in a subprocess with matplotlib's Agg backend (what the
Sphinx build executes too), must exit 0, and prints ``PSNR <label>: <value> dB`` lines; the
restoration named in :data:`EXPECTED` must beat the degraded input or baseline named there.
Together they take about 2 minutes on one CPU thread (123 s measured on a shared 2-core machine
with a benchmark on the other core); each script prints its own solve times.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from _scripts import load_module

EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"
PSNR_LINE = re.compile(r"^(?:(?P<prefix>[^:\n]+): )?PSNR (?P<label>[^:\n]+): (?P<value>[-\d.]+|inf) dB", re.MULTILINE)

#: script -> [(restored label, baseline label)]: the first must beat the second (PSNR, dB).
EXPECTED: dict[str, list[tuple[str, str]]] = {
    "plot_deblur_uncertainty.py": [("posterior mean", "blurred input"), ("sample 1", "blurred input")],
    "plot_super_resolution.py": [("DDRM sample", "pseudo-inverse")],
    "plot_inpainting.py": [("DDRM sample", "measurement (holes at 0)")],
    "plot_all_solvers.py": [("noiseless ddrm", "noiseless blurred input"), ("σ_y = 0.02 ddrm", "σ_y = 0.02 blurred input")],
    "plot_operator_plugin.py": [("DDRM", "pseudo-inverse"), ("DDRM", "measurement")],
}


def test_every_example_is_listed():
    assert sorted(p.name for p in EXAMPLES.glob("plot_*.py")) == sorted(EXPECTED)
    assert (EXAMPLES / "GALLERY_HEADER.rst").is_file()


def _psnrs(stdout: str) -> dict[str, float]:
    found = {}
    for m in PSNR_LINE.finditer(stdout):
        label = f"{m['prefix']} {m['label']}" if m["prefix"] else m["label"]
        found[label] = float(m["value"])
    return found


@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_example_runs_and_restores(script, tmp_path):
    env = dict(os.environ, MPLBACKEND="Agg", OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    env.pop("INVKIT_BLOCK_PLUGINS", None)
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    psnrs = _psnrs(proc.stdout)
    assert psnrs, proc.stdout
    for label, value in psnrs.items():
        assert math.isfinite(value) and value > 0, (label, value)
    for restored, baseline in EXPECTED[script]:
        assert restored in psnrs and baseline in psnrs, (restored, baseline, sorted(psnrs))
        assert psnrs[restored] > psnrs[baseline], f"{script}: {restored} {psnrs[restored]:.2f} dB <= {baseline} {psnrs[baseline]:.2f} dB"
    assert not list(tmp_path.iterdir()), "examples must not write files"


# ---------------------------------------------------------------------- the guides' code
GUIDE = EXAMPLES.parent / "guide"
# the guide and concept pages that hold >>> examples (the others have none to run)
PAGES = sorted(p for p in [*GUIDE.glob("*.rst"), *(EXAMPLES.parent / "concepts").glob("*.rst")] if ">>> " in p.read_text(encoding="utf-8"))


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_page_doctests(page):
    """Every ``>>>`` example of the guide and concept pages prints what it shows."""
    import doctest

    result = doctest.testfile(str(page), module_relative=False, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{page.name}: no example ran"
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {page.name}"


def test_guide_prior_plugin():
    """docs/guide/acme_shrink.py: registers, builds with --prior-arg strings, denoises exactly, and DDRM takes it."""
    import torch

    import invkit

    module = load_module("acme_shrink_guide", GUIDE / "acme_shrink.py")
    registry = invkit.Registry(plugins=[(module, "acme_shrink", "acme-shrink-guide")])
    entry = registry.get("prior", "acme_shrink")
    assert entry.distribution == "acme-shrink-guide" and entry.summary
    assert [p.name for p in entry.params] == ["variance", "center"]
    prior = registry.build("prior", "acme_shrink", ["variance=0.02", "center=0.4"])
    x = torch.full((2, 1, 4, 4), 0.6, dtype=torch.float64)
    out = prior.denoise(x, torch.tensor([0.0, 0.1]))
    torch.testing.assert_close(out[0], x[0])
    torch.testing.assert_close(out[1], torch.full_like(x[1], 0.4 + 0.02 / (0.02 + 0.01) * 0.2))
    op = registry.build_operator("gaussian_blur", (1, 8, 8), ["sigma=1.0"])
    problem = invkit.Problem.simulate(op, torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(0)), 0.05, torch.Generator().manual_seed(1))
    assert "ddrm" in registry.solvers_for(problem, prior)
    with pytest.raises(invkit.ParamError):
        registry.build("prior", "acme_shrink", ["variance=-1"])
