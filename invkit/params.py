"""Typed, documented parameter schemas for plugins.

A plugin's parameters form a schema, a tuple of :class:`Param`. The CLI parses ``--arg k=v``
strings through the schema, and Python callers pass real values through the same validation, so
a bad value gets the same one-line error naming the parameter and what is allowed, wherever it
comes from.

A schema is declared once, in one of two ways:

* in the signature (solvers, operators and prior factories): each parameter is annotated
  ``Annotated[T, Arg("doc", ...)]``; its name, its default (or that it is required) and its basic
  type come from the signature, the doc and constraints from :class:`Arg`.
  :func:`signature_params` reads the schema off the signature and :func:`validated` makes direct
  Python calls go through it (:func:`declare_from_init` does both for a class's ``__init__``). A
  third party's plain parameter, without :class:`Arg`, is accepted with an inferred schema (name,
  default, basic type; no doc or constraints);
* as a ``params`` tuple of :class:`Param` on a class taking ``**params`` (a parameter set several
  operators share, and plugins written that way). :func:`schema_of` gives a factory's schema
  either way.

Example:
    >>> from invkit.params import Param, parse_params
    >>> schema = (Param("sigma", float, 3.0, "blur std in pixels", min=0.0, min_inclusive=False),)
    >>> parse_params(schema, ["sigma=1.5"])
    {'sigma': 1.5}
    >>> parse_params(schema, {})
    {'sigma': 3.0}
"""

from __future__ import annotations

import functools
import inspect
import math
import types
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar, Union, cast, get_args, get_origin, overload

__all__ = [
    "Param",
    "Arg",
    "ParamError",
    "SchemaError",
    "parse_params",
    "parse_kv",
    "format_schema",
    "signature_params",
    "schema_of",
    "validated",
    "declare_from_init",
    "int_tuple",
    "float_tuple",
    "parse_bool",
]

_REQUIRED = object()


class ParamError(ValueError):
    """A parameter value is missing, unknown, malformed or out of range."""


class SchemaError(TypeError):
    """A parameter declaration is malformed; raised where it is declared (decoration, class
    creation or registration), never at call time."""


def _parts(text: str, split: str, what: str) -> list[str]:
    """``split`` (``text`` with any other separators made commas) at its commas; an empty part is refused, naming ``text``."""
    parts = split.split(",")
    if any(not p.strip() for p in parts):
        raise ValueError(f"{text!r} has an empty part; give {what}")
    return parts


def int_tuple(text: str | Sequence[int]) -> tuple[int, ...]:
    """Parse ``"3,4"`` or ``"3x4"`` (or a sequence) into a tuple of ints.

    Raises:
        ValueError: A part that is empty (``"3,,4"``, ``"3,"``) or not an integer.

    Example:
        >>> int_tuple("3, 256x256"), int_tuple([1, 2])
        ((3, 256, 256), (1, 2))
    """
    if isinstance(text, str):
        return tuple(int(p) for p in _parts(text, text.replace("x", ","), "integers separated by commas, e.g. 3,256,256"))
    return tuple(int(v) for v in text)


def float_tuple(text: str | Sequence[float]) -> tuple[float, ...]:
    """Parse ``"0.299,0.587,0.114"`` (or a sequence) into a tuple of floats.

    Raises:
        ValueError: A part that is empty (``"0.3,,0.4"``, ``"0.3,"``) or not a number.

    Example:
        >>> float_tuple("0.299, 0.587,0.114"), float_tuple([1, 2])
        ((0.299, 0.587, 0.114), (1.0, 2.0))
        >>> float_tuple("0.5,")
        Traceback (most recent call last):
            ...
        ValueError: '0.5,' has an empty part; give numbers separated by commas, e.g. 0.299,0.587,0.114
    """
    if isinstance(text, str):
        return tuple(float(p) for p in _parts(text, text, "numbers separated by commas, e.g. 0.299,0.587,0.114"))
    return tuple(float(v) for v in text)


