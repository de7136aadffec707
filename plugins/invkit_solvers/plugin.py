"""Entry-point module of the built-in solvers (group ``invkit``, name ``solvers``)."""

from __future__ import annotations

from invkit.hookspecs import Register, hookimpl

from .ddnm import DDNM, DDNMPlus
from .ddrm import DDRM
from .diffpir import DiffPIR
from .dps import DPS
from .exact import ExactSolver
from .hio import HIO
from .pigdm import PiGDM


@hookimpl
def invkit_register_solvers(register: Register) -> None:
    """Register ``ddrm``, ``ddnm``, ``ddnm_plus``, ``pigdm``, ``diffpir``, ``dps``, ``exact`` and ``hio``."""
    for solver in (DDRM, DDNM, DDNMPlus, PiGDM, DiffPIR, DPS, ExactSolver, HIO):
        register(solver.name, solver)
