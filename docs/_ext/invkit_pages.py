"""Sphinx extension: reference pages generated from the code, so that they cannot drift.

At ``builder-inited`` it writes reStructuredText into ``<srcdir>/generated/`` (git-ignored,
rewritten on every build; a file is only touched when its text changed):

* ``generated/index.rst``: the landing page, a toctree of the pages below;
* ``generated/solvers/index.rst`` and one page per registered solver
  (``invkit.get_registry().entries("solver")``): module and class docstrings, parameter schema,
  declared requirements, default steps, and the sections of ``docs/measurements.md`` that name
  the solver's module;
* ``generated/operators/index.rst`` and one page per registered operator: docstrings, parameter
  schema, its rung (linear or not; its own SVD or the dense fallback, with the dense memory rule
  of :mod:`invkit.dense`), and its ``invkit check-operator`` command line;
* ``generated/cli.rst``: every subcommand of the real ``invkit`` argument parser
  (:func:`invkit.cli.app.build_parser`), its usage, arguments and options;
* ``generated/hooks.rst``: every hook specification of :mod:`invkit.hookspecs` with its docstring.

Nothing is run but imports, the registry's registration hooks and the argument parser; no
benchmark. The page builders are plain functions (:func:`solver_page`, :func:`operator_page`,
:func:`cli_page`, :func:`hooks_page`, :func:`write_pages`) so that ``tests/test_docs_pages.py``
checks them without a Sphinx build.

Docstrings are rendered as they are written (Google sections through napoleon, as autodoc
would), with ``py:currentmodule`` set to the documented module so that their relative
cross-references resolve to the API pages. A reference from a generated page that still has no
target is rendered as its text (the ``missing-reference`` handler below, which runs after every
other resolver and only for generated pages), so that a plugin's docstring cannot break a
``-W -n`` build; every other page stays nitpicky.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import os
import re
import sys
import types
import unicodedata
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "OUT_DIR",
    "solver_page",
    "operator_page",
    "solvers_index",
    "operators_index",
    "cli_page",
    "hooks_page",
    "index_page",
    "all_pages",
    "write_pages",
    "hookspecs_of",
    "undocumented_hooks",
    "UndocumentedHookError",
    "measurement_sections",
    "sections_naming",
    "markdown_to_rst",
    "cli_commands",
    "setup",
]

#: Folder of the generated pages, relative to the Sphinx source directory.
OUT_DIR = "generated"
#: The committed measurements page, relative to the Sphinx source directory.
MEASUREMENTS = "measurements.md"
#: Its docname, for the link under each benchmark section.
MEASUREMENTS_DOC = "/measurements"
_DOCS_DIR = Path(__file__).resolve().parents[1]
#: Width the argparse usage lines are wrapped at (independent of the terminal that builds).
HELP_WIDTH = 90


class UndocumentedHookError(ValueError):
    """A hook specification has no docstring: the hooks page refuses to document it silently."""


# ---------------------------------------------------------------------------------------- reST helpers
_SPECIAL = re.compile(r"([\\`*_|\[\]<>:])")


def esc(text: str) -> str:
    """``text`` as plain reST text: every character reST could read as markup is escaped."""
    return _SPECIAL.sub(r"\\\1", str(text))


def lit(text: Any) -> str:
    """``text`` as an inline literal (escaped plain text when a literal cannot hold it)."""
    text = str(text)
    if not text:
        return "(empty)"
    if "``" in text or text != text.strip() or "\n" in text:
        return esc(text)
    return f"``{text}``"


def _width(text: str) -> int:
    try:
        from docutils.utils import column_width
    except ImportError:  # pragma: no cover
        return len(text)
    return column_width(text)


def title(text: str, char: str, overline: bool = False) -> str:
    """A section title with an underline (and overline) as long as the title's display width."""
    line = char * max(_width(text), 1)
    return (f"{line}\n{text}\n{line}\n" if overline else f"{text}\n{line}\n")


def indent(text: str, prefix: str = "   ") -> str:
    return "\n".join(prefix + line if line.strip() else "" for line in text.splitlines())


def literal_block(text: str) -> str:
    """``text`` as a literal block (a ``::`` paragraph followed by the indented text)."""
    return "::\n\n" + indent(text.rstrip("\n")) + "\n"


def list_table(header: Sequence[str], rows: Iterable[Sequence[str]], widths: Sequence[int] | None = None) -> str:
    """A ``list-table`` whose cells are reST text (already escaped)."""
    out = [".. list-table::", "   :header-rows: 1"]
    if widths:
        out.append("   :widths: " + " ".join(str(w) for w in widths))
    out.append("")
    for row in [header, *rows]:
        for i, cell in enumerate(row):
            lines = (cell or "").splitlines() or [""]
            first = ("   * - " if i == 0 else "     - ") + lines[0]
            out.append(first.rstrip())
            out.extend(("       " + line) if line.strip() else "" for line in lines[1:])
    return "\n".join(out) + "\n"


def _napoleon(doc: str, what: str) -> str:
    """A Google-style docstring as reST (napoleon, with the settings of docs/conf.py)."""
    if not doc.strip():
        return ""
    try:
        from sphinx.ext.napoleon import Config
        from sphinx.ext.napoleon.docstring import GoogleDocstring
    except ImportError:  # pragma: no cover - sphinx absent: the docstring as written
        return doc
    config = Config(napoleon_use_param=False, napoleon_use_rtype=False, napoleon_use_ivar=True)
    return str(GoogleDocstring(doc, config, what=what))


