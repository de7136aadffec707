"""Typed, documented parameter schemas for plugins.

Every operator (and solver, and prior factory) declares its parameters as a tuple of
:class:`Param`. The CLI parses ``--arg k=v`` strings through the schema, and Python callers
pass real values through the same validation, so a bad value gets the same one-line error
naming the parameter and what is allowed, wherever it comes from.

Example:
    >>> from invkit.params import Param, parse_params
    >>> schema = (Param("sigma", float, 3.0, "blur std in pixels", min=0.0, min_inclusive=False),)
    >>> parse_params(schema, ["sigma=1.5"])
    {'sigma': 1.5}
    >>> parse_params(schema, {})
    {'sigma': 3.0}
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Param", "ParamError", "parse_params", "parse_kv", "format_schema", "int_tuple", "float_tuple", "parse_bool"]

_REQUIRED = object()


class ParamError(ValueError):
    """A parameter value is missing, unknown, malformed or out of range."""


def int_tuple(text: str | Sequence[int]) -> tuple[int, ...]:
    """Parse ``"3,4"`` (or a sequence) into a tuple of ints."""
    if isinstance(text, str):
        parts = [p for p in text.replace("x", ",").split(",") if p.strip()]
        return tuple(int(p) for p in parts)
    return tuple(int(v) for v in text)


def float_tuple(text: str | Sequence[float]) -> tuple[float, ...]:
    """Parse ``"0.299,0.587,0.114"`` (or a sequence) into a tuple of floats."""
    if isinstance(text, str):
        return tuple(float(p) for p in text.split(",") if p.strip())
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
    """Split ``["k=v", ...]`` into a dict; a malformed item raises :class:`ParamError`."""
    out: dict[str, str] = {}
    for item in items:
        if "=" not in item:
            raise ParamError(f"argument {item!r} is not of the form key=value")
        key, value = item.split("=", 1)
        key = key.strip().replace("-", "_")
        if not key:
            raise ParamError(f"argument {item!r} has an empty key")
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
            raise ParamError(f"{where}parameter '{p.name}' is required ({p.doc}); pass --arg {p.name}=...")
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
        lines.append(f"  {p.name}: {p.allowed()}, {default}. {p.doc}")
    return "\n".join(lines)
