"""Which public object is documented where, and under which name (read by docs/conf.py).

Every public module of invkit and of the built-in plugins gets one API page (autosummary,
template ``_templates/autosummary/module.rst``). A public object is documented once, on the page
of the module that defines it, under its *shortest public name*: ``invkit.forward.SVDOperator`` is
documented as :class:`invkit.SVDOperator` because ``invkit.__all__`` re-exports it; objects no
package re-exports keep their module path (``invkit.io.write_image``). A package page lists its
re-exports in a table linking to those entries. :data:`ALIASES` maps every other spelling
(``invkit.forward.SVDOperator``, ``invkit.schedules.ddrm_schedule``) to the documented name, so
that type hints and docstring references in either spelling resolve (docs/conf.py's
``missing-reference`` handler).

Public members of a module: its ``__all__`` when it has one; otherwise the classes and functions
it defines whose names do not start with ``_``, and its data with a ``#:`` doc-comment (or a
docstring after the assignment).
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path

from sphinx.pycode import ModuleAnalyzer

ROOTS = ("invkit", "invkit_operators", "invkit_priors", "invkit_solvers")


@dataclass
class ModuleInfo:
    """What one module page shows."""

    #: ``(directive, documented name)`` for every object this module defines, in source order.
    documented: list[tuple[str, str]] = field(default_factory=list)
    #: Documented names of the objects this package re-exports from its submodules (a table).
    reexports: list[str] = field(default_factory=list)
    #: The public submodules of a package.
    submodules: list[str] = field(default_factory=list)


def public_modules() -> list[str]:
    """Every importable module of the roots whose dotted name has no part starting with ``_``."""
    names = []
    for root in ROOTS:
        pkg = importlib.import_module(root)
        names.append(root)
        for info in pkgutil.walk_packages(pkg.__path__, prefix=f"{root}."):
            if not any(part.startswith("_") for part in info.name.split(".")):
                names.append(info.name)
    return sorted(names)


def _imports(modname: str) -> dict[str, tuple[str, str]]:
    """``name -> (module, name there)`` for the ``from X import name`` statements of a module."""
    module = importlib.import_module(modname)
    path = Path(inspect.getfile(module))
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = modname if path.name == "__init__.py" else modname.rpartition(".")[0]
    found = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            source = (f"{base}.{node.module}" if node.module else base) if node.level else node.module
            for alias in node.names:
                found[alias.asname or alias.name] = (source, alias.name)
    return found


def _home(modname: str, name: str, modules: set[str]) -> tuple[str, str]:
    """The module (one of ``modules``) that defines ``modname.name``, and its name there."""
    seen = set()
    while (modname, name) not in seen:
        seen.add((modname, name))
        source = _imports(modname).get(name)
        if source is None or source[0] not in modules:
            return modname, name
        modname, name = source
    return modname, name


def _members(modname: str) -> list[str]:
    module = importlib.import_module(modname)
    names = getattr(module, "__all__", None)
    if names is not None:
        # Hook specifications (``invkit.hookspecs``) are the contract plugins implement, though
        # not names anyone imports.
        hooks = [n for n, o in vars(module).items() if inspect.isfunction(o) and hasattr(o, "invkit_spec")]
        return [n for n in names if not n.startswith("__")] + hooks
    attr_docs = ModuleAnalyzer.for_module(modname).find_attr_docs()
    members = []
    for name, obj in vars(module).items():
        if name.startswith("_"):
            continue
        if (inspect.isclass(obj) or inspect.isfunction(obj)) and obj.__module__ == modname:
            members.append(name)
        elif ("", name) in attr_docs:
            members.append(name)
    return members


def _directive(obj: object) -> str:
    if inspect.isclass(obj) and issubclass(obj, BaseException):
        return "autoexception"
    if inspect.isclass(obj):
        return "autoclass"
    if inspect.isfunction(obj):
        return "autofunction"
    return "autodata"


def collect() -> tuple[dict[str, ModuleInfo], dict[str, str]]:
    """Module name -> :class:`ModuleInfo`, and every alias -> its documented name."""
    modules = public_modules()
    module_set = set(modules)
    homes: dict[tuple[str, str], list[str]] = {}  # (module, name) -> every public spelling
    for modname in modules:
        for name in _members(modname):
            homes.setdefault(_home(modname, name, module_set), []).append(f"{modname}.{name}")
    info = {m: ModuleInfo() for m in modules}
    aliases: dict[str, str] = {}
    for (home_mod, name), spellings in homes.items():
        spellings.append(f"{home_mod}.{name}")
        # The shortest spelling that is not also a module's name (``invkit.runner.degrade`` is a
        # module and the function the package re-exports: the function keeps its module path).
        # Among equally short spellings the home wins (``kernels.gaussian_kernel``, not the
        # ``blur.gaussian_kernel`` that blur re-exports).
        home = f"{home_mod}.{name}"
        documented = min(set(spellings) - module_set, key=lambda s: (s.count("."), s != home, s))
        obj = getattr(importlib.import_module(home_mod), name)
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            # Data keep their home path: autodoc reads their ``#:`` doc-comment from the source of
            # the module it documents them in (elsewhere it would show ``dict``'s docstring).
            documented = f"{home_mod}.{name}"
        for spelling in spellings:
            if spelling != documented:
                aliases[spelling] = documented
        info[home_mod].documented.append((_directive(obj), documented, name))
        for spelling in set(spellings):
            package, _, _ = spelling.rpartition(".")
            if package != home_mod:
                info[package].reexports.append(documented)
    for modname, entry in info.items():
        entry.submodules = [m for m in modules if m.rpartition(".")[0] == modname]
        analyzer = ModuleAnalyzer.for_module(modname)
        analyzer.analyze()
        order = analyzer.tagorder
        entry.documented = [(d, n) for d, n, short in sorted(entry.documented, key=lambda t: order.get(t[2], 10**6))]
        entry.reexports = sorted(set(entry.reexports), key=lambda n: n.rpartition(".")[2].lower())
    return info, aliases


def write_pages(info: dict[str, ModuleInfo], template: Path, folder: Path) -> None:
    """Render one page per module into ``folder`` (files whose text is unchanged are left alone,
    so that Sphinx rebuilds only what changed); pages of modules that are gone are removed."""
    import jinja2

    render = jinja2.Template(template.read_text(encoding="utf-8"), keep_trailing_newline=True).render
    folder.mkdir(parents=True, exist_ok=True)
    wanted = set()
    for modname, entry in info.items():
        path = folder / f"{modname}.rst"
        wanted.add(path)
        text = render(fullname=modname, entry=entry)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
    for path in folder.glob("*.rst"):
        if path not in wanted:
            path.unlink()