def _own_doc(obj: Any) -> str:
    """The object's own docstring, cleaned (not one inherited from a base class)."""
    raw = obj.__dict__.get("__doc__") if isinstance(obj, type) else getattr(obj, "__doc__", None)
    return inspect.cleandoc(raw) if isinstance(raw, str) else ""


def _summary(doc: str) -> str:
    return doc.strip().split("\n\n", 1)[0].replace("\n", " ").strip() if doc.strip() else ""


def _docstring_block(doc: str, module: str, what: str) -> str:
    """A docstring as reST, with relative references resolved against ``module``."""
    body = _napoleon(doc, what).rstrip()
    if not body:
        return "*(no docstring)*\n"
    return f".. py:currentmodule:: {module}\n\n{body}\n"


def _attr_docs(module: str) -> dict[tuple[str, str], str]:
    """``#:`` doc-comments of a module's attributes, keyed ``(class or "", name)``."""
    try:
        from sphinx.pycode import ModuleAnalyzer

        found = ModuleAnalyzer.for_module(module).find_attr_docs()
    except Exception:  # noqa: BLE001 - no source, or sphinx absent: no comments
        return {}
    return {key: "\n".join(lines).strip() for key, lines in found.items()}


# ---------------------------------------------------------------------------------------- registry
def _registry(registry: Any = None) -> Any:
    if registry is not None:
        return registry
    from invkit.registry import get_registry

    return get_registry()


def _page_name(name: str) -> str:
    """Docname of a registered name (names are ``[A-Za-z][A-Za-z0-9_.-]*``)."""
    return name


def _params_table(params: Sequence[Any]) -> str:
    if not params:
        return "No parameters.\n"
    rows = []
    for p in params:
        default = "required" if p.required else lit(repr(p.default))
        rows.append([lit(p.name), lit(p.allowed()), default, esc(p.doc) if p.doc else ""])
    return list_table(["Name", "Type / allowed values", "Default", "Meaning"], rows, widths=[16, 22, 14, 48])


def _where(reg: Any) -> str:
    factory = reg.factory
    qual = f"{factory.__module__}.{getattr(factory, '__qualname__', getattr(factory, '__name__', repr(factory)))}"
    return (
        f":Class: {lit(qual)}\n"
        f":Module: {lit(factory.__module__)}\n"
        f":Distribution: {lit(reg.distribution)} (plugin {lit(reg.plugin)})\n"
    )


def _module_doc(modname: str) -> str:
    module = sys.modules.get(modname)
    return inspect.cleandoc(module.__doc__) if module is not None and module.__doc__ else ""


# ---------------------------------------------------------------------------------------- measurements
@dataclass(frozen=True)
class MeasurementSection:
    """One heading of the measurements page and the Markdown under it (up to the next heading of
    the same or a higher level)."""

    title: str
    level: int
    body: str

    @property
    def code_spans(self) -> list[str]:
        return re.findall(r"`+([^`]+?)`+", self.title)


def measurement_sections(path: Path | str | None = None) -> list[MeasurementSection]:
    """The ``##`` (and deeper) sections of the measurements page; ``[]`` when it is absent."""
    path = Path(path) if path is not None else _DOCS_DIR / MEASUREMENTS
    if not path.is_file():
        return []
    sections: list[MeasurementSection] = []
    current: tuple[str, int] | None = None
    body: list[str] = []
    fence = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):
            fence = not fence
        m = None if fence else re.match(r"^(#{2,6})\s+(.*?)\s*#*\s*$", line)
        if m:
            if current is not None:
                sections.append(MeasurementSection(current[0], current[1], "\n".join(body).strip("\n")))
            current, body = (m.group(2), len(m.group(1))), []
        elif current is not None:
            body.append(line)
    if current is not None:
        sections.append(MeasurementSection(current[0], current[1], "\n".join(body).strip("\n")))
    return sections


def _names_module(section: MeasurementSection, module: str) -> bool:
    """Whether a heading names ``module``: a code span ``pkg.mod`` (or ``pkg.mod.X``, ``pkg.mod``
    followed by more words), a bare ``mod`` in a heading that also names another module of
    ``pkg`` (```invkit_solvers.ddnm`, `pigdm```), or ``benchmarks/mod.py``."""
    pkg, _, last = module.rpartition(".")
    spans = [s.strip() for s in section.code_spans]
    words = [s.split()[0] for s in spans if s.split()]
    if any(w == module or w.startswith(module + ".") for w in words):
        return True
    if pkg and last in words and any(w.startswith(pkg + ".") for w in words):
        return True
    return any(w == f"benchmarks/{last}.py" for w in words)


def _table_names(section: MeasurementSection, column: str, name: str) -> bool:
    """Whether a Markdown table of the section has a ``column`` column with a cell naming ``name``:
    equal to it, or it followed by its settings (``diffpir (λ 1.75, ζ 0.3)``, ``dps (ζ′ 12)``)."""
    for table in _tables(section.body):
        header = [c.strip().lower() for c in table[0]]
        if column in header:
            j = header.index(column)
            for row in table[1:]:
                cell = row[j].strip() if j < len(row) else ""
                first = re.split(r"[\s(]", cell, maxsplit=1)[0].strip("`*")
                if first == name:
                    return True
    return False


