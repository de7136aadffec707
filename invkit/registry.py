"""Plugin discovery and look-up.

:class:`Registry` loads every entry point of the group ``invkit`` (built-in plugins included:
they are declared in invkit's own ``pyproject.toml`` and load through the same path), checks
that their hook implementations match the specs, calls each plugin's registration hooks
separately, and records which distribution registered which name.

Failure policy:

* a plugin that fails to import, has invalid hooks, or raises while registering (any exception,
  ``sys.exit()`` included; Ctrl-C still interrupts) produces one warning naming the plugin, its
  distribution and the cause; every other plugin still works. What a plugin prints to stdout
  while it imports or registers goes to stderr, so ``--json`` output stays parseable. Not
  containable in-process: a plugin that calls ``os._exit()``, crashes the interpreter (a
  segfault in an extension module) or hangs at import takes the process with it; block it with
  ``INVKIT_BLOCK_PLUGINS`` (below), which skips it before it is imported;
* two plugins registering the same name is a **conflict**: the name is recorded with both
  distributions, listed in :attr:`Registry.warnings`, and looking it up raises
  :class:`PluginConflictError` naming both — the other names keep working;
* ``INVKIT_BLOCK_PLUGINS="name1,name2"`` (entry-point names or distribution names) skips plugins
  before they are imported;
* looking up an unknown name raises :class:`UnknownPluginError` listing the known names.

Example:
    >>> from invkit.registry import get_registry
    >>> reg = get_registry()
    >>> "denoising" in reg.names("operator")
    True
"""

from __future__ import annotations

import contextlib
import difflib
import importlib.metadata
import os
import re
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pluggy

from . import hookspecs
from .dense import DEFAULT_MAX_SIZE
from .forward import ForwardModel, Shape, as_shape
from .params import Param, parse_params, schema_of

__all__ = [
    "Registry",
    "Registration",
    "PluginError",
    "UnknownPluginError",
    "PluginConflictError",
    "PluginWarning",
    "get_registry",
    "reset_registry",
    "use_registry",
    "BLOCK_ENV",
    "KINDS",
]

BLOCK_ENV = "INVKIT_BLOCK_PLUGINS"
ENTRY_POINT_GROUP = "invkit"
#: kind -> registration hook name
KINDS: dict[str, str] = {
    "operator": "invkit_register_operators",
    "prior": "invkit_register_priors",
    "solver": "invkit_register_solvers",
}
_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-]*$")
LOCAL_DIST = "<in-process>"


class PluginError(Exception):
    """Base class of plugin look-up errors."""


class UnknownPluginError(PluginError, KeyError):
    """No plugin of that kind has that name (the message lists the known ones)."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class PluginConflictError(PluginError):
    """Two distributions registered the same name."""


class PluginWarning(UserWarning):
    """A plugin could not be loaded or registered; the others still work."""


@dataclass(frozen=True)
class Registration:
    """One registered name.

    Attributes:
        kind: ``"operator"``, ``"prior"`` or ``"solver"``.
        name: The registered name.
        factory: The class or factory.
        plugin: The plugin (entry-point) name that registered it.
        distribution: The installed distribution the plugin belongs to.
    """

    kind: str
    name: str
    factory: Any
    plugin: str
    distribution: str

    @property
    def params(self) -> tuple[Param, ...]:
        """The factory's parameter schema: its ``params`` tuple if it has one (operators, solvers,
        classes declaring it), else the one its signature declares (prior factories), see
        :func:`invkit.params.schema_of`; checked when it is registered."""
        return schema_of(self.factory)

    @property
    def summary(self) -> str:
        """First line of the factory's docstring."""
        doc = (getattr(self.factory, "__doc__", None) or "").strip()
        return doc.splitlines()[0] if doc else ""


def _blocked_from_env() -> set[str]:
    raw = os.environ.get(BLOCK_ENV, "")
    return {item.strip() for item in raw.split(",") if item.strip()}