_TRUE = frozenset({"1", "true", "t", "yes", "y", "on"})
_FALSE = frozenset({"0", "false", "f", "no", "n", "off"})


def parse_bool(value: Any, what: str = "") -> bool:
    """The one boolean parser: ``bool``, ``0``/``1``, or text (``true/t/yes/y/on/1`` and ``false/f/no/n/off/0``, any case).

    Used for parameters, checkpoint flags and network configs alike.

    Args:
        value: What to parse.
        what: Name for the error message (e.g. ``"ADM flag 'use_fp16'"``).

    Raises:
        ValueError: Anything else, with a message naming ``what`` and the accepted words.

    Example:
        >>> parse_bool("Yes"), parse_bool(0), parse_bool(True)
        (True, False, True)
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        low = value.strip().lower()
        if low in _TRUE | _FALSE:
            return low in _TRUE
    where = f"{what}: " if what else ""
    raise ValueError(f"{where}not a boolean: {value!r} (use true/false)")


@dataclass(frozen=True)
class Param:
    """One parameter of a plugin.

    Args:
        name: Keyword name (what ``--arg name=value`` uses).
        type: ``int``, ``float``, ``bool``, ``str`` or a callable converting a string (or an
            already-typed value) to the value, e.g. :func:`int_tuple`.
        default: Default value; leave unset for a required parameter. ``None`` is allowed and
            means "off / not given".
        doc: One line saying what it is, in which units.
        min: Smallest allowed value (numbers only).
        max: Largest allowed value (numbers only).
        min_inclusive: Whether ``min`` itself is allowed.
        max_inclusive: Whether ``max`` itself is allowed.
        choices: Allowed values, if the set is finite.
    """

    name: str
    type: Callable[[Any], Any]
    default: Any = _REQUIRED
    doc: str = ""
    min: float | None = None
    max: float | None = None
    min_inclusive: bool = True
    max_inclusive: bool = True
    choices: tuple[Any, ...] | None = field(default=None)

    @property
    def required(self) -> bool:
        """True when the parameter has no default."""
        return self.default is _REQUIRED

    def allowed(self) -> str:
        """Human-readable description of the allowed values."""
        if self.choices is not None:
            return "one of " + ", ".join(str(c) for c in self.choices)
        tname = getattr(self.type, "__name__", str(self.type))
        lo = "" if self.min is None else f"{self.min} {'<=' if self.min_inclusive else '<'} "
        hi = "" if self.max is None else f" {'<=' if self.max_inclusive else '<'} {self.max}"
        return f"{lo}{tname}{hi}" if (lo or hi) else tname

    def convert(self, value: Any, owner: str = "") -> Any:
        """Convert and validate one value; raise :class:`ParamError` naming the parameter."""
        where = f"{owner}: " if owner else ""
        if value is None and self.default is None:
            return None
        if isinstance(value, str) and value.strip().lower() == "none" and self.default is None:
            return None
        try:
            if self.type is bool:
                out = parse_bool(value)
            elif self.type is int:
                if isinstance(value, str):
                    text = value.strip()
                    num = int(text) if text.lstrip("+-").isdigit() else float(text)
                else:
                    num = value
                if isinstance(num, float) and not num.is_integer():
                    raise ValueError(f"{value} is not an integer")
                out = int(num)
            else:
                out = self.type(value)
        except (TypeError, ValueError) as exc:
            raise ParamError(f"{where}parameter '{self.name}': cannot read {value!r} ({exc}); expected {self.allowed()}") from None
        if self.choices is not None and out not in self.choices:
            raise ParamError(f"{where}parameter '{self.name}' = {out!r} is not allowed; expected {self.allowed()}")
        if isinstance(out, (int, float)) and not isinstance(out, bool):
            if isinstance(out, float) and math.isnan(out):
                raise ParamError(f"{where}parameter '{self.name}' is NaN; expected {self.allowed()}")
            too_low = self.min is not None and (out < self.min or (out == self.min and not self.min_inclusive))
            too_high = self.max is not None and (out > self.max or (out == self.max and not self.max_inclusive))
            if too_low or too_high:
                raise ParamError(f"{where}parameter '{self.name}' = {out} is out of range; expected {self.allowed()}")
        return out


def parse_kv(items: Iterable[str]) -> dict[str, str]:
    """Split ``["k=v", ...]`` into a dict; a malformed item, or a key given twice (which would
    otherwise silently keep the last value), raises :class:`ParamError`.

    Example:
        >>> parse_kv(["sigma=2", "kernel-size=5"])
        {'sigma': '2', 'kernel_size': '5'}
    """
    out: dict[str, str] = {}
    for item in items:
        if "=" not in item:
            raise ParamError(f"argument {item!r} is not of the form key=value")
        key, value = item.split("=", 1)
        key = key.strip().replace("-", "_")
        if not key:
            raise ParamError(f"argument {item!r} has an empty key")
        if key in out and out[key] != value:
            raise ParamError(f"argument {key!r} is given twice ({key}={out[key]} and {key}={value}); give it once")
        out[key] = value
    return out


def parse_params(
    schema: Sequence[Param],
    values: Mapping[str, Any] | Iterable[str] | None = None,
    owner: str = "",
) -> dict[str, Any]:
    """Validate ``values`` against ``schema`` and fill in defaults.

    Args:
        schema: The plugin's parameters.
        values: A mapping of name to value (strings are converted), or ``"k=v"`` strings.
        owner: Name of the plugin, used in error messages.

    Returns:
        A dict with one entry per schema parameter.

    Raises:
        ParamError: Unknown name (the message lists the known ones), missing required value,
            unreadable or out-of-range value.
    """
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        values = parse_kv(values)
    by_name = {p.name: p for p in schema}
    where = f"{owner}: " if owner else ""
    unknown = [k for k in values if k not in by_name]
    if unknown:
        known = ", ".join(by_name) or "(none)"
        raise ParamError(f"{where}unknown parameter(s) {', '.join(map(repr, unknown))}; known: {known}")
    out: dict[str, Any] = {}
    for p in schema:
        if p.name in values:
            out[p.name] = p.convert(values[p.name], owner)
        elif p.required:
            what = f" ({p.doc})" if p.doc else ""
            raise ParamError(f"{where}parameter '{p.name}' is required{what}; pass --arg {p.name}=...")
        else:
            out[p.name] = p.default
    return out


def format_schema(schema: Sequence[Param]) -> str:
    """Render a schema as aligned text lines (for ``--help``-style listings)."""
    if not schema:
        return "  (no parameters)"
    lines = []
    for p in schema:
        default = "required" if p.required else f"default {p.default!r}"
        lines.append(f"  {p.name}: {p.allowed()}, {default}." + (f" {p.doc}" if p.doc else ""))
    return "\n".join(lines)


# ---------------------------------------------------------------------- schemas declared in signatures
@dataclass(frozen=True)
class Arg:
    """The doc and constraints of one parameter declared in a signature, as ``Annotated`` metadata.

    The parameter's name, its default (or, without one, that it is required) and its basic type
    come from the signature: ``int``, ``float``, ``bool`` or ``str``, optionally ``| None`` (then
    the default must be ``None``, meaning "off / not given"). Any other annotation needs a
    converter (``type=``). The fields mean what they mean on :class:`Param`.

    Args:
        doc: One line saying what it is, in which units (required, not empty).
        min: Smallest allowed value (numbers only).
        max: Largest allowed value (numbers only).
        min_inclusive: Whether ``min`` itself is allowed.
        max_inclusive: Whether ``max`` itself is allowed.
        choices: Allowed values, if the set is finite.
        type: Converter from a string, or from an already-converted value, to the value (e.g.
            :func:`float_tuple`); replaces the type read off the annotation.

    Example:
        >>> from typing import Annotated
        >>> def blur(
        ...     sigma: Annotated[float, Arg("std in pixels", min=0.0, min_inclusive=False)] = 3.0,
        ...     boundary: Annotated[str, Arg("padding", choices=("zero", "reflect"))] = "reflect",
        ... ) -> str:
        ...     return f"{sigma} {boundary}"
        >>> print(format_schema(signature_params(blur)))
          sigma: 0.0 < float, default 3.0. std in pixels
          boundary: one of zero, reflect, default 'reflect'. padding
    """

    doc: str
    min: float | None = None
    max: float | None = None
    min_inclusive: bool = True
    max_inclusive: bool = True
    choices: tuple[Any, ...] | None = None
    type: Callable[[Any], Any] | None = None


_BASIC_TYPES: tuple[type, ...] = (int, float, bool, str)
_NONE = type(None)
_F = TypeVar("_F", bound=Callable[..., Any])
_EMPTY = inspect.Parameter.empty
_Owner = Union[str, Callable[[Any], str]]  # noqa: UP007 - a runtime alias


def _type_name(hint: Any) -> str:
    return hint.__name__ if isinstance(hint, type) else repr(hint).replace("typing.", "")


def _as_given(value: Any) -> Any:
    """The converter of an inferred parameter whose annotation and default name no basic type.

    Listed as ``str``: ``--arg`` text stays text, as ``str`` leaves it; a value a Python caller
    passes is kept as it is, where ``str`` would turn an array or a network into its repr.
    """
    return value


_as_given.__name__ = _as_given.__qualname__ = "str"


def _signature_of(target: Callable[..., Any]) -> tuple[Callable[..., Any] | None, int, str]:
    """``(function, leading parameters to skip, label)``: a class's ``__init__`` (skipping ``self``), or the function itself."""
    if isinstance(target, type):
        init = target.__init__
        if init is object.__init__:
            return None, 0, target.__qualname__
        return inspect.unwrap(init), 1, f"{target.__qualname__}.__init__"
    fn = inspect.unwrap(target)
    return fn, 0, f"{getattr(fn, '__qualname__', repr(fn))}()"