def sections_naming(
    module: str, name: str | None = None, sections: Sequence[MeasurementSection] | None = None, column: str = "solver"
) -> list[MeasurementSection]:
    """The measurement sections about ``module`` (see :func:`_names_module`), plus, given a
    registered ``name``, those with a table whose ``column`` column (``solver``, ``operator``) lists it."""
    sections = measurement_sections() if sections is None else sections
    return [s for s in sections if _names_module(s, module) or (name is not None and _table_names(s, column, name))]


def _split_row(line: str) -> list[str]:
    line = line.strip()
    if line.startswith("|"):
        line = line[1:]
    if line.endswith("|") and not line.endswith("\\|"):
        line = line[:-1]
    cells, cur, i = [], "", 0
    while i < len(line):
        if line[i] == "\\" and i + 1 < len(line) and line[i + 1] == "|":
            cur += "|"
            i += 2
            continue
        if line[i] == "|":
            cells.append(cur)
            cur = ""
        else:
            cur += line[i]
        i += 1
    cells.append(cur)
    return [c.strip() for c in cells]


_SEP_ROW = re.compile(r"^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$")


def _tables(md: str) -> list[list[list[str]]]:
    out, lines, i = [], md.splitlines(), 0
    while i < len(lines):
        if lines[i].lstrip().startswith("|") and i + 1 < len(lines) and _SEP_ROW.match(lines[i + 1]):
            rows = [_split_row(lines[i])]
            i += 2
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                rows.append(_split_row(lines[i]))
                i += 1
            out.append(rows)
        else:
            i += 1
    return out


_INLINE = re.compile(
    r"(?P<code>(?P<ticks>`+)(?P<codetext>.+?)(?P=ticks))"
    r"|(?P<link>\[(?P<linktext>[^\]]+)\]\((?P<url>[^)\s]+)\))"
    r"|(?P<strong>\*\*(?P<strongtext>[^*\s](?:[^*]*[^*\s])?)\*\*)"
    r"|(?P<em>(?<![\w*])\*(?P<emtext>[^*\s](?:[^*]*[^*\s])?)\*(?![\w*]))"
)


def md_inline(text: str) -> str:
    """Markdown inline text (code spans, links, ``**strong**``, ``*emphasis*``) as reST."""
    parts: list[str] = []
    pos = 0

    def add_markup(markup: str, start: int, end: int) -> None:
        before = text[start - 1] if start > 0 else " "
        after = text[end] if end < len(text) else " "
        if parts and not _may_precede(before):
            parts.append("\\ ")
        parts.append(markup)
        if not _may_follow(after):
            parts.append("\\ ")

    for m in _INLINE.finditer(text):
        parts.append(esc(text[pos : m.start()]))
        if m.group("code"):
            add_markup(lit(m.group("codetext").strip()), m.start(), m.end())
        elif m.group("link"):
            label, url = m.group("linktext"), m.group("url")
            if re.match(r"^[a-z]+://", url):
                add_markup(f"`{esc(label)} <{url}>`__", m.start(), m.end())
            else:  # a relative link: its text, and the target as a literal
                add_markup(f"{md_inline(label)} ({lit(url)})", m.start(), m.end())
        elif m.group("strong"):
            add_markup(f"**{esc(m.group('strongtext'))}**", m.start(), m.end())
        else:
            add_markup(f"*{esc(m.group('emtext'))}*", m.start(), m.end())
        pos = m.end()
    parts.append(esc(text[pos:]))
    out = "".join(parts).strip()
    if _BLOCK_START.match(out):
        out = "\\" + out  # never a bullet, enumerator, comment, doctest or transition at a line's start
    return out


#: Text that reST would read as the start of a block (bullet, enumerator, comment, doctest, transition).
_BLOCK_START = re.compile(
    r"^(([-+*\u2022\u2023\u2043]|[0-9]+[.)]|\([0-9a-zA-Z#]+\)|[a-zA-Z#][.)]|[ivxlcdmIVXLCDM]+[.)])(\s|$)"
    r"|\.\.|>>>|(?P<adorn>[!-/:-@\[-`{-~])(?P=adorn){3,}$)"
)


def _may_precede(char: str) -> bool:
    """Whether reST accepts ``char`` right before an inline markup start-string (else ``\\ `` is put between)."""
    if char.isspace():
        return True
    if _SPECIAL.match(char):  # escaped in the output: keep it apart
        return False
    return char in "-:/'\"<([{" or unicodedata.category(char) in ("Pd", "Po", "Ps", "Pi", "Pf")


def _may_follow(char: str) -> bool:
    """Whether reST accepts ``char`` right after an inline markup end-string."""
    if char.isspace():
        return True
    if _SPECIAL.match(char):
        return False
    return char in "-.,:;!?/'\")]}>" or unicodedata.category(char) in ("Pd", "Po", "Pe", "Pi", "Pf")


