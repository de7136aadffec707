"""Sphinx configuration of invkit's documentation.

Build (what tests/test_docs.py runs, zero warnings allowed)::

    .venv/bin/python -m sphinx -W --keep-going -n -b html docs docs/_build/html

Everything is local: no intersphinx inventories are fetched, MathJax is served from the built
site (``sphinx-mathjax-offline``), and the API pages are generated at build time into
``docs/api/_generated`` (git-ignored).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
import operator
import re
import os
import sys
import types
import typing
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE / "_ext"))

import api_members  # noqa: E402  (docs/api_members.py: which object is documented where)

project = "invkit"
author = "invkit developers"
copyright = "invkit developers"
release = version = "0.1.0"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    # Copies MathJax 3 into _static/mathjax and points mathjax_path there: no CDN.
    "sphinx-mathjax-offline",
    "sphinx.ext.viewcode",
    "myst_parser",
    # docs/_ext/invkit_pages.py: a page per registered solver and operator, the CLI reference and
    # the plugin hooks page, generated from the code into docs/generated/ at every build
    "invkit_pages",
    # the gallery: docs/examples/plot_*.py, executed by the build (INVKIT_DOCS_RUN_GALLERY=0 skips
    # the execution: tests/test_docs.py does, since tests/test_examples.py runs every script)
    "sphinx_gallery.gen_gallery",
]

templates_path = ["_templates"]
exclude_patterns = [
    "_build",
    "Thumbs.db",
    ".DS_Store",
    # read by sphinx-gallery, not as pages (its GALLERY_HEADER.rst would be a duplicate page)
    "examples",
    # left by builds with computation times on (their pages load jQuery/DataTables from CDNs)
    "sg_execution_times.rst",
    "auto_examples/sg_execution_times.rst",
]
sphinx_gallery_conf = {
    "examples_dirs": "examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "within_subsection_order": "FileNameSortKey",
    "download_all_examples": False,
    "remove_config_comments": True,
    "abort_on_example_error": True,
    "min_reported_time": 0,
    "show_memory": False,
    # its computation-times pages load jQuery and DataTables from CDNs (caught by tests/test_docs.py)
    "write_computation_times": False,
    "plot_gallery": os.environ.get("INVKIT_DOCS_RUN_GALLERY", "1") != "0",
}

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"

# Every cross-reference must resolve.
nitpicky = True

# -- API pages ---------------------------------------------------------------------------------
API_MODULES, API_ALIASES = api_members.collect()
api_members.write_pages(API_MODULES, HERE / "_templates" / "api" / "module.rst", HERE / "api" / "_generated")
# autosummary only draws the tables of re-exports (its stub generation cannot write the module
# pages: ``invkit.runner.degrade`` would resolve to the function the package re-exports).
autosummary_generate = False

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
# The public type aliases, written as their names in annotations (every module uses
# ``from __future__ import annotations``), link to their entries instead of being expanded.
autodoc_type_aliases = {
    "Shape": "invkit.Shape",
    "Generators": "invkit.Generators",
    "Callback": "invkit.Callback",
    "ProgressCallback": "invkit.runner.ProgressCallback",
}
python_use_unqualified_type_names = True


def _alias_shim() -> None:
    """Work around a Sphinx 9 bug: an aliased name inside a union (``Generators | None``) is
    rendered as ``TypeAliasForwardRef('invkit.Generators')``, its repr, instead of the name."""
    from sphinx.util.inspect import TypeAliasForwardRef

    TypeAliasForwardRef.__repr__ = lambda self: self.name


_alias_shim()

napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
# "Attributes:" sections become attribute entries, so :attr:`config` and the like resolve.
napoleon_use_ivar = False

myst_enable_extensions = ["dollarmath"]
myst_heading_anchors = 3

# -- HTML --------------------------------------------------------------------------------------
html_theme = "furo"
html_title = "invkit"
html_static_path: list[str] = []

# -- References --------------------------------------------------------------------------------
# No intersphinx (it would fetch inventories over the network at build time). The type hints of
# the public API name classes of external libraries that therefore have no target here; they are
# ignored by package, nothing else: references into invkit itself must all resolve.
nitpick_ignore_regex = [
    # Type variables of generic signatures (``_F`` is private; ``L`` and ``C`` are the one-letter
    # "float or Tensor" / "config class" variables of two helpers): no entry of their own.
    ("py:class", r"invkit\.params\._F|invkit\.vp\.L|invkit_priors\.networks\.inputs\.C"),
    # Third-party libraries of the public signatures (tensors, arrays, images, plugin managers).
    ("py:.*", r"(torch|numpy|np|scipy|PIL|pluggy|kornia|safetensors|diffusers|tqdm)(\..*)?"),
    # The standard-library modules that type hints and docstrings name.
    ("py:.*", r"(pathlib|os|collections\.abc|abc|argparse|enum|typing|urllib|warnings|hashlib|dataclasses)(\..*)?"),
]


def _documented_name(name: str) -> str | None:
    """``name`` with its longest aliased prefix replaced by the documented name, if any."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        documented = API_ALIASES.get(".".join(parts[:cut]))
        if documented is not None:
            return ".".join([documented, *parts[cut:]])
    return None


