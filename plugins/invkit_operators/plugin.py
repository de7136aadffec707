"""Entry-point module of the built-in operators (group ``invkit``, name ``operators``).

Every module of :mod:`invkit_operators` that defines ``OPERATORS`` (a tuple of operator
classes) is registered, each class under its ``name``.
"""

from __future__ import annotations

import importlib
import pkgutil

import invkit_operators
from invkit.hookspecs import Register, hookimpl


def builtin_operator_classes() -> list[type]:
    """All operator classes of the built-in modules, in module order."""
    classes: list[type] = []
    for info in sorted(pkgutil.iter_modules(invkit_operators.__path__), key=lambda m: m.name):
        if info.name.startswith("_") or info.name == "plugin":
            continue
        module = importlib.import_module(f"invkit_operators.{info.name}")
        classes.extend(getattr(module, "OPERATORS", ()))
    return classes


@hookimpl
def invkit_register_operators(register: Register) -> None:
    """Register every built-in operator under its ``name``."""
    for cls in builtin_operator_classes():
        register(cls.name, cls)