def markdown_to_rst(md: str, heading_char: str = "^") -> str:
    """The Markdown of the measurements page as reST: paragraphs, pipe tables (``list-table``),
    bullet lists, fenced code (literal blocks) and headings (as rubrics); inline code, links,
    strong and emphasis. Everything else is escaped text, so that the result always parses."""
    lines = md.splitlines()
    blocks: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if not stripped:
            i += 1
            continue
        if stripped.startswith("```"):
            code: list[str] = []
            i += 1
            while i < len(lines) and not lines[i].strip().startswith("```"):
                code.append(lines[i])
                i += 1
            i += 1
            blocks.append(literal_block("\n".join(code) or " "))
            continue
        if re.match(r"^#{1,6}\s", stripped):
            blocks.append(f".. rubric:: {md_inline(stripped.lstrip('#').strip())}\n")
            i += 1
            continue
        if stripped.startswith("|") and i + 1 < len(lines) and _SEP_ROW.match(lines[i + 1]):
            header = _split_row(lines[i])
            rows: list[list[str]] = []
            i += 2
            while i < len(lines) and lines[i].strip().startswith("|"):
                row = _split_row(lines[i])
                row = (row + [""] * len(header))[: len(header)]
                rows.append(row)
                i += 1
            blocks.append(list_table([md_inline(c) for c in header], [[md_inline(c) for c in r] for r in rows]))
            continue
        if re.match(r"^[-*+]\s", stripped):
            items: list[str] = []
            while i < len(lines) and lines[i].strip():
                cur = lines[i].strip()
                if re.match(r"^[-*+]\s", cur):
                    items.append(cur[2:].strip())
                else:
                    items[-1] += " " + cur
                i += 1
            blocks.append("\n".join(f"* {md_inline(item)}" for item in items) + "\n")
            continue
        para: list[str] = []
        while i < len(lines) and lines[i].strip() and not lines[i].strip().startswith(("```", "|")) and not (
            para and re.match(r"^([-*+]|#{1,6})\s", lines[i].strip())
        ):
            para.append(lines[i].strip())
            i += 1
        blocks.append(md_inline(" ".join(para)) + "\n")
    return "\n".join(blocks)


def _benchmarks(
    module: str, name: str | None, extra_modules: Sequence[str] = (), sections: Sequence[MeasurementSection] | None = None, column: str = "solver"
) -> str:
    found = sections_naming(module, name, sections, column)
    for other in extra_modules:
        found += [s for s in sections_naming(other, None, sections) if s not in found]
    out = [title("Benchmarks", "-"), ""]
    if not found:
        out.append(
            f"No section of the measurements page (:doc:`{MEASUREMENTS_DOC}`) names {lit(module)}: "
            "nothing measured for it has been recorded there.\n"
        )
        return "\n".join(out)
    how = f"name {lit(module)} in their heading" + (f" or list {lit(name)} in a table's ``solver`` column" if name else "")
    how += "".join(f" or name {lit(m)}" for m in extra_modules)
    out.append(
        f"The sections of the measurements page (:doc:`{MEASUREMENTS_DOC}`, ``docs/measurements.md``) that {how}, "
        "as committed (nothing is re-run to build this page).\n"
    )
    for s in found:
        out += [title(md_inline(s.title), "~"), "", markdown_to_rst(s.body), ""]
    return "\n".join(out)


# ---------------------------------------------------------------------------------------- solvers
def _capability_docs() -> dict[str, str]:
    docs = _attr_docs("invkit.requirements")
    return {name: text for (cls, name), text in docs.items() if cls == "Capability"}


def _default_steps(reg: Any) -> str:
    steps = getattr(reg.factory, "default_steps", None)
    if isinstance(steps, int) and not isinstance(steps, bool):
        return str(steps)
    if isinstance(steps, property):  # set per instance, e.g. from a parameter: read one built with defaults
        try:
            from invkit.params import parse_params

            value = reg.factory(**parse_params(reg.params, {}, owner=reg.name)).default_steps
            return f"{value} (with the default parameters; it follows the parameters)"
        except Exception:  # noqa: BLE001
            return "set per instance (from the parameters)"
    return "not stated (the runner's cost estimate assumes 20)"


def solver_page(name: str, registry: Any = None, sections: Sequence[MeasurementSection] | None = None) -> str:
    """The page of registered solver ``name``."""
    reg = _registry(registry).get("solver", name)
    cls = reg.factory
    module = cls.__module__
    requires = sorted(getattr(cls, "requires", frozenset()) or (), key=lambda c: getattr(c, "value", str(c)))
    cap_docs = _capability_docs()
    class_doc = _own_doc(cls)
    out = [title(lit(name), "=", overline=True), ""]
    if _summary(class_doc):
        out += [f".. py:currentmodule:: {module}", "", _summary(class_doc), ""]
    out += [
        _where(reg).rstrip(),
        f":Default steps: {esc(_default_steps(reg))}",
        f":Requires: {', '.join(lit(getattr(c, 'value', c)) for c in requires) or 'nothing'}",
        f":Stochastic: {'yes' if getattr(cls, 'stochastic', True) else 'no (the seed changes nothing)'}",
        f":Per-row generators: {'yes (samples do not depend on ``--batch``)' if getattr(cls, 'row_generators', False) else 'no'}",
        f":Prior evaluations per step: {esc(getattr(cls, 'evaluations_per_step', 1.0))}",
        "",
        "Command line::",
        "",
        f"   invkit solve --solver {name} --solver-arg NAME=VALUE ...",
        "",
        title("Parameters", "-"),
        "",
        f"Given as ``--solver-arg NAME=VALUE`` on the command line, or as keywords to the class (the schema, "
        f"{lit('invkit.schema_of')}, validates both).",
        "",
        _params_table(reg.params),
        title("Requirements", "-"),
        "",
    ]
    if requires:
        out += [
            "A problem (and prior) lacking one of these capabilities is refused before any work, with the solvers "
            "that would take it (``invkit.Capability``):",
            "",
        ]
        for c in requires:
            value = getattr(c, "value", str(c))
            doc = cap_docs.get(getattr(c, "name", ""), "")
            out += [lit(value), indent(doc) if doc else "   (undocumented capability)", ""]
    else:
        out += ["None declared: the solver checks what it gets itself.", ""]
    out += [title("Method", "-"), "", f"The docstring of module {lit(module)}.", "", _docstring_block(_module_doc(module), module, "module"), ""]
    out += [title(f"Class {cls.__name__}", "-"), "", _docstring_block(class_doc, module, "class"), ""]
    out.append(_benchmarks(module, name, sections=sections))
    return "\n".join(out).rstrip() + "\n"


