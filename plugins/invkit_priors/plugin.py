"""Entry-point module of the built-in priors (group ``invkit``, name ``priors``).

Registers the analytic priors ``gaussian`` and ``gaussian_mixture``
(:mod:`invkit_priors.analytic`) and the ``exact`` solver (:mod:`invkit_priors.exact`), each
under the ``name`` of the class it builds.
"""

from __future__ import annotations

from invkit.hookspecs import Register, hookimpl


@hookimpl
def invkit_register_priors(register: Register) -> None:
    """Register the built-in priors."""
    from .analytic import gaussian, gaussian_mixture

    for factory in (gaussian, gaussian_mixture):
        register(factory.name, factory)


@hookimpl
def invkit_register_solvers(register: Register) -> None:
    """Register the ``exact`` reference solver."""
    from .exact import ExactSolver

    register(ExactSolver.name, ExactSolver)