def _evaluate(annotation: Any, fn: Callable[..., Any], where: str) -> Any:
    """A parameter's annotation as an object: string annotations (postponed, or quoted) are evaluated in the function's module."""
    for _ in range(3):  # a quoted annotation under `from __future__ import annotations` is a string of a string
        if not isinstance(annotation, str):
            break
        try:
            annotation = eval(annotation, getattr(fn, "__globals__", {}))  # what typing.get_type_hints does with it
        except Exception as exc:  # noqa: BLE001 - any failure is a declaration error
            raise SchemaError(
                f"{where}: cannot evaluate its annotation {annotation!r} ({type(exc).__name__}: {exc}); use names defined at module level"
            ) from None
    return annotation


def _annotation(p: inspect.Parameter, fn: Callable[..., Any], where: str) -> Any:
    """``p``'s annotation evaluated; ``_EMPTY`` when it has none, or has one that cannot be evaluated and declares no :class:`Arg`
    (a name imported only for type checkers says nothing a schema could use)."""
    if p.annotation is _EMPTY:
        return _EMPTY
    try:
        return _evaluate(p.annotation, fn, where)
    except SchemaError:
        if "Arg(" in str(p.annotation):
            raise
        return _EMPTY


def _split_optional(hint: Any) -> tuple[Any, bool]:
    """``(core type, whether None is allowed)`` of ``X | None`` / ``Optional[X]``; other hints unchanged."""
    if get_origin(hint) in (Union, types.UnionType):
        members = get_args(hint)
        rest = tuple(m for m in members if m is not _NONE)
        if len(rest) < len(members):
            return (rest[0] if len(rest) == 1 else Union[rest]), True  # noqa: UP007 - a runtime union of the remaining members
    return hint, False