def solvers_index(registry: Any = None) -> str:
    regs = _registry(registry).entries("solver")
    rows = []
    for r in regs:
        req = ", ".join(sorted(lit(getattr(c, "value", c)) for c in getattr(r.factory, "requires", ()) or ()))
        rows.append([f":doc:`{esc(r.name)} <{_page_name(r.name)}>`", _summary(_own_doc(r.factory)), req, esc(_default_steps(r).split(" ")[0])])
    out = [
        title("Solvers", "=", overline=True),
        "",
        "Every solver registered in this build's plugin registry (``invkit plugins`` lists the same), one page each, "
        "generated from the code: docstrings, parameter schema, requirements, default steps and the recorded "
        "benchmarks.",
        "",
        list_table(["Solver", "Summary", "Requires", "Default steps"], rows, widths=[14, 56, 20, 10]) if rows else "No solver is registered.\n",
        ".. toctree::",
        "   :hidden:",
        "",
        *[f"   {_page_name(r.name)}" for r in regs],
    ]
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------- operators
def dense_memory_rule() -> str:
    """The dense fallback's memory rule as :mod:`invkit.dense` states it (``8 (m n + m² + n²)``)."""
    import invkit.dense

    m = re.search(r"memory ``([^`]+)`` bytes", invkit.dense.__doc__ or "")
    return m.group(1) if m else "8 (m n + m² + n²)"


def _rung(cls: type) -> tuple[str, bool, str]:
    from invkit.forward import LinearOperator, SVDOperator

    if issubclass(cls, SVDOperator):
        return "SVD operator (``invkit.SVDOperator``)", True, "own"
    if issubclass(cls, LinearOperator):
        return "linear operator (``invkit.LinearOperator``)", True, "dense"
    return "nonlinear forward model (``invkit.ForwardModel``)", False, "none"


def _mib(nbytes: int) -> str:
    return f"{nbytes / 2**20:.3g} MiB" if nbytes >= 2**20 else f"{nbytes / 2**10:.3g} KiB"


def operator_page(name: str, registry: Any = None, sections: Sequence[MeasurementSection] | None = None) -> str:
    """The page of registered operator ``name``."""
    from invkit.dense import DEFAULT_MAX_SIZE

    registry = _registry(registry)
    reg = registry.get("operator", name)
    cls = reg.factory
    module = cls.__module__
    rung, linear, svd = _rung(cls)
    check_shape = getattr(cls, "check_shape", None)
    shape_text = ",".join(str(s) for s in check_shape) if check_shape else None
    mn: tuple[int, int] | None = None
    if check_shape:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                op = registry.build_operator(name, tuple(check_shape), {})
            mn = (int(op.out_numel), int(op.in_numel))
        except Exception:  # noqa: BLE001 - e.g. a required parameter: no example sizes
            mn = None
    rule = dense_memory_rule()
    out = [title(lit(name), "=", overline=True), ""]
    if _summary(_own_doc(cls)):
        out += [f".. py:currentmodule:: {module}", "", _summary(_own_doc(cls)), ""]
    out += [
        _where(reg).rstrip(),
        f":Rung: {rung}",
        f":Linear: {'yes' if linear else 'no'}",
        ":SVD: "
        + {
            "own": "efficient, its own (no dense matrix is built)",
            "dense": "none of its own: SVD-based solvers use the dense fallback ``invkit.DenseSVD``",
            "none": "none (nonlinear)",
        }[svd],
        f":Check size: {lit(shape_text) if shape_text else 'not declared'}",
        "",
        title("Command lines", "-"),
        "",
        "Run the conformance checks its rung claims, at its check size (``--size C,H,W`` for another), and list its "
        "parameters::",
        "",
        f"   invkit check-operator {name}",
        f"   invkit check-operator {name} --list-params",
        "",
        "Use it (parameters as ``--arg NAME=VALUE``)::",
        "",
        f"   invkit degrade --operator {name} --input clean.png --output y.safetensors",
        f"   invkit solve --operator {name} --simulate --input clean.png --output restored.png",
        "",
        title("Parameters", "-"),
        "",
        _params_table(reg.params),
        title("SVD and memory", "-"),
        "",
    ]
    if svd == "own":
        out.append(
            "It has an efficient SVD of its own (a subclass of ``invkit.SVDOperator``): SVD-based solvers use it at "
            "any size, without a dense matrix. ``invkit check-operator`` verifies it against the dense matrix, which "
            f"costs ``{rule}`` bytes for an ``m × n`` operator (``m`` measurements, ``n`` pixel values), so the check "
            "runs at a small size."
        )
    elif svd == "dense":
        out.append(
            "It has no SVD of its own. SVD-based solvers use the dense fallback ``invkit.DenseSVD``: the ``m × n`` "
            f"matrix (``m`` measurements, ``n`` pixel values) is built and factored, which costs ``{rule}`` bytes "
            f"and one full SVD, cubic in the size; sizes with ``max(m, n)`` above {DEFAULT_MAX_SIZE} "
            "(``invkit.DEFAULT_MAX_SIZE``; a solver's ``max_dense`` parameter) are refused with a message naming the "
            "size."
        )
    else:
        out.append(
            "It is nonlinear: it has no SVD and no dense matrix; solvers that only need a differentiable forward "
            "model (its VJP) take it."
        )
    if mn is not None and linear:
        m, n = mn
        nbytes = 8 * (m * n + m * m + n * n)
        out.append(
            f"\nAt its check size {lit(shape_text)} with the default parameters: ``m = {m}``, ``n = {n}``, so the "
            f"dense matrix and its SVD take {nbytes} bytes ({_mib(nbytes)})."
        )
    out.append("")
    out += [title(f"Class {cls.__name__}", "-"), "", _docstring_block(_own_doc(cls), module, "class"), ""]
    out += [title("Module notes", "-"), "", f"The docstring of module {lit(module)}.", "", _docstring_block(_module_doc(module), module, "module"), ""]
    extra = ["invkit.dense"] if svd == "dense" else []
    out.append(_benchmarks(module, name, extra, sections=sections, column="operator"))
    return "\n".join(out).rstrip() + "\n"


