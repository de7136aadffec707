"""Entry-point module of the DDRM solver (group ``invkit``, name ``ddrm``)."""

from __future__ import annotations

from invkit.hookspecs import Register, hookimpl

from .ddrm import DDRM


@hookimpl
def invkit_register_solvers(register: Register) -> None:
    """Register ``ddrm``."""
    register(DDRM.name, DDRM)
