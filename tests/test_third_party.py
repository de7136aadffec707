"""A real third-party plugin, installed as a distribution, is picked up with no change to invkit.

The fixture distributions under tests/fixtures/ are installed with
``pip install --no-deps --no-build-isolation --target <tmp>`` into throwaway folders (never the
environment the suite runs in) and used through ``PYTHONPATH``, in a subprocess.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


def _install(name: str, root: Path) -> Path:
    src = root / "src" / name
    shutil.copytree(FIXTURES / name, src)  # build in a copy: keep tests/ clean
    target = root / "site" / name
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index", "--target", str(target), str(src)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return target


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("thirdparty")
    return {name: _install(name, root) for name in ("acme_flip", "acme_badadjoint", "acme_broken")}


def _invkit(args: list[str], *paths: Path, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in paths)
    env.pop("INVKIT_BLOCK_PLUGINS", None)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "invkit", *args], capture_output=True, text=True, env=env, timeout=300)


def test_installed_plugin_is_listed_with_its_distribution(installed):
    proc = _invkit(["plugins", "--json"], installed["acme_flip"])
    assert proc.returncode == 0, proc.stderr
    listing = json.loads(proc.stdout)
    assert not listing["warnings"], listing["warnings"]
    rows = {(r["kind"], r["name"]): r for r in listing["plugins"]}
    for kind, name in (("operator", "acme_flip"), ("operator", "acme_square"), ("operator", "acme_camera"), ("solver", "acme_backproject")):
        assert rows[(kind, name)]["distribution"] == "acme-invkit-flip", name
        assert rows[(kind, name)]["summary"], f"{name} has no summary"
    assert rows[("operator", "denoising")]["distribution"] == "invkit"
    assert rows[("solver", "ddrm")]["distribution"] == "invkit"
    text = _invkit(["plugins"], installed["acme_flip"]).stdout
    assert "acme_flip" in text and "acme-invkit-flip" in text
    solvers = text[text.index("solvers:") :]
    assert any(line.split()[:2] == ["acme_backproject", "acme-invkit-flip"] for line in solvers.splitlines()), text


def test_installed_plugin_passes_check_operator(installed):
    proc = _invkit(["check-operator", "acme_flip", "--arg", "gain=2.5"], installed["acme_flip"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "PASSED" in proc.stdout and "acme-invkit-flip" in proc.stdout
    assert "gain=2.5" in proc.stdout


def test_installed_nonlinear_model_passes_check_operator_with_vjp_and_no_adjoint(installed):
    proc = _invkit(["check-operator", "acme_square", "--json"], installed["acme_flip"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["passed"]
    names = [r["name"] for r in report["results"]]
    assert names == ["shapes", "vjp = finite differences"], names  # no adjoint, autograd-adjoint or SVD check
    vjp = report["results"][1]
    assert vjp["passed"] and vjp["error"] < 1e-8, vjp
    # a hand-written VJP, in the text report
    proc = _invkit(["check-operator", "acme_camera", "--arg", "k=3"], installed["acme_flip"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "PASSED" in proc.stdout and "acme-invkit-flip" in proc.stdout and "k=3.0" in proc.stdout
    assert "vjp = finite differences" in proc.stdout and "adjoint" not in proc.stdout


def test_installed_solver_passes_the_solver_conformance_suite(installed):
    """tests/test_solver_conformance.py, run with the fixture installed: its solver is then a registered one."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(installed["acme_flip"])
    env.pop("INVKIT_BLOCK_PLUGINS", None)
    suite = Path(__file__).parent / "test_solver_conformance.py"
    cmd = [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", str(suite), "-k", "acme_backproject"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=Path(__file__).parent.parent, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "@fixture-source" not in proc.stdout, "the suite loaded the fixture from source instead of the installed distribution"
    ran = [line for line in proc.stdout.splitlines() if "[acme_backproject" in line and " PASSED" in line]
    kinds = {line.split("::")[1].split("[")[0] for line in ran}
    expected = {
        "test_requires_holds_capabilities",
        "test_draws_one_generator_per_row",
        "test_schema_builds_with_defaults",
        "test_check_solver_accepts_a_conforming_problem",
        "test_output_shape_dtype_device",
        "test_same_seed_same_bytes_other_seed_other_samples",
        "test_rows_do_not_see_other_measurements",
        "test_row_does_not_depend_on_its_batch",
        "test_refuses_a_problem_lacking_a_requirement",
    }
    assert kinds == expected, proc.stdout[-4000:]
    assert " FAILED" not in proc.stdout and " ERROR" not in proc.stdout


def test_wrong_adjoint_fails_check_operator_with_measured_error(installed):
    proc = _invkit(["check-operator", "acme_shift", "--json"], installed["acme_badadjoint"])
    assert proc.returncode == 1, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    adjoint = next(r for r in report["results"] if r["name"].startswith("adjoint"))
    assert not adjoint["passed"] and adjoint["error"] > 1e-3
    text = _invkit(["check-operator", "acme_shift"], installed["acme_badadjoint"]).stdout
    assert "FAIL" in text and f"{adjoint['error']:.3e}" in text


def test_broken_plugin_warns_and_others_work(installed):
    proc = _invkit(["plugins"], installed["acme_broken"], installed["acme_flip"])
    assert proc.returncode == 0, proc.stderr
    assert "acme_flip" in proc.stdout and "denoising" in proc.stdout
    assert "acme_broken" in proc.stderr and "acme-invkit-broken" in proc.stderr
    assert "ModuleNotFoundError" in proc.stderr


def test_block_env_skips_plugin_before_import(installed):
    proc = _invkit(["plugins"], installed["acme_broken"], env_extra={"INVKIT_BLOCK_PLUGINS": "acme_broken"})
    assert proc.returncode == 0
    assert "failed to import" not in proc.stderr
    assert "blocked: acme_broken (acme-invkit-broken)" in proc.stdout


def test_unknown_operator_lists_known_names(installed):
    proc = _invkit(["check-operator", "acme_flp"], installed["acme_flip"])
    assert proc.returncode == 2
    assert "unknown operator 'acme_flp'" in proc.stderr and "acme_flip" in proc.stderr and "denoising" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_dps_solves_an_installed_nonlinear_model_end_to_end(installed, tmp_path):
    """Your own differentiable forward model, from its own package: invkit solve --solver dps takes it."""
    import numpy as np
    from PIL import Image

    photo = tmp_path / "photo.png"
    ramp = np.linspace(40, 200, 16, dtype=np.float64)
    Image.fromarray(np.stack([np.add.outer(ramp, ramp) / 2] * 3, -1).astype(np.uint8)).save(photo)
    out = tmp_path / "restored.png"
    args = ["solve", "--solver", "dps", "--solver-arg", "zeta=1.0", "--operator", "acme_camera", "--arg", "k=3",
            "--prior", "gaussian", "--input", str(photo), "--simulate", "--sigma-y", "0.01", "--steps", "50", "--output", str(out)]
    proc = _invkit(args, installed["acme_flip"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert out.is_file() and "dps" in proc.stdout and "acme_camera" in proc.stdout

    # the guidance works through both models: with ζ′ = 1 the fit and the restoration beat the prior's own sample (ζ′ = 0);
    # acme_camera brings its own vjp, acme_square only a forward (differentiated by autograd)
    def record(model: list[str], zeta: str, name: str) -> dict:
        run = ["solve", "--solver", "dps", "--solver-arg", f"zeta={zeta}", "--operator", *model, "--prior", "gaussian",
               "--input", str(photo), "--simulate", "--sigma-y", "0.01", "--steps", "50", "--output", str(tmp_path / name), "--json", "--quiet"]
        done = _invkit(run, installed["acme_flip"])
        assert done.returncode == 0, done.stdout + done.stderr
        return json.loads(done.stdout)

    for model in (["acme_camera", "--arg", "k=3"], ["acme_square"]):
        guided, alone = record(model, "1.0", f"{model[0]}_g.png"), record(model, "0", f"{model[0]}_0.png")
        assert guided["residuals"][0] < 0.5 * alone["residuals"][0], (guided, alone)
        assert guided["psnr_restored"] > alone["psnr_restored"] + 3, (guided, alone)
    # the solver is refused where it cannot work: ddrm needs an SVD this model does not have
    ddrm = [a if a != "dps" else "ddrm" for a in args if a not in ("--solver-arg", "zeta=1.0")]
    proc = _invkit([*ddrm[:-1], str(tmp_path / "other.png")], installed["acme_flip"])
    assert proc.returncode == 2 and "solvers that take it: dps" in proc.stderr, proc.stdout + proc.stderr