def operators_index(registry: Any = None) -> str:
    regs = _registry(registry).entries("operator")
    rows = []
    for r in regs:
        _, linear, svd = _rung(r.factory)
        svd_text = {"own": "own", "dense": "dense fallback", "none": "none"}[svd]
        rows.append([f":doc:`{esc(r.name)} <{_page_name(r.name)}>`", _summary(_own_doc(r.factory)), "yes" if linear else "no", svd_text])
    out = [
        title("Operators", "=", overline=True),
        "",
        "Every forward operator registered in this build's plugin registry, one page each, generated from the code: "
        "docstrings, parameter schema, linearity, SVD (its own or the dense fallback, whose memory is "
        f"``{dense_memory_rule()}`` bytes for an ``m × n`` operator) and its ``invkit check-operator`` command.",
        "",
        list_table(["Operator", "Summary", "Linear", "SVD"], rows, widths=[18, 60, 8, 14]) if rows else "No operator is registered.\n",
        ".. toctree::",
        "   :hidden:",
        "",
        *[f"   {_page_name(r.name)}" for r in regs],
    ]
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------- CLI
@contextlib.contextmanager
def _help_width(width: int = HELP_WIDTH) -> Iterator[None]:
    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(width)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = saved


def cli_commands(registry: Any = None) -> list[tuple[str, argparse.ArgumentParser, str]]:
    """``(command path, parser, one-line help)`` for the program and every (sub)subcommand, depth first."""
    from invkit.cli.app import build_parser

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parser, _ = build_parser(_registry(registry))
    out: list[tuple[str, argparse.ArgumentParser, str]] = []

    def walk(path: str, p: argparse.ArgumentParser, help_text: str) -> None:
        out.append((path, p, help_text))
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                helps = {a.dest: a.help or "" for a in action._choices_actions}
                for sub_name, sub in action.choices.items():
                    walk(f"{path} {sub_name}", sub, helps.get(sub_name, ""))

    walk("invkit", parser, parser.description or "")
    return out


def _is_raw(parser: argparse.ArgumentParser) -> bool:
    return issubclass(parser.formatter_class, argparse.RawDescriptionHelpFormatter)


def _text_block(text: str, raw: bool) -> str:
    """A description or epilog: a literal block when the parser keeps its line breaks, else a paragraph."""
    if raw:
        return literal_block(text)
    return "\n\n".join(esc(" ".join(par.split())) for par in re.split(r"\n\s*\n", text.strip())) + "\n"


def _invocation(action: argparse.Action, formatter: argparse.HelpFormatter) -> str:
    if not action.option_strings:
        return formatter._metavar_formatter(action, action.dest)(1)[0]
    if action.nargs == 0:
        return ", ".join(action.option_strings)
    args = formatter._format_args(action, action.dest.upper())
    return ", ".join(f"{o} {args}" for o in action.option_strings)


def _action_entry(action: argparse.Action, formatter: argparse.HelpFormatter) -> str:
    term = lit(_invocation(action, formatter))
    body: list[str] = []
    if action.help:
        body.append(esc(" ".join(formatter._expand_help(action).split())))
    extras = []
    if action.choices is not None and not isinstance(action, argparse._SubParsersAction):
        extras.append("choices: " + ", ".join(lit(c) for c in action.choices))
    help_text = (action.help or "").lower()
    if isinstance(action, argparse._AppendAction) and "repeatable" not in help_text:
        extras.append("repeatable")
    default = action.default
    if (
        action.option_strings
        and default is not None
        and default is not argparse.SUPPRESS
        and default is not False
        and default != []
        and "default" not in help_text
    ):
        extras.append(f"default: {lit(default)}")
    if action.required and action.option_strings:
        extras.append("required")
    if extras:
        body.append("(" + "; ".join(extras) + ")")
    return term + "\n" + indent(" ".join(body) if body else "(no help)") + "\n"


