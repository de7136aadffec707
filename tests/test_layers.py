"""Package layering, enforced with import-linter (the contracts are in pyproject.toml).

* the repository's source tree keeps every contract;
* every module of ``invkit`` is listed as core, runner or CLI in the ``core-no-runner-cli``
  contract (core <- runner <- CLI; the runner's own contract keeps it off the CLI), so a new
  module cannot slip past it unclassified;
* each contract can fail: one forbidden import added to a copy of the tree breaks that contract
  (and only that one).

``lint-imports`` reads the source (it imports nothing), analyses the trees named on PYTHONPATH
first (the working tree here, a copy in the failure tests, never the installed packages) and runs
without its cache, so nothing is written into the repository.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
CORE_CONTRACT = "core-no-runner-cli"
RUNNER = "invkit.runner"


def _config() -> dict:
    return tomllib.loads(PYPROJECT.read_text())["tool"]["importlinter"]


def _contract(contract_id: str) -> dict:
    matches = [c for c in _config()["contracts"] if c.get("id") == contract_id]
    assert len(matches) == 1, f"pyproject.toml has {len(matches)} import-linter contracts with id {contract_id!r}"
    return matches[0]


def _package_dirs(root: Path) -> list[Path]:
    """The directories of the root packages under ``root`` (the repository or a copy of it)."""
    dirs = []
    for name in _config()["root_packages"]:
        for base in (root, root / "plugins"):
            if (base / name / "__init__.py").is_file():
                dirs.append(base / name)
                break
        else:
            dirs.append(root / "plugins" / name)  # missing: lint-imports says so
    return dirs


def lint(root: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` on the tree at ``root`` with the config in ``root/pyproject.toml``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(root), str(root / "plugins"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.setdefault("NO_COLOR", "1")
    env["COLUMNS"] = "200"  # rich wraps long lines otherwise
    code = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    return subprocess.run(
        [sys.executable, "-c", code, "--no-cache", "--no-logo", str(root / "pyproject.toml")],
        cwd=root, env=env, capture_output=True, text=True, timeout=120,
    )


def _verdicts(output: str) -> dict[str, str]:
    """Contract name -> ``KEPT`` / ``BROKEN``, from the summary lines of the output."""
    names = {c["name"] for c in _config()["contracts"]}
    verdicts = {}
    for line in output.splitlines():
        head, _, verdict = line.strip().rpartition(" ")
        if head in names and verdict in ("KEPT", "BROKEN"):
            verdicts[head] = verdict
    return verdicts


def test_the_source_tree_keeps_every_contract():
    result = lint(ROOT)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"lint-imports failed (exit {result.returncode}):\n{output}"
    assert set(_verdicts(output).values()) == {"KEPT"}, output
    assert len(_verdicts(output)) == len(_config()["contracts"]), output


def _invkit_modules() -> set[str]:
    """Every module of the ``invkit`` package, from the file system (nothing is imported)."""
    modules = set()
    for path in (ROOT / "invkit").rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if "__pycache__" in parts:
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules.add(".".join(parts))
    return modules


def test_every_invkit_module_is_core_runner_or_cli():
    contract = _contract(CORE_CONTRACT)
    core = list(contract["source_modules"])
    upper = list(contract["forbidden_modules"])
    runner = [m for m in upper if m == RUNNER or m.startswith(RUNNER + ".")]
    cli = [m for m in upper if m not in runner]
    found = _invkit_modules()
    unclassified = sorted(found - set(core) - set(upper))
    both = sorted(set(core) & set(upper))
    stale = sorted((set(core) | set(upper)) - found)
    duplicated = sorted({m for m in core + upper if (core + upper).count(m) > 1} - set(both))
    assert not unclassified, (
        f"modules of invkit in neither list of the {CORE_CONTRACT!r} import-linter contract in pyproject.toml "
        f"(add each to source_modules if it is core, to forbidden_modules if it is part of the runner or the CLI): {unclassified}"
    )
    assert not both, f"modules listed as both core and runner/CLI in {CORE_CONTRACT!r}: {both}"
    assert not duplicated, f"modules listed twice in {CORE_CONTRACT!r}: {duplicated}"
    assert not stale, f"{CORE_CONTRACT!r} lists modules that do not exist: {stale}"
    assert all(m == "invkit.__main__" or m == "invkit.cli" or m.startswith("invkit.cli.") for m in cli), cli
    runner_contract = _contract("runner-no-cli")
    assert runner_contract["source_modules"] == [RUNNER] and set(runner_contract["forbidden_modules"]) == {"invkit.cli", "invkit.__main__"}


# One forbidden import per case: (contract id, file of the copy relative to its root, code appended).
# Function-level and type-checking imports count too; two cases show it.
BREAKS = {
    # (core modules the runner does not import, and, for the runner case, no plugin imports: otherwise the
    # runner would import the CLI, or a plugin the runner, through them)
    "core-no-runner-cli": ("invkit/checks.py", "\nimport invkit.cli.app\n"),
    "core-no-runner-cli/runner": ("invkit/metrics.py", "\nimport invkit.runner.report\n"),
    "core-no-runner-cli/type-checking": (
        "invkit/checks.py",
        "\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from invkit.cli.solve import to_options\n",
    ),
    "runner-no-cli": ("invkit/runner/report.py", "\nfrom invkit.cli.progress import is_terminal\n"),
    # (a core module no plugin imports: otherwise the plugins would import invkit_operators through it)
    "invkit-no-plugins": ("invkit/metrics.py", "\nimport invkit_operators\n"),
    "invkit-no-plugins/function-level-in-cli": ("invkit/cli/app.py", "\ndef _late():\n    from invkit_solvers import plugin\n"),
    "plugins-no-runner-cli": ("{invkit_priors}/checkpoints/catalogue.py", "\nfrom invkit.runner.progress import format_duration\n"),
    "solvers-no-operators-priors": ("{invkit_solvers}/__init__.py", "\nimport invkit_priors\n"),
    "operators-no-solvers-priors": ("{invkit_operators}/__init__.py", "\nimport invkit_solvers\n"),
    "priors-no-solvers-operators": ("{invkit_priors}/__init__.py", "\nimport invkit_operators\n"),
    "priors-layers": ("{invkit_priors}/networks/inputs.py", "\nimport invkit_priors.checkpoints.safe_load\n"),
    "priors-layers/adapter-reads-files": ("{invkit_priors}/adapters/vp.py", "\ndef _late():\n    from invkit_priors.checkpoints import load\n"),
    "priors-analytic-alone": ("{invkit_priors}/analytic/bases.py", "\nimport invkit_priors.networks.inputs\n"),
    "priors-stack-no-analytic": ("{invkit_priors}/checkpoints/catalogue.py", "\nimport invkit_priors.analytic.bases\n"),
}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the source tree (the root packages' .py files and pyproject.toml)."""
    root = tmp_path_factory.mktemp("tree")
    shutil.copy2(PYPROJECT, root / "pyproject.toml")
    (root / "plugins").mkdir()
    keep_py = lambda folder, names: [n for n in names if n == "__pycache__" or (not n.endswith(".py") and not (Path(folder) / n).is_dir())]  # noqa: E731
    for src in _package_dirs(ROOT):
        if src.is_dir():
            shutil.copytree(src, root / src.relative_to(ROOT), ignore=keep_py)
    return root


def test_every_contract_has_a_failure_case():
    ids = {c.get("id") for c in _config()["contracts"]}
    assert ids == {case.split("/")[0] for case in BREAKS}


@pytest.mark.parametrize("case", sorted(BREAKS))
def test_a_forbidden_import_breaks_its_contract(case: str, pristine: Path, tmp_path: Path):
    contract_id = case.split("/")[0]
    name = _contract(contract_id)["name"]
    root = tmp_path / "tree"
    shutil.copytree(pristine, root)
    relpath, code = BREAKS[case]
    relpath = relpath.format(**{d.name: d.relative_to(ROOT).as_posix() for d in _package_dirs(ROOT)})
    with open(root / relpath, "a") as f:
        f.write(code)
    result = lint(root)
    output = result.stdout + result.stderr
    verdicts = _verdicts(output)
    assert result.returncode == 1, output
    assert verdicts.get(name) == "BROKEN", output
    assert [n for n, v in verdicts.items() if v == "BROKEN"] == [name], f"only {name!r} should break:\n{output}"
    assert "is not allowed to import" in output