def _arg_of(hint: Any, where: str) -> Arg | None:
    """The :class:`Arg` in an ``Annotated`` hint; None where the hint carries none."""
    if get_origin(hint) is not Annotated:
        if any(get_origin(m) is Annotated and any(isinstance(a, Arg) for a in m.__metadata__) for m in get_args(hint)):
            raise SchemaError(f"{where}: write `Annotated[X | None, Arg(...)]`, not `Annotated[X, Arg(...)] | None`")
        return None
    args = [m for m in hint.__metadata__ if isinstance(m, Arg)]
    if len(args) > 1:
        raise SchemaError(f"{where} has {len(args)} Arg metadata objects; give exactly one")
    return args[0] if args else None


def _inferred_param(p: inspect.Parameter, hint: Any) -> Param:
    """The :class:`Param` of a parameter without :class:`Arg`: its name, its default (or required),
    its type from a basic annotation (``int``/``float``/``bool``/``str``, optionally ``| None``),
    else from a basic default, else ``str`` (see :func:`_as_given`); no doc and no constraints."""
    default = _REQUIRED if p.default is _EMPTY else p.default
    core, _ = _split_optional(hint.__origin__ if get_origin(hint) is Annotated else hint)
    if core in _BASIC_TYPES:
        convert: Callable[[Any], Any] = core
    elif type(default) in _BASIC_TYPES:
        convert = type(default)
    else:
        convert = _as_given
    return Param(p.name, convert, default)