class Registry:
    """Loaded plugins and everything they registered.

    Args:
        entry_points: Load the installed ``invkit`` entry points (built-ins included).
        plugins: Extra plugin objects (modules, classes or instances with hookimpls) to register
            directly, e.g. in tests; attributed to ``"<in-process>"`` or to the distribution given
            as ``(plugin, name, distribution)`` tuples.
        blocked: Plugin or distribution names to skip, in addition to ``$INVKIT_BLOCK_PLUGINS``.
    """

    def __init__(
        self,
        *,
        entry_points: bool = True,
        plugins: Iterable[Any] = (),
        blocked: Iterable[str] = (),
    ) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        #: Messages about plugins that failed to load or were skipped (also issued as warnings).
        self.warnings: list[str] = []
        self.blocked: set[str] = set(blocked) | _blocked_from_env()
        self.skipped: list[str] = []
        self._dist: dict[str, str] = {}
        self._entries: dict[str, dict[str, Registration]] | None = None
        self._conflicts: dict[tuple[str, str], list[Registration]] = {}
        if entry_points:
            self._load_entry_points()
        for item in plugins:
            if isinstance(item, tuple):
                self.add_plugin(*item)
            else:
                self.add_plugin(item)

    # ------------------------------------------------------------------ loading
    def warn(self, message: str) -> None:
        """Record a plugin problem: kept in :attr:`warnings` and issued as a :class:`PluginWarning`."""
        self.warnings.append(message)
        warnings.warn(message, PluginWarning, stacklevel=3)

    def _load_entry_points(self) -> None:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist.name if ep.dist is not None else "<unknown>"
            if ep.name in self.blocked or dist in self.blocked:
                self.skipped.append(f"{ep.name} ({dist})")
                continue
            try:
                with contextlib.redirect_stdout(sys.stderr):  # a plugin's prints must not break --json output
                    plugin = ep.load()
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # noqa: BLE001 - any import failure (sys.exit too) must not break invkit
                self.warn(
                    f"invkit plugin '{ep.name}' from distribution '{dist}' failed to import "
                    f"({type(exc).__name__}: {exc}); skipped. Fix or uninstall it, or set {BLOCK_ENV}={ep.name}"
                )
                continue
            self.add_plugin(plugin, ep.name, dist)

    def add_plugin(self, plugin: Any, name: str | None = None, distribution: str = LOCAL_DIST) -> bool:
        """Register one plugin object; returns False (with a warning) if its hooks are invalid."""
        name = name or getattr(plugin, "__name__", None) or type(plugin).__name__
        if name in self.blocked:
            self.skipped.append(f"{name} ({distribution})")
            return False
        if self.pm.has_plugin(name):
            other = self._dist.get(name, "?")
            self.warn(
                f"invkit plugin name '{name}' from distribution '{distribution}' is already used by "
                f"distribution '{other}'; the second one is skipped. Rename one entry point"
            )
            return False
        try:
            self.pm.register(plugin, name=name)
        except Exception as exc:  # noqa: BLE001
            self.warn(f"invkit plugin '{name}' from distribution '{distribution}' has invalid hooks ({exc}); skipped")
            return False
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            self.pm.unregister(plugin)
            self.warn(
                f"invkit plugin '{name}' from distribution '{distribution}' implements an unknown hook ({exc}); "
                f"skipped. Known hooks: {', '.join(sorted([*KINDS.values(), 'invkit_register_commands']))}"
            )
            return False
        self._dist[name] = distribution
        self._entries = None
        return True

    def distribution_of(self, plugin_name: str) -> str:
        """The distribution that provided a loaded plugin."""
        return self._dist.get(plugin_name, LOCAL_DIST)

    def _call_each(self, hook_name: str, make_arg: Callable[[str, str], tuple[Any, Callable[[], None]]]) -> None:
        caller = getattr(self.pm.hook, hook_name)
        for impl in caller.get_hookimpls():  # registration order
            dist = self.distribution_of(impl.plugin_name)
            arg, commit = make_arg(impl.plugin_name, dist)
            argname = impl.argnames[0] if impl.argnames else None
            try:
                with contextlib.redirect_stdout(sys.stderr):
                    impl.function(**({argname: arg} if argname else {}))
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # noqa: BLE001 - sys.exit() in a hook too
                self.warn(
                    f"invkit plugin '{impl.plugin_name}' from distribution '{dist}' failed in {hook_name} "
                    f"({type(exc).__name__}: {exc}); its registrations are skipped"
                )
                continue
            commit()

    def _collect(self) -> dict[str, dict[str, Registration]]:
        if self._entries is not None:
            return self._entries
        entries: dict[str, dict[str, Registration]] = {kind: {} for kind in KINDS}
        self._conflicts = {}
        for kind, hook_name in KINDS.items():

            def make(plugin: str, dist: str, kind: str = kind) -> tuple[Any, Callable[[], None]]:
                pending: list[Registration] = []

                def register(name: str, factory: Any) -> None:
                    if not isinstance(name, str) or not _NAME_RE.match(name):
                        raise ValueError(f"invalid {kind} name {name!r} (letters, digits, _ . -; start with a letter)")
                    if not callable(factory):
                        raise TypeError(f"{kind} '{name}' must be registered with a class or factory, got {factory!r}")
                    if kind == "operator" and not (isinstance(factory, type) and issubclass(factory, ForwardModel)):
                        raise TypeError(
                            f"operator '{name}' must be a subclass of invkit.ForwardModel (or LinearOperator, SVDOperator), got {factory!r}"
                        )
                    schema_of(factory)  # a malformed declaration fails here, as the plugin registers
                    pending.append(Registration(kind, name, factory, plugin, dist))

                def commit() -> None:
                    for reg in pending:
                        table = entries[kind]
                        clash = self._conflicts.get((kind, reg.name))
                        if clash is not None:
                            clash.append(reg)
                        elif reg.name in table:
                            self._conflicts[(kind, reg.name)] = [table.pop(reg.name), reg]
                        else:
                            table[reg.name] = reg

                return register, commit

            self._call_each(hook_name, make)
        for (kind, name), regs in self._conflicts.items():
            who = " and ".join(f"'{r.distribution}' (plugin '{r.plugin}')" for r in regs)
            self.warn(f"{kind} name '{name}' is registered by {who}; it is unusable until one is uninstalled or blocked with {BLOCK_ENV}")
        self._entries = entries
        return entries

    # ------------------------------------------------------------------ look-up
    def entries(self, kind: str) -> list[Registration]:
        """All registrations of a kind, sorted by name (conflicting names excluded)."""
        self._check_kind(kind)
        return sorted(self._collect()[kind].values(), key=lambda r: r.name)

    def names(self, kind: str) -> list[str]:
        """Registered names of a kind, sorted."""
        return [r.name for r in self.entries(kind)]

    def conflicts(self) -> dict[tuple[str, str], list[Registration]]:
        """``(kind, name) -> registrations`` for every name registered more than once."""
        self._collect()
        return dict(self._conflicts)

    def get(self, kind: str, name: str) -> Registration:
        """Look up one registration.

        Raises:
            UnknownPluginError: No such name; the message lists the known names.
            PluginConflictError: Two distributions registered it; the message names both.
        """
        self._check_kind(kind)
        table = self._collect()[kind]
        if name in table:
            return table[name]
        clash = self._conflicts.get((kind, name))
        if clash:
            who = " and ".join(f"'{r.distribution}'" for r in clash)
            raise PluginConflictError(f"{kind} '{name}' is registered by both {who}; uninstall one or block it with {BLOCK_ENV}")
        known = sorted(table)
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise UnknownPluginError(f"unknown {kind} '{name}'; known {kind}s: {', '.join(known) or '(none)'}.{hint}")

    def operator_class(self, name: str) -> type[ForwardModel]:
        """The operator class registered as ``name``."""
        return self.get("operator", name).factory

    def build_operator(self, name: str, in_shape: Shape | str, args: Mapping[str, Any] | Iterable[str] | None = None) -> ForwardModel:
        """Build the operator ``name`` for images of ``in_shape`` with (string or typed) parameters."""
        cls = self.operator_class(name)
        values = parse_params(cls.params, args, owner=f"operator '{name}'")
        return cls(as_shape(in_shape), **values)

    def build(self, kind: str, name: str, args: Mapping[str, Any] | Iterable[str] | None = None) -> Any:
        """Build a prior or solver from its factory and (string or typed) parameters."""
        reg = self.get(kind, name)
        values = parse_params(reg.params, args, owner=f"{kind} '{name}'")
        return reg.factory(**values)

    def solvers_for(self, problem: Any, prior: Any = None) -> list[str]:
        """Names of the registered solvers whose declared ``requires`` ``problem`` (and ``prior``) meet.

        Judged from the solver classes' declarations at their default dense limit; no solver is built.
        """
        from .requirements import missing_capabilities

        out = []
        for reg in self.entries("solver"):
            requires = getattr(reg.factory, "requires", None)
            if requires is None:
                continue
            if not missing_capabilities(requires, problem, prior, max_dense=_dense_limit(reg)):
                out.append(reg.name)
        return out

    def check_solver(self, name: str, problem: Any, prior: Any = None, args: Mapping[str, Any] | Iterable[str] | None = None) -> None:
        """Refuse, before any work, a problem (and prior) that solver ``name`` cannot take.

        Raises:
            UnknownPluginError: No such solver.
            RequirementError: One line naming the missing capability and the solvers that would take it.
        """
        from .requirements import check_requirements

        reg = self.get("solver", name)
        requires = getattr(reg.factory, "requires", frozenset())
        others = [n for n in self.solvers_for(problem, prior) if n != name]
        check_requirements(name, requires, problem, prior, max_dense=_dense_limit(reg, args), alternatives=others)

    def add_commands(self, cli: Any) -> None:
        """Let every plugin add its CLI subcommands (failures become warnings)."""

        def make(plugin: str, dist: str) -> tuple[Any, Callable[[], None]]:
            return cli.for_plugin(plugin, dist), lambda: None

        self._call_each("invkit_register_commands", make)

    @staticmethod
    def _check_kind(kind: str) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown plugin kind {kind!r}; expected one of {', '.join(KINDS)}")