def _documented_actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.help is not argparse.SUPPRESS and not isinstance(a, argparse._SubParsersAction)]


def cli_page(registry: Any = None) -> str:
    """The command-line reference: every (sub)command of the real ``invkit`` parser."""
    out = [
        title("Command line", "=", overline=True),
        "",
        "Generated from the ``invkit`` argument parser itself (``invkit.cli.app.build_parser``, with the "
        "subcommands the installed plugins add), so every option below is one the program accepts. "
        "``invkit COMMAND --help`` prints the same.",
        "",
    ]
    with _help_width():
        for path, parser, help_text in cli_commands(registry):
            formatter = parser._get_formatter()
            depth = path.count(" ")
            out += [title(lit(path), "-" if depth <= 1 else "~"), ""]
            if help_text and depth:
                out += [esc(" ".join(help_text.split())) + ("" if help_text.rstrip().endswith(".") else "."), ""]
            out += ["Usage" + literal_block(_usage(parser)), ""]
            if parser.description and depth:
                out += [_text_block(parser.description, _is_raw(parser)), ""]
            subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
            for sub in subs:
                names = [f":ref:`{esc(path + ' ' + c)} <{_cli_label(path + ' ' + c)}>`" for c in sub.choices]
                out += ["Subcommands: " + ", ".join(names) + ".", ""]
            positional = [a for a in _documented_actions(parser) if not a.option_strings]
            options = [a for a in _documented_actions(parser) if a.option_strings]
            for heading, actions in (("Arguments", positional), ("Options", options)):
                if actions:
                    out += [f".. rubric:: {heading}", ""]
                    out += [_action_entry(a, formatter) for a in actions]
            if parser.epilog:
                out += [".. rubric:: Details", "", _text_block(parser.epilog, _is_raw(parser)), ""]
    text = "\n".join(out).rstrip() + "\n"
    # one label per command, for the "Subcommands" links
    for path, _, _ in cli_commands(registry):
        heading = title(lit(path), "-" if path.count(" ") <= 1 else "~")
        text = text.replace(heading, f".. _{_cli_label(path)}:\n\n{heading}", 1)
    return text


def _usage(parser: argparse.ArgumentParser) -> str:
    """The usage lines without ``usage:``, continuation lines dedented to match."""
    prefix = "usage: "
    lines = parser.format_usage().rstrip().splitlines()
    if lines and lines[0].startswith(prefix):
        lines = [lines[0][len(prefix) :]] + [ln[len(prefix) :] if ln.startswith(" " * len(prefix)) else ln for ln in lines[1:]]
    return "\n".join(lines)


def _cli_label(path: str) -> str:
    return "invkit-cli-" + re.sub(r"[^a-z0-9]+", "-", path.lower()).strip("-")


# ---------------------------------------------------------------------------------------- hooks
def hookspecs_of(module: types.ModuleType | None = None) -> list[tuple[str, Any]]:
    """``(name, function)`` of every hook specification of ``module`` (default :mod:`invkit.hookspecs`), in source order."""
    if module is None:
        import invkit.hookspecs as module
    project = getattr(module, "PROJECT", "invkit")
    found = [(n, f) for n, f in vars(module).items() if inspect.isfunction(f) and hasattr(f, f"{project}_spec")]
    return sorted(found, key=lambda nf: nf[1].__code__.co_firstlineno)