def _declared_param(p: inspect.Parameter, fn: Callable[..., Any], label: str) -> Param | None:
    """The :class:`Param` that one signature parameter declares (None for ``**kwargs``, which declares none).

    Raises:
        SchemaError: ``*args``, positional-only, or an :class:`Arg` declaration that contradicts
            itself or its signature.
    """
    where = f"{label}: parameter '{p.name}'"
    form = f"`{p.name}: Annotated[<type>, Arg(\"<doc>\", ...)]`"
    if p.kind is inspect.Parameter.VAR_KEYWORD:
        return None
    if p.kind is inspect.Parameter.VAR_POSITIONAL:
        raise SchemaError(f"{label}: *{p.name} cannot be passed by keyword (--arg name=value); name each parameter, e.g. as {form}")
    if p.kind is inspect.Parameter.POSITIONAL_ONLY:
        raise SchemaError(f"{where} is positional-only; parameters are passed by keyword (--arg {p.name}=...)")
    hint = _annotation(p, fn, where)
    arg = _arg_of(hint, where)
    if arg is None:
        return _inferred_param(p, hint)
    if not isinstance(arg.doc, str) or not arg.doc.strip():
        raise SchemaError(f"{where}: its Arg has no doc; say in one line what it is, in which units")
    base = hint.__origin__
    core, nullable = _split_optional(base)
    if arg.type is not None:
        convert: Callable[[Any], Any] = arg.type
    elif core in _BASIC_TYPES:
        convert = core
    else:
        raise SchemaError(
            f"{where}: unsupported annotation {_type_name(base)}; use int, float, bool or str (optionally | None), "
            "or give a converter, e.g. Arg(\"...\", type=float_tuple)"
        )
    default = _REQUIRED if p.default is _EMPTY else p.default
    if nullable and default is not None:
        shown = "none (required)" if default is _REQUIRED else repr(default)
        raise SchemaError(f"{where} is annotated `{_type_name(base)}` but its default is {shown}; None is accepted only where the default is None")
    if default is None and not nullable:
        raise SchemaError(f"{where} defaults to None; annotate it `{_type_name(base)} | None`")
    if (arg.min is not None or arg.max is not None) and convert in (bool, str):
        raise SchemaError(f"{where}: min/max apply to numbers, not {_type_name(convert)}")
    param = Param(p.name, convert, default, arg.doc, arg.min, arg.max, arg.min_inclusive, arg.max_inclusive, arg.choices)
    if default is not _REQUIRED and default is not None:
        try:
            param.convert(default)
        except ParamError as exc:
            raise SchemaError(f"{where}: its default {default!r} fails its own declaration ({exc})") from None
    return param


