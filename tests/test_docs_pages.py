"""The generated documentation pages (docs/_ext/invkit_pages.py), checked without a Sphinx build.

Every registered solver and operator gets a page (a registry with one more solver and operator
gets pages for them, and a page set built without them is reported as missing them); every hook
specification is on the hooks page with its docstring (an undocumented one is refused); the CLI
page lists every option of every (sub)command the real parser defines; each page parses as
reStructuredText without a warning (docutils, with stand-ins for the few Sphinx roles and
directives the pages use).
"""

from __future__ import annotations

import collections
import io
import re
import sys
import types
import warnings
from pathlib import Path
from typing import Annotated, Any

import pluggy
import pytest
import torch

pytest.importorskip("docutils")
from docutils import nodes  # noqa: E402
from docutils.core import publish_doctree  # noqa: E402
from docutils.parsers.rst import Directive, directives, roles  # noqa: E402

import invkit  # noqa: E402
from invkit import Arg, Capability, LinearOperator, Param, Result, Solver, hookimpl  # noqa: E402
from invkit.registry import Registry, get_registry, use_registry  # noqa: E402

DOCS = Path(__file__).resolve().parents[1] / "docs"
sys.path.insert(0, str(DOCS / "_ext"))
import invkit_pages as ip  # noqa: E402

SPHINX_ROLES = "func class meth attr data mod exc obj const doc ref any term".split()
SPHINX_DIRECTIVES = ("toctree", "py:currentmodule", "currentmodule")


class _Stub(Directive):
    """Stand-in for a Sphinx directive: accepts any arguments, options and content."""

    has_content = True
    optional_arguments = 10
    final_argument_whitespace = True
    option_spec = collections.defaultdict(lambda: directives.unchanged)

    def run(self) -> list[nodes.Node]:
        return []


def rst_problems(text: str, name: str = "page") -> str:
    """Everything docutils reports at WARNING level or above while parsing ``text`` ("" when clean)."""
    from sphinx.util.docutils import docutils_namespace  # restores docutils' role/directive tables

    with docutils_namespace():
        for role in SPHINX_ROLES:
            for n in (role, f"py:{role}", f"std:{role}"):
                roles.register_generic_role(n, nodes.literal)
        for d in SPHINX_DIRECTIVES:
            directives.register_directive(d, _Stub)
        stream = io.StringIO()
        try:
            publish_doctree(text, source_path=name, settings_overrides={"report_level": 2, "halt_level": 2, "warning_stream": stream})
        except Exception as exc:  # noqa: BLE001 - a SystemMessage at halt_level, reported below
            return f"{exc}\n{stream.getvalue()}"
        return stream.getvalue()


def test_the_checker_catches_bad_rst() -> None:
    assert rst_problems("Title long\n=====\n\ntext")
    assert rst_problems("an *unclosed emphasis")
    assert rst_problems(":nosuchrole:`x`")
    assert rst_problems("Fine ``literal`` and :class:`invkit.Solver`.\n\n.. toctree::\n   :hidden:\n\n   a\n") == ""