def _import(name: str):
    """The object a dotted name leads to, or None."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return None
        return obj
    return None


def _candidates(target: str, module: str | None, cls: str | None) -> list[str]:
    """Where a reference written in a docstring may point, most specific first.

    Docstrings are written in the namespace of the module that defines them, but an object is
    documented under its public name (``invkit_solvers.DPS``, defined in ``invkit_solvers.dps``):
    a bare ``zeta_preset`` in DPS's docstring means ``invkit_solvers.dps.zeta_preset``, and a bare
    ``out_shape`` in LinearOperator's may be an attribute it inherits. So: the class and its bases
    (each under its documented name), the module the class is defined in, the current module and
    its parent packages (``RestoreError`` in :mod:`invkit.runner.devices` is
    ``invkit.runner.RestoreError``), then the target as written.
    """
    found = []
    if module and cls:
        owner = _import(f"{module}.{cls}")
        if inspect.isclass(owner):
            for base in owner.__mro__:
                if base.__module__.split(".")[0] in api_members.ROOTS:
                    name = f"{base.__module__}.{base.__qualname__}"
                    found.append(f"{API_ALIASES.get(name, name)}.{target}")
            found.append(f"{owner.__module__}.{target}")
    if module:
        parts = module.split(".")
        found += [".".join([*parts[:cut], target]) for cut in range(len(parts), 0, -1)]
    found.append(target)
    return found


def _resolve_alias(app, env, node, contnode):
    """Resolve a reference that Sphinx's own lookup missed (see :func:`_candidates`); any public
    spelling of an object (``invkit.forward.SVDOperator``, as type hints name it) leads to the
    entry of its documented name (``invkit.SVDOperator``)."""
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "")
    domain = env.get_domain("py")
    for candidate in _candidates(target, node.get("py:module"), node.get("py:class")):
        documented = _documented_name(candidate) or candidate
        if documented == target:
            continue  # Sphinx looked for this one already
        found = domain.resolve_xref(env, node["refdoc"], app.builder, node["reftype"], documented, node, contnode)
        if found is not None:
            return found
    # The types of "Attributes:" entries are the class annotations as written (``Tensor``,
    # ``Path``: ``from __future__ import annotations``). A name that the module imports from an
    # external library is that library's (plain text, as nitpick_ignore_regex treats it).
    module = node.get("py:module")
    obj = _import(f"{module}.{target}") if module and "." not in target else None
    if inspect.isclass(obj):
        qualified = f"{obj.__module__}.{obj.__qualname__}"
        if any(re.fullmatch(role, f"py:{node['reftype']}") and re.fullmatch(pattern, qualified) for role, pattern in nitpick_ignore_regex):
            return contnode
    return None


def _without_annotated(annotation):
    """``Annotated[float, Arg(...)]`` -> ``float`` (also inside ``X | None``)."""
    if typing.get_origin(annotation) is typing.Annotated:
        return _without_annotated(annotation.__origin__)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return functools.reduce(operator.or_, [_without_annotated(a) for a in typing.get_args(annotation)])
    return annotation


def _process_signature(app, what, name, obj, options, signature, return_annotation):
    """Redo a signature that Sphinx would render badly.

    * Plugin parameters carry their schema as ``Annotated[float, Arg("help", min=0.0)]``
      (:class:`invkit.Arg`). Sphinx would print the whole schema, help text included, into the
      signature and turn its words into cross-references; the docstring says the same in words,
      so the signature shows the plain type.
    * A dataclass field with a ``default_factory`` has the default ``<factory>``, which does not
      parse as Python: Sphinx then splits the signature at every comma (``dict[str`` becomes a
      broken reference). It is shown as the factory call (``dict()``).

    Other signatures are left as autodoc made them.
    """
    if not signature or ("Annotated[" not in signature and "<factory>" not in signature):
        return None
    from sphinx.util.inspect import DefaultValue, stringify_signature
    from sphinx.util.inspect import signature as inspect_signature

    if what in ("class", "exception"):
        subject, bound = obj.__init__, True
    else:
        subject, bound = obj, what == "method" and inspect.isfunction(obj)
    factories = {}
    if what in ("class", "exception") and dataclasses.is_dataclass(obj):
        factories = {f.name: f.default_factory for f in dataclasses.fields(obj) if f.default_factory is not dataclasses.MISSING}
    sig = inspect_signature(subject, bound_method=bound, type_aliases=app.config.autodoc_type_aliases)
    params = []
    for p in sig.parameters.values():
        p = p.replace(annotation=_without_annotated(p.annotation))
        if p.name in factories:
            p = p.replace(default=DefaultValue(f"{factories[p.name].__name__}()"))
        params.append(p)
    sig = sig.replace(parameters=params)
    return stringify_signature(sig, show_return_annotation=False, unqualified_typehints=True), return_annotation


def _is_type_doc(obj, lines: list[str]) -> bool:
    """Whether ``lines`` are just the docstring ``obj`` has from its type (``tuple``, ``str``...)."""
    doc = getattr(obj, "__doc__", None)
    return bool(doc) and "\n".join(lines).strip() == inspect.cleandoc(doc).strip()


def _no_inline_attribute_type(app, what, name, obj, options, lines):
    """Keep napoleon from reading ``Phrase: explanation`` as ``type: description``.

    For attributes, data and properties napoleon takes whatever precedes the first colon of the
    first line as the type (``Short description used in messages: name and shape`` would get the
    type "Short description used in messages"). invkit never writes types that way (they come
    from the annotations), and it writes many first lines in that style, so the docstring is
    given an empty reST comment (``..`` and a blank line) as its first line: napoleon reads that
    line as "no inline type" and docutils renders nothing for it. Runs before napoleon, which
    does nothing else to these docstrings.

    A constant without a doc-comment would show the docstring of its value's type (``tuple``'s
    for ``OPERATORS``); it shows nothing instead.
    """
    if what in ("attribute", "data") and not inspect.isclass(obj) and lines and _is_type_doc(obj, lines):
        lines.clear()  # a constant without doc-comment: not the docstring of its value's type
    if what in ("attribute", "data", "property") and any(line.strip() for line in lines):
        while lines and not lines[0].strip():
            lines.pop(0)
        lines[:0] = ["..", ""]


def setup(app):
    app.connect("autodoc-process-docstring", _no_inline_attribute_type, priority=400)
    app.connect("missing-reference", _resolve_alias)
    app.connect("autodoc-process-signature", _process_signature)