def signature_params(target: Callable[..., Any], *, exclude: Collection[str] = ()) -> tuple[Param, ...]:
    """The schema a function's or a class's signature declares (for a class: its ``__init__``, without ``self``).

    A parameter annotated ``Annotated[T, Arg("doc", ...)]`` declares its doc and constraints
    (see :class:`Arg`). One without :class:`Arg` (a third party's plain ``scale=1.0``) is
    inferred: its name, its default or that it is required, its type from a basic annotation
    (``int``, ``float``, ``bool`` or ``str``, optionally ``| None``), else from its default when
    that is a bool, int, float or str, else ``str`` (text stays text; a value a Python caller
    passes is kept as given), with no doc and no constraints. ``**kwargs`` declares nothing and is
    left out. A decorated function (:func:`validated`, ``functools.wraps``) is read through to
    the function it wraps; a callable whose signature cannot be read declares nothing.

    Args:
        target: The function or class.
        exclude: Names of parameters that are not part of the schema (an operator's image
            shape, a helper's ``owner``).

    Raises:
        SchemaError: ``*args`` or a positional-only parameter (parameters are passed by
            keyword), or an :class:`Arg` declaration contradicting itself: on an unsupported
            annotation without ``type=``, with an empty doc, a default of None without
            ``| None`` (or the reverse), a default its own constraints refuse, or min/max on a
            non-number; the message names the function and the parameter.

    Example:
        >>> from typing import Annotated
        >>> def prior(path: Annotated[str, Arg("weights file")], half: Annotated[bool, Arg("float16")] = False) -> None:
        ...     pass
        >>> [(p.name, p.type.__name__, p.required) for p in signature_params(prior)]
        [('path', 'str', True), ('half', 'bool', False)]
        >>> def loose(scale=1.0, label: str | None = None, **extra):
        ...     pass
        >>> print(format_schema(signature_params(loose)))
          scale: float, default 1.0.
          label: str, default None.
        >>> def sloppy(rate: Annotated[int, Arg("steps per second", min=1)] = 0):
        ...     pass
        >>> signature_params(sloppy)
        Traceback (most recent call last):
            ...
        invkit.params.SchemaError: sloppy(): parameter 'rate': its default 0 fails its own declaration (parameter 'rate' = 0 is out of range; expected 1 <= int)
    """
    fn, skip, label = _signature_of(target)
    if fn is None:
        return ()
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin or extension callable: nothing to read
        return ()
    params = [p for p in list(signature.parameters.values())[skip:] if p.name not in exclude]
    return tuple(param for param in (_declared_param(p, fn, label) for p in params) if param is not None)


def schema_of(factory: Any) -> tuple[Param, ...]:
    """A plugin factory's schema: its ``params`` attribute if it has one, else :func:`signature_params`.

    Raises:
        SchemaError: The factory has no ``params`` and its signature contradicts itself (see
            :func:`signature_params`).
    """
    explicit = getattr(factory, "params", None)
    if explicit is not None:
        return tuple(explicit)
    return signature_params(factory)


def _checked(
    fn: Callable[..., Any],
    schema: tuple[Param, ...],
    owner: _Owner,
    method: bool,
    before: Callable[[Any, dict[str, Any]], None] | None = None,
) -> Callable[..., Any]:
    """``fn`` with its schema arguments run through ``schema`` before every call (other arguments pass as given)."""
    sig = inspect.signature(fn)
    names = {p.name for p in schema}

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        label = owner(args[0]) if callable(owner) and method and args else str(owner)
        try:
            bound = sig.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{label}: {exc}") from None
        values = parse_params(schema, {k: v for k, v in bound.arguments.items() if k in names}, owner=label)
        if before is not None:
            before(args[0], values)
        bound.arguments.update(values)
        return fn(*bound.args, **bound.kwargs)

    return call