def _dense_limit(reg: Registration, args: Mapping[str, Any] | Iterable[str] | None = None) -> int:
    """A solver's dense-fallback limit: its ``max_dense`` (or ``max_size``) parameter as given, else its default."""
    values = parse_params(reg.params, args, owner=f"solver '{reg.name}'")
    return int(values.get("max_dense", values.get("max_size", DEFAULT_MAX_SIZE)))


_default: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry of installed plugins (loaded on first use)."""
    global _default
    if _default is None:
        _default = Registry()
    return _default


def reset_registry() -> None:
    """Forget the process-wide registry (the next :func:`get_registry` reloads)."""
    global _default
    _default = None


@contextmanager
def use_registry(registry: Registry) -> Iterator[Registry]:
    """Make ``registry`` the process-wide one inside a ``with`` block, then restore the previous one.

    For tests and embedding applications that build a registry of their own (e.g. with extra
    in-process plugins) and want code that calls :func:`get_registry` (such as
    :meth:`invkit.Solver.check` naming alternative solvers) to see it.

    Example:
        >>> mine = Registry(entry_points=False)
        >>> with use_registry(mine):
        ...     get_registry() is mine
        True
        >>> get_registry() is mine
        False
    """
    global _default
    saved = _default
    _default = registry
    try:
        yield registry
    finally:
        _default = saved
