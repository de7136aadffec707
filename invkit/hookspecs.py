"""Pluggy hook specifications of the ``invkit`` project.

A plugin is any module (or object) with functions decorated by :data:`hookimpl` whose names
match the hooks below. Installed packages expose their plugin module through the entry-point
group ``invkit``::

    # pyproject.toml of a third-party package
    [project.entry-points.invkit]
    my_blur = "my_package.plugin"

Plugins register **classes or factories by name**, never heavy instances: nothing is built
until a user asks for that name.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, Protocol

import pluggy

__all__ = ["PROJECT", "hookimpl", "hookspec", "Register", "CommandRegistry", "CommandSetup", "CommandRun"]

#: The pluggy project name, and the entry-point group plugins are found in.
PROJECT = "invkit"

#: Marks a hook specification (the functions of this module).
hookspec = pluggy.HookspecMarker(PROJECT)
#: Marks a plugin's hook implementation: ``@invkit.hookimpl`` above ``def invkit_register_operators(register): ...``.
hookimpl = pluggy.HookimplMarker(PROJECT)

#: The callback a registration hook receives: ``register(name, factory)``.
Register = Callable[[str, Any], None]


#: A subcommand's ``setup(parser)``: adds its arguments.
CommandSetup = Callable[[argparse.ArgumentParser], None]
#: A subcommand's ``run(args)``: does the work, returns the exit status (None for 0).
CommandRun = Callable[[argparse.Namespace], "int | None"]


class CommandRegistry(Protocol):
    """What :func:`~invkit.hookspecs.invkit_register_commands` receives: the one method a plugin calls on it.

    The command line (:mod:`invkit.cli`) implements it; it is declared here so that the hook
    specification, and the plugins typed against it, do not depend on the command line.
    """

    def add_command(self, name: str, help: str, setup: CommandSetup, run: CommandRun) -> None:
        """Add subcommand ``name``; ``setup(parser)`` adds arguments, ``run(args)`` returns an exit code."""
        ...


@hookspec
def invkit_register_operators(register: Register) -> None:
    """Register operator classes by name.

    Each class subclasses a rung of the forward-model ladder — :class:`invkit.ForwardModel`
    (nonlinear, differentiable), :class:`invkit.LinearOperator` or :class:`invkit.SVDOperator` — declares
    ``name``, a ``params`` schema and a ``check_shape``, and is built as
    ``cls(in_shape, **params)``.

    Example:
        A complete plugin module that adds a (trivial) operator::

            import torch
            from invkit import SVDOperator, Param, hookimpl

            class Gain(SVDOperator):
                name = "gain"
                params = (Param("gain", float, 2.0, "multiplier", min=0.0),)
                check_shape = (1, 4, 4)

                def __init__(self, in_shape, *, gain=2.0):
                    super().__init__(in_shape, gain=gain)

                @property
                def out_shape(self):
                    return self.in_shape

                @property
                def singular_values(self):
                    return torch.full((self.in_numel,), abs(self.config["gain"]), dtype=torch.float64)

                def Vt(self, x):
                    return x.reshape(x.shape[0], -1)

                def V(self, z):
                    return z.reshape(z.shape[0], *self.in_shape)

                def Ut(self, y):
                    return y.reshape(y.shape[0], -1)

                def U(self, z):
                    return z.reshape(z.shape[0], *self.in_shape)

            @hookimpl
            def invkit_register_operators(register):
                register("gain", Gain)
    """


@hookspec
def invkit_register_priors(register: Register) -> None:
    """Register prior factories by name.

    A factory is a callable ``factory(**params) -> Prior`` (usually a :class:`invkit.Prior`
    subclass) with an optional ``params`` schema; it is called only when the prior is used.

    Example:
        ::

            import torch
            from invkit import Prior, hookimpl

            class Flat(Prior):
                '''Improper flat prior: the MMSE denoiser is the identity.'''
                name = "flat"

                def denoise(self, x, sigma):
                    return x

            @hookimpl
            def invkit_register_priors(register):
                register("flat", Flat)
    """


@hookspec
def invkit_register_solvers(register: Register) -> None:
    """Register solver classes by name.

    A solver subclasses :class:`invkit.Solver`, declares a ``params`` schema and what it
    ``requires`` (:class:`invkit.Capability` members; a problem lacking one is refused before
    any work), calls ``self.check(problem, prior)`` first in ``solve`` and implements
    ``solve(problem, prior, *, steps, generator, callback)``. Draw every random number from
    ``generator``; set ``row_generators = True`` and draw with :func:`invkit.randn_rows` to
    accept one generator per batch row, which makes ``invkit solve`` samples independent of
    ``--batch``.

    Example:
        ::

            from invkit import Capability, Result, Solver, hookimpl

            class PseudoInverse(Solver):
                '''Ignore the prior and return H^+ y (needs an SVD).'''
                name = "pinv"
                requires = frozenset({Capability.SVD})
                row_generators = True   # accepts one generator per row (it draws none)
                stochastic = False      # the seed changes nothing

                def solve(self, problem, prior, *, steps=None, generator=None, callback=None):
                    self.check(problem, prior)
                    op = problem.require_svd()
                    return Result(x=op.pinv(problem.y))

            @hookimpl
            def invkit_register_solvers(register):
                register("pinv", PseudoInverse)
    """


@hookspec
def invkit_register_commands(cli: CommandRegistry) -> None:
    """Add subcommands to the ``invkit`` command line.

    ``cli.add_command(name, help, setup, run)``: ``setup(parser)`` adds arguments to an
    :class:`argparse.ArgumentParser`; ``run(args)`` does the work and returns an exit code.

    Example:
        ::

            from invkit import hookimpl

            def _setup(parser):
                parser.add_argument("who", nargs="?", default="world")

            def _run(args):
                print(f"hello, {args.who}")
                return 0

            @hookimpl
            def invkit_register_commands(cli):
                cli.add_command("hello", help="say hello", setup=_setup, run=_run)
    """