@overload
def validated(target: _F, *, owner: _Owner | None = None) -> _F: ...


@overload
def validated(target: None = None, *, owner: _Owner | None = None) -> Callable[[_F], _F]: ...


def validated(target: _F | None = None, *, owner: _Owner | None = None) -> _F | Callable[[_F], _F]:
    """Make direct Python calls of a function (or of a class's own ``__init__``) go through its signature's schema.

    The schema is :func:`signature_params`, read once, at decoration (so a malformed declaration
    fails there). Each call binds its arguments as Python would (a wrong call is a ``TypeError``
    naming the owner), converts and checks them exactly as ``--arg k=v`` strings are, and calls
    the function with the converted values, defaults filled in (``**kwargs`` pass as given).
    The signature and docstring stay those of the function.

    Args:
        target: The function or class (``@validated``), or None (``@validated(owner=...)``).
        owner: Name in error messages: a string, or for a class a callable taking the instance;
            default the function's name, or the class's name.

    Raises:
        SchemaError: The signature contradicts itself (see :func:`signature_params`), or a class
            defines no ``__init__``.

    Example:
        >>> from typing import Annotated
        >>> @validated
        ... def blur(sigma: Annotated[float, Arg("std in pixels", min=0.0, max=10.0)] = 3.0) -> float:
        ...     return sigma
        >>> blur("1.5"), blur()
        (1.5, 3.0)
        >>> blur(sigma=12)
        Traceback (most recent call last):
            ...
        invkit.params.ParamError: blur: parameter 'sigma' = 12.0 is out of range; expected 0.0 <= float <= 10.0
    """

    def decorate(obj: _F) -> _F:
        if isinstance(obj, type):
            init = obj.__dict__.get("__init__")
            if init is None:
                raise SchemaError(f"validated: class {obj.__qualname__} defines no __init__ of its own to validate")
            label = owner if owner is not None else (lambda self: type(self).__name__)
            setattr(obj, "__init__", _checked(init, signature_params(obj), label, method=True))
            return obj
        label = owner if owner is not None else getattr(obj, "__name__", repr(obj))
        return cast(_F, _checked(obj, signature_params(obj), label, method=False))

    return decorate if target is None else decorate(target)


def declare_from_init(
    cls: type,
    *,
    owner: _Owner,
    skip: int = 0,
    before: Callable[[Any, dict[str, Any]], None] | None = None,
) -> bool:
    """Give ``cls`` the schema its own ``__init__`` declares (the ``__init_subclass__`` step of :class:`~invkit.Solver` and :class:`~invkit.ForwardModel`).

    Where ``cls`` defines an ``__init__`` of its own and no ``params`` of its own, and that
    ``__init__`` takes no ``**kwargs``, ``cls.params`` becomes :func:`signature_params` of it
    (without ``self`` and the ``skip`` parameters after it), and its calls are validated as
    :func:`validated` does. Otherwise ``cls`` is left as it is: a ``params`` tuple is the
    declaration, and an ``__init__`` taking ``**kwargs`` passes them on, keeping the ``params``
    it inherits.

    Args:
        cls: The new subclass.
        owner: Name in error messages, a callable taking the instance.
        skip: Leading parameters after ``self`` that are not parameters of the schema (an
            operator's image shape); passed as given.
        before: Called with the instance and the validated values before the ``__init__`` body
            runs.

    Returns:
        Whether ``cls`` got its schema from its signature.

    Raises:
        SchemaError: The signature contradicts itself (see :func:`signature_params`).
    """
    init = cls.__dict__.get("__init__")
    if init is None or "params" in cls.__dict__:
        return False
    parameters = list(inspect.signature(init).parameters.values())
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return False
    schema = signature_params(cls, exclude=[p.name for p in parameters[1 : 1 + skip]])
    setattr(cls, "params", schema)
    setattr(cls, "__init__", _checked(init, schema, owner, method=True, before=before))
    return True
