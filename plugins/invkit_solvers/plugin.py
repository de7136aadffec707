"""Entry-point module of the built-in solvers (group ``invkit``, name ``solvers``)."""

from __future__ import annotations

from invkit.hookspecs import Register, hookimpl

from .ddrm import DDRM
from .dps import DPS
from .exact import ExactSolver
from .hio import HIO


@hookimpl
def invkit_register_solvers(register: Register) -> None:
    """Register ``ddrm``, ``dps``, ``exact`` and ``hio``."""
    for solver in (DDRM, DPS, ExactSolver, HIO):
        register(solver.name, solver)