def _signature_text(fn: Any) -> str:
    """``(a: T, b: U = 1) -> R`` with annotations as written (string annotations unquoted)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # pragma: no cover
        return "(...)"

    def ann(a: Any) -> str:
        return a if isinstance(a, str) else inspect.formatannotation(a)

    params = []
    for p in sig.parameters.values():
        text = p.name if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) else ("*" if p.kind == p.VAR_POSITIONAL else "**") + p.name
        if p.annotation is not p.empty:
            text += f": {ann(p.annotation)}"
        if p.default is not p.empty:
            text += f" = {p.default!r}"
        params.append(text)
    ret = "" if sig.return_annotation is sig.empty else f" -> {ann(sig.return_annotation)}"
    return f"({', '.join(params)}){ret}"


def undocumented_hooks(module: types.ModuleType | None = None) -> list[str]:
    """Names of the hook specifications of ``module`` without a docstring."""
    return [n for n, f in hookspecs_of(module) if not _own_doc(f)]


def hooks_page(module: types.ModuleType | None = None) -> str:
    """The plugin hooks page: every hook specification of ``module`` with its signature and docstring.

    Raises:
        UndocumentedHookError: A hook specification has no docstring.
    """
    if module is None:
        import invkit.hookspecs as module
    missing = undocumented_hooks(module)
    if missing:
        raise UndocumentedHookError(f"hook specifications without a docstring in {module.__name__}: {', '.join(missing)}")
    project = getattr(module, "PROJECT", "invkit")
    modname = module.__name__
    out = [
        title("Plugin hooks", "=", overline=True),
        "",
        f"Generated from {lit(modname)}: every hook a plugin can implement, with its specification's docstring.",
        "",
        _docstring_block(_module_doc(modname), modname, "module"),
        "",
    ]
    for name, fn in hookspecs_of(module):
        opts = getattr(fn, f"{project}_spec", {}) or {}
        flags = [k for k in ("firstresult", "historic") if opts.get(k)]
        if opts.get("warn_on_impl"):
            flags.append("deprecated")
        sig = _signature_text(fn)
        out += [
            title(lit(name), "-"),
            "",
            "Implement it in a plugin module as::",
            "",
            f"   @hookimpl",
            f"   def {name}{sig}: ...",
            "",
        ]
        if flags:
            out += ["Hook options: " + ", ".join(lit(f) for f in flags) + ".", ""]
        out += [_docstring_block(_own_doc(fn), modname, "function"), ""]
    attrs = _attr_docs(modname)
    public = [n for n in getattr(module, "__all__", ()) if n not in {"PROJECT", "hookimpl", "hookspec"}]
    aliases = [(n, attrs.get(("", n), "")) for n in public if ("", n) in attrs]
    classes = [(n, getattr(module, n)) for n in public if isinstance(getattr(module, n, None), type)]
    if aliases or classes:
        out += [title("Types the hooks use", "-"), ""]
        for n, doc in aliases:
            out += [f"{lit(n)}", indent(_napoleon(doc, "data").strip() or "(undocumented)"), ""]
        for n, cls in classes:
            out += [title(f"Class {n}", "~"), "", _docstring_block(_own_doc(cls), modname, "class"), ""]
            for mname, member in vars(cls).items():
                if inspect.isfunction(member) and not mname.startswith("_"):
                    out += [f"{lit(mname + _signature_text(member))}", indent(_napoleon(_own_doc(member), "method").strip() or "(undocumented)"), ""]
    return "\n".join(out).rstrip() + "\n"


# ---------------------------------------------------------------------------------------- assembly
def index_page() -> str:
    return "\n".join(
        [
            title("Plugins and command line", "=", overline=True),
            "",
            "Reference pages generated from the code at every build (``docs/_ext/invkit_pages.py``): the registered "
            "solvers and operators, the ``invkit`` command line and the plugin hooks. They cannot drift from the code; "
            "benchmark numbers come from the committed measurements page, never from a run during the build.",
            "",
            ".. toctree::",
            "   :maxdepth: 1",
            "",
            "   solvers/index",
            "   operators/index",
            "   cli",
            "   hooks",
            "",
        ]
    )


def all_pages(registry: Any = None, measurements: Path | str | None = None) -> dict[str, str]:
    """Every generated page: ``relative path -> reST``."""
    registry = _registry(registry)
    sections = measurement_sections(measurements)
    pages = {"index.rst": index_page(), "cli.rst": cli_page(registry), "hooks.rst": hooks_page()}
    pages["solvers/index.rst"] = solvers_index(registry)
    for r in registry.entries("solver"):
        pages[f"solvers/{_page_name(r.name)}.rst"] = solver_page(r.name, registry, sections)
    pages["operators/index.rst"] = operators_index(registry)
    for r in registry.entries("operator"):
        pages[f"operators/{_page_name(r.name)}.rst"] = operator_page(r.name, registry, sections)
    return pages


def write_pages(outdir: Path | str, registry: Any = None, measurements: Path | str | None = None) -> list[Path]:
    """Write :func:`all_pages` under ``outdir``; a file is rewritten only when its text changed, and
    ``.rst`` files there that no longer belong (a solver uninstalled) are removed. Returns the paths."""
    outdir = Path(outdir)
    pages = all_pages(registry, measurements)
    written = []
    for rel, text in pages.items():
        path = outdir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
        written.append(path)
    keep = {p.resolve() for p in written}
    for stale in outdir.rglob("*.rst"):
        if stale.resolve() not in keep:
            stale.unlink()
    return written


# ---------------------------------------------------------------------------------------- Sphinx
def _on_builder_inited(app: Any) -> None:
    from sphinx.util import logging

    logger = logging.getLogger(__name__)
    from invkit.registry import get_registry

    registry = get_registry()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        registry.names("solver")
    for message in registry.warnings:
        logger.warning("invkit_pages: plugin problem: %s", message)
    srcdir = Path(app.srcdir)
    out = write_pages(srcdir / app.config.invkit_pages_dir, registry, srcdir / app.config.invkit_pages_measurements)
    logger.info("invkit_pages: %d pages in %s", len(out), app.config.invkit_pages_dir)


def _unresolved_as_text(app: Any, env: Any, node: Any, contnode: Any) -> Any:
    """A reference from a generated page that no resolver found: its text, without a warning."""
    prefix = app.config.invkit_pages_dir.strip("/") + "/"
    if str(node.get("refdoc", "")).startswith(prefix):
        return contnode
    return None


def setup(app: Any) -> dict[str, Any]:
    app.add_config_value("invkit_pages_dir", OUT_DIR, "env")
    app.add_config_value("invkit_pages_measurements", MEASUREMENTS, "env")
    app.connect("builder-inited", _on_builder_inited)
    # after every other resolver (docs/conf.py's alias handler runs at the default 500)
    app.connect("missing-reference", _unresolved_as_text, priority=900)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