@pytest.fixture(scope="module")
def pages() -> dict[str, str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ip.all_pages()


def missing_pages(registry: Registry, pages: dict[str, str]) -> list[str]:
    """``kind/name`` of every registered solver and operator without a page (or not on its index)."""
    out = []
    for kind, folder in (("solver", "solvers"), ("operator", "operators")):
        index = pages.get(f"{folder}/index.rst", "")
        for name in registry.names(kind):
            page = pages.get(f"{folder}/{name}.rst", "")
            if f"``{name}``" not in page or f"   {name}\n" not in index:
                out.append(f"{kind}/{name}")
    return out


def test_every_registered_solver_and_operator_has_a_page(pages: dict[str, str]) -> None:
    registry = get_registry()
    assert registry.names("solver") and registry.names("operator")
    assert missing_pages(registry, pages) == []
    for kind, folder in (("solver", "solvers"), ("operator", "operators")):
        for reg in registry.entries(kind):
            page = pages[f"{folder}/{reg.name}.rst"]
            assert f"``{reg.factory.__module__}``" in page
            for p in reg.params:
                assert f"``{p.name}``" in page, (reg.name, p.name)
                assert ("required" if p.required else f"``{p.default!r}``") in page


# -------------------------------------------------------------------- a registry with one more solver and operator
class ProbeSolver(Solver):
    """Probe solver for the docs test: returns the measurement's back-projection.

    It exists only in this test, to show that a newly registered solver gets its page.
    """

    name = "docs_probe"
    requires = frozenset({Capability.LINEAR, Capability.GAUSSIAN_NOISE})
    default_steps = 7

    def __init__(self, weight: Annotated[float, Arg("probe weight, unitless", min=0.0)] = 0.25) -> None:
        self.weight = weight

    def solve(self, problem: Any, prior: Any, *, steps: int | None = None, generator: Any = None, callback: Any = None) -> Result:
        self.check(problem, prior)
        return Result(x=problem.operator.adjoint(problem.y))


class ProbeGain(LinearOperator):
    """Probe operator for the docs test: ``y = scale x``, without an SVD of its own."""

    name = "docs_probe_gain"
    params = (Param("scale", float, 2.0, "gain, unitless", min=0.0),)
    check_shape = (1, 4, 4)

    def __init__(self, in_shape: Any, *, scale: float = 2.0) -> None:
        super().__init__(in_shape, scale=scale)

    @property
    def out_shape(self) -> tuple[int, ...]:
        return self.in_shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.config["scale"]

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return y * self.config["scale"]


class _ProbePlugin:
    @hookimpl
    def invkit_register_solvers(self, register: Any) -> None:
        register(ProbeSolver.name, ProbeSolver)

    @hookimpl
    def invkit_register_operators(self, register: Any) -> None:
        register(ProbeGain.name, ProbeGain)


def test_a_newly_registered_solver_and_operator_get_pages(pages: dict[str, str]) -> None:
    registry = Registry(entry_points=False, plugins=[(_ProbePlugin(), "docs_probe_plugin", "docs-probe-dist")])
    # the pages of the installed registry lack them: the check that the docs test runs would fail
    assert missing_pages(registry, pages) == ["solver/docs_probe", "operator/docs_probe_gain"]
    with use_registry(registry):  # what the Sphinx extension sees (it calls get_registry())
        mine = ip.all_pages()
    assert missing_pages(registry, mine) == []
    solver = mine["solvers/docs_probe.rst"]
    assert "Probe solver for the docs test" in solver
    assert "``weight``" in solver and "``0.25``" in solver and "probe weight, unitless" in solver
    assert ":Default steps: 7" in solver
    assert ":Requires: ``gaussian_noise``, ``linear``" in solver
    assert "``docs-probe-dist``" in solver
    op = mine["operators/docs_probe_gain.rst"]
    assert ":Linear: yes" in op and "dense fallback" in op
    assert "``8 (m n + m² + n²)``" in op
    assert "``m = 16``, ``n = 16``" in op and str(8 * (16 * 16 * 3)) in op
    assert "invkit check-operator docs_probe_gain" in op
    for name, text in mine.items():
        assert rst_problems(text, name) == "", name


def test_solver_pages_show_requirements_steps_and_docstrings(pages: dict[str, str]) -> None:
    registry = get_registry()
    for reg in registry.entries("solver"):
        page = pages[f"solvers/{reg.name}.rst"]
        for cap in reg.factory.requires:
            assert f"``{cap.value}``" in page
        steps = reg.factory.default_steps
        if isinstance(steps, int):
            assert f":Default steps: {steps}" in page
        module_doc = sys.modules[reg.factory.__module__].__doc__
        first = " ".join(module_doc.strip().split("\n\n")[0].split())
        assert first in " ".join(page.split()), reg.name
    assert ":Default steps: 500 (with the default parameters" in pages["solvers/hio.rst"]  # a property, read from an instance


def test_solver_pages_include_their_measurements(pages: dict[str, str]) -> None:
    expected = {
        "ddrm": ["DDRM against exact posteriors"],
        "dps": ["DPS against exact posteriors", "DPS without guidance", "DPS step sizes", "DPS on the evaluation photos"],
        "ddnm": ["DDNM⁺, ΠGDM and DiffPIR against exact posteriors"],
        "ddnm_plus": ["DDNM⁺, ΠGDM and DiffPIR against exact posteriors"],
        "pigdm": ["DDNM⁺, ΠGDM and DiffPIR against exact posteriors"],
        "diffpir": ["DDNM⁺, ΠGDM and DiffPIR against exact posteriors"],
        "hio": ["DPS on the evaluation photos"],  # its rows in the table's solver column
    }
    # the photo grid: solver cells with settings ("diffpir (λ 1.75, ζ 0.3)") count as naming the solver
    for name in ("ddnm", "ddnm_plus", "pigdm", "diffpir", "dps"):
        expected[name] = [*expected.get(name, []), "DDNM, ΠGDM and DiffPIR on the evaluation photos"]
    for name in ("ddrm", "ddnm", "ddnm_plus", "pigdm", "diffpir"):  # the script's own 20-step table (a subsection)
        expected[name].append("20 steps, 128², default prior")
    for name, titles in expected.items():
        page = pages[f"solvers/{name}.rst"]
        for t in titles:
            assert t in page, (name, t)
    assert "DDRM against exact posteriors" not in pages["solvers/dps.rst"]
    assert "No section of the measurements page" in pages["solvers/exact.rst"]
    assert "list-table" in pages["solvers/ddrm.rst"]  # the Markdown tables came through as tables


def test_measurement_sections_convert_to_valid_rst() -> None:
    sections = ip.measurement_sections(DOCS / "measurements.md")
    assert len(sections) >= 5
    for s in sections:
        text = ip.title(ip.md_inline(s.title), "~") + "\n" + ip.markdown_to_rst(s.body)
        assert rst_problems(text, s.title) == "", s.title
    tricky = (
        "1. not a list; a `code`s b**c** *em*x [link](http://example.org) [rel](other.md) a|b x_ y* ``p(y | x_t)``\n\n"
        "- item one `x`\n  continued\n- item two\n\n| a | b |\n|---|---|\n| `1` | |\n| -3 | (4) |\n\n```\ncode *here*\n```\n"
    )
    out = ip.markdown_to_rst(tricky)
    assert rst_problems(out) == "", out
    assert "``p(y | x_t)``" in out and "list-table" in out


def test_operator_pages_state_linearity_svd_and_check_command(pages: dict[str, str]) -> None:
    from invkit.forward import LinearOperator as Linear
    from invkit.forward import SVDOperator

    for reg in get_registry().entries("operator"):
        page = pages[f"operators/{reg.name}.rst"]
        linear = issubclass(reg.factory, Linear)
        assert f":Linear: {'yes' if linear else 'no'}" in page
        if issubclass(reg.factory, SVDOperator):
            assert ":SVD: efficient, its own" in page
        assert f"invkit check-operator {reg.name}" in page
        assert "8 (m n + m² + n²)" in page or not linear
    assert "check-operator" in {path.split()[-1] for path, _, _ in ip.cli_commands()}


# -------------------------------------------------------------------- hooks
def test_every_hookspec_is_on_the_hooks_page(pages: dict[str, str]) -> None:
    import invkit.hookspecs as hs

    page = pages["hooks.rst"]
    flat = " ".join(page.split())
    specs = ip.hookspecs_of(hs)
    assert {n for n, _ in specs} == {"invkit_register_operators", "invkit_register_priors", "invkit_register_solvers", "invkit_register_commands"}
    # independently of hookspecs_of: the hooks pluggy itself registers from the module
    pm = pluggy.PluginManager("invkit")
    pm.add_hookspecs(hs)
    assert {n for n, _ in specs} == {n for n in vars(pm.hook) if not n.startswith("_")}
    for name, fn in specs:
        assert f"``{name}``\n" in page
        doc = fn.__doc__.strip()
        assert " ".join(doc.split("\n\n")[0].split()) in flat, name
        code = re.findall(r"^\s*(register\(.*\)|cli\.add_command\(.*\))$", doc, re.M)
        assert code and all(c.strip() in page for c in code), name


def _dummy_hookspecs(documented: bool) -> types.ModuleType:
    module = types.ModuleType("dummy_hookspecs")
    module.PROJECT = "invkit"

    @invkit.hookspec
    def invkit_register_widgets(register: Any) -> None:
        pass

    if documented:
        invkit_register_widgets.__doc__ = "Register widget classes by name.\n\nExample:\n    ::\n\n        register('w', W)\n"
    module.invkit_register_widgets = invkit_register_widgets
    return module


def test_an_undocumented_hookspec_is_refused() -> None:
    bare = _dummy_hookspecs(documented=False)
    assert ip.undocumented_hooks(bare) == ["invkit_register_widgets"]
    with pytest.raises(ip.UndocumentedHookError, match="invkit_register_widgets"):
        ip.hooks_page(bare)
    documented = _dummy_hookspecs(documented=True)
    assert ip.undocumented_hooks(documented) == []
    page = ip.hooks_page(documented)
    assert "``invkit_register_widgets``" in page and "Register widget classes by name." in page and "register('w', W)" in page
    assert rst_problems(page) == ""


# -------------------------------------------------------------------- CLI
def test_cli_page_lists_every_option_of_every_command(pages: dict[str, str]) -> None:
    import argparse

    page = pages["cli.rst"]
    commands = ip.cli_commands()
    paths = [path for path, _, _ in commands]
    assert {"invkit", "invkit solve", "invkit degrade", "invkit check-operator", "invkit plugins"} <= set(paths)
    # the page in command order, each command's block cut at the next command's title
    starts = [page.index(f"``{path}``\n" + "-~"[path.count(" ") > 1] * len(f"``{path}``")) for path in paths]
    assert starts == sorted(starts)
    blocks = dict(zip(paths, (page[a:b] for a, b in zip(starts, starts[1:] + [len(page)]))))
    checked = 0
    for path, parser, _ in commands:
        block = blocks[path]
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices:
                    assert f"{path} {sub}" in block
                continue
            if action.help is argparse.SUPPRESS:
                continue
            if action.option_strings:
                term = re.search(r"^``(" + re.escape(action.option_strings[0]) + r"\b[^`]*)``$", block, re.M)
                assert term, (path, action.option_strings)
                for opt in action.option_strings:
                    assert opt in term.group(1), (path, opt)
            else:
                assert re.search(r"^``" + re.escape(action.metavar or action.dest) + r"``$", block, re.M), (path, action.dest)
            checked += 1
    assert checked > 40


# -------------------------------------------------------------------- every page parses; writing
def test_every_page_parses_as_rst(pages: dict[str, str]) -> None:
    assert {"index.rst", "cli.rst", "hooks.rst", "solvers/index.rst", "operators/index.rst"} <= set(pages)
    for name, text in pages.items():
        assert rst_problems(text, name) == "", name


def test_write_pages_rewrites_only_changes_and_removes_stale(tmp_path: Path) -> None:
    out = tmp_path / "generated"
    stale = out / "solvers" / "uninstalled.rst"
    stale.parent.mkdir(parents=True)
    stale.write_text("old")
    registry = Registry(entry_points=False, plugins=[(_ProbePlugin(), "docs_probe_plugin", "docs-probe-dist")])
    written = ip.write_pages(out, registry)
    assert not stale.exists()
    assert {p.relative_to(out).as_posix() for p in written} == {
        "index.rst", "cli.rst", "hooks.rst", "solvers/index.rst", "solvers/docs_probe.rst",
        "operators/index.rst", "operators/docs_probe_gain.rst",
    }
    mtimes = {p: p.stat().st_mtime_ns for p in written}
    ip.write_pages(out, registry)
    assert {p: p.stat().st_mtime_ns for p in written} == mtimes


def test_the_generated_folder_is_git_ignored() -> None:
    ignore = (DOCS / ip.OUT_DIR / ".gitignore").read_text().split()
    assert "*" in ignore and "!.gitignore" in ignore


def test_operator_pages_include_their_benchmark_rows(pages: dict[str, str]) -> None:
    """benchmarks/operators.py's table (its ``operator`` column) reaches every built-in operator's page."""
    for name in ("gaussian_blur", "blur", "inpainting", "phase_retrieval", "compressed_sensing", "colorization"):
        page = pages[f"operators/{name}.rst"]
        assert "Operators at photo sizes" in page and "No section of the measurements page" not in page, name
