"""Registry behaviour with in-test hookimpls (a fresh plugin manager per test)."""

from __future__ import annotations

import warnings
from typing import Annotated

import pytest
import torch

from invkit import Operator, Prior, Solver, hookimpl
from invkit.params import Arg, Param, ParamError, format_schema
from invkit.registry import PluginConflictError, PluginWarning, Registry, UnknownPluginError
from invkit_operators.denoising import Denoising


class Twice(Operator):
    """y = 2x"""

    name = "twice"
    params = (Param("factor", float, 2.0, "gain", min=0.0, max=10.0),)

    def __init__(self, in_shape, *, factor=2.0):
        super().__init__(in_shape, factor=factor)

    @property
    def out_shape(self):
        return self.in_shape

    def forward(self, x):
        return self.config["factor"] * x

    def adjoint(self, y):
        return self.config["factor"] * y


class FlatPrior(Prior):
    """Identity denoiser."""

    params = (Param("scale", float, 1.0, "unused"),)

    def __init__(self, scale=1.0):
        self.scale = scale

    def denoise(self, x, sigma):
        return x


class PluginA:
    @hookimpl
    def invkit_register_operators(self, register):
        register("twice", Twice)

    @hookimpl
    def invkit_register_priors(self, register):
        register("flat", FlatPrior)


class PluginB:
    @hookimpl
    def invkit_register_operators(self, register):
        register("twice", Twice)
        register("ident", Denoising)


class Raising:
    @hookimpl
    def invkit_register_operators(self, register):
        register("half_done", Twice)
        raise RuntimeError("boom")


class Misnamed:
    @hookimpl
    def invkit_register_operatorz(self, register):  # typo: no such hook
        register("never", Twice)


def reg(*plugins, **kw) -> Registry:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PluginWarning)
        return Registry(entry_points=False, plugins=plugins, **kw)


def test_registration_is_attributed_to_distribution():
    r = reg((PluginA(), "plug_a", "dist-a"))
    entry = r.get("operator", "twice")
    assert entry.distribution == "dist-a" and entry.plugin == "plug_a" and entry.factory is Twice
    assert r.names("prior") == ["flat"]


def test_duplicate_names_name_both_distributions_and_other_names_still_work():
    r = reg((PluginA(), "plug_a", "dist-a"), (PluginB(), "plug_b", "dist-b"))
    with pytest.warns(PluginWarning, match="'twice' is registered by 'dist-a'.*'dist-b'"):
        with pytest.raises(PluginConflictError, match="dist-a.*dist-b"):
            r.get("operator", "twice")
    assert r.get("operator", "ident").distribution == "dist-b"
    assert any("twice" in w and "dist-a" in w and "dist-b" in w for w in r.warnings)
    assert "twice" not in r.names("operator")


def test_plugin_raising_during_registration_warns_and_registers_nothing():
    with pytest.warns(PluginWarning, match="'raiser'.*dist-r.*RuntimeError: boom"):
        r = Registry(entry_points=False, plugins=[(Raising(), "raiser", "dist-r"), (PluginB(), "plug_b", "dist-b")])
        r.names("operator")
    assert "half_done" not in r.names("operator")  # all-or-nothing per plugin
    assert {"twice", "ident"} <= set(r.names("operator"))


def test_unknown_hook_is_rejected_with_warning():
    with pytest.warns(PluginWarning, match="misnamed.*unknown hook"):
        r = Registry(entry_points=False, plugins=[(Misnamed(), "misnamed", "dist-m"), (PluginA(), "a", "d")])
    assert r.names("operator") == ["twice"]


def test_blocked_plugin_is_skipped(monkeypatch):
    monkeypatch.setenv("INVKIT_BLOCK_PLUGINS", "plug_b, other")
    r = reg((PluginA(), "plug_a", "dist-a"), (PluginB(), "plug_b", "dist-b"))
    assert r.get("operator", "twice").distribution == "dist-a"
    assert "ident" not in r.names("operator")
    assert any("plug_b" in s for s in r.skipped)


def test_unknown_name_lists_known_and_suggests():
    r = reg(PluginA())
    with pytest.raises(UnknownPluginError) as info:
        r.get("operator", "twic")
    msg = str(info.value)
    assert "unknown operator 'twic'" in msg and "twice" in msg and "Did you mean 'twice'" in msg
    with pytest.raises(ValueError, match="unknown plugin kind"):
        r.get("widget", "x")


def test_register_validates_name_and_factory():
    class BadName:
        @hookimpl
        def invkit_register_operators(self, register):
            register("has space", Twice)

    class NotOperator:
        @hookimpl
        def invkit_register_operators(self, register):
            register("thing", object())

    with pytest.warns(PluginWarning, match="invalid operator name"):
        Registry(entry_points=False, plugins=[BadName()]).names("operator")
    with pytest.warns(PluginWarning, match="registered with a class or factory"):
        Registry(entry_points=False, plugins=[NotOperator()]).names("operator")


def test_build_operator_parses_string_params():
    r = reg(PluginA())
    op = r.build_operator("twice", "1,2,3", ["factor=3.5"])
    assert op.config == {"factor": 3.5}
    assert torch.equal(op.forward(torch.ones(1, 1, 2, 3)), torch.full((1, 1, 2, 3), 3.5))
    with pytest.raises(ParamError, match="'factor' = 11.0 is out of range"):
        r.build_operator("twice", (1, 2, 3), {"factor": "11"})
    with pytest.raises(ParamError, match="unknown parameter.*'sigma'.*known: factor"):
        r.build_operator("twice", (1, 2, 3), ["sigma=1"])
    with pytest.raises(ValueError, match="three positive integers"):
        r.build_operator("twice", (2, 3), {})


def test_build_prior_through_schema():
    r = reg(PluginA())
    prior = r.build("prior", "flat", ["scale=0.5"])
    assert isinstance(prior, FlatPrior) and prior.scale == 0.5


def scaled(scale: Annotated[float, Arg("gain", min=0.0, min_inclusive=False)] = 1.0, label: Annotated[str | None, Arg("tag")] = None) -> FlatPrior:
    """A prior factory whose signature is its schema."""
    return FlatPrior(scale)


def mine():
    """A third party's plain factory without parameters."""
    return FlatPrior()


def mine2(scale=1.0):
    """A third party's plain factory: nothing declared about its parameter."""
    return FlatPrior(scale)


class PlainSolver(Solver):
    """A third party's solver with a plain __init__ (nothing declared)."""

    name = "plain_solver"

    def __init__(self, steps=10, label=None):
        self.steps, self.label = steps, label

    def solve(self, problem, prior, *, steps=None, generator=None, callback=None):
        raise NotImplementedError


def test_plain_third_party_factories_register_with_an_inferred_schema():
    class Plugin:
        @hookimpl
        def invkit_register_priors(self, register):
            register("mine", mine)
            register("mine2", mine2)

        @hookimpl
        def invkit_register_solvers(self, register):
            register("plain_solver", PlainSolver)

    with warnings.catch_warnings():
        warnings.simplefilter("error", PluginWarning)  # nothing is refused
        r = Registry(entry_points=False, plugins=[(Plugin(), "plain", "dist-p"), (PluginA(), "plug_a", "dist-a")])
        assert r.names("prior") == ["flat", "mine", "mine2"]
    assert r.get("prior", "mine").params == ()
    assert r.get("prior", "mine2").params == (Param("scale", float, 1.0),)  # type and default from the signature, no doc
    assert r.get("prior", "mine2").plugin == "plain" and r.get("prior", "mine2").distribution == "dist-p"
    assert isinstance(r.build("prior", "mine"), FlatPrior)
    assert r.build("prior", "mine2", ["scale=0.5"]).scale == 0.5 and r.build("prior", "mine2").scale == 1.0
    with pytest.raises(ParamError, match=r"^prior 'mine2': parameter 'scale': cannot read 'abc' \(.*\); expected float$"):
        r.build("prior", "mine2", ["scale=abc"])
    with pytest.raises(ParamError, match=r"^prior 'mine': unknown parameter\(s\) 'scale'; known: \(none\)$"):
        r.build("prior", "mine", ["scale=1"])
    # the solver: the same inferred schema for --solver-arg strings and direct calls
    assert r.names("solver") == ["plain_solver"]
    assert r.get("solver", "plain_solver").params == PlainSolver.params
    assert format_schema(PlainSolver.params) == "  steps: int, default 10.\n  label: str, default None."
    solver = r.build("solver", "plain_solver", ["steps=5", "label=run1"])
    assert (solver.steps, solver.label) == (5, "run1") and PlainSolver(steps="7").steps == 7
    with pytest.raises(ParamError) as cli:
        r.build("solver", "plain_solver", ["steps=many"])
    with pytest.raises(ParamError) as direct:
        PlainSolver(steps="many")
    assert str(cli.value) == str(direct.value) == (
        "solver 'plain_solver': parameter 'steps': cannot read 'many' (could not convert string to float: 'many'); expected int"
    )
    marker = object()
    assert PlainSolver(label=marker).label is marker  # a value of no basic type is passed as given


def contradictory(scale: Annotated[float, Arg("gain", min=1.0)] = 0.5) -> FlatPrior:
    """A prior factory whose default breaks its own declaration."""
    return FlatPrior(scale)


def test_a_contradictory_declaration_is_refused_when_registered():
    class Plugin:
        @hookimpl
        def invkit_register_priors(self, register):
            register("contradictory", contradictory)

    with pytest.warns(PluginWarning, match=r"'sloppy'.*dist-s.*SchemaError: contradictory\(\): parameter 'scale': its default 0.5 fails its own declaration"):
        r = Registry(entry_points=False, plugins=[(Plugin(), "sloppy", "dist-s"), (PluginA(), "plug_a", "dist-a")])
        r.names("prior")
    assert r.names("prior") == ["flat"]  # the other plugin's registrations stand


def test_installed_entry_points_include_builtins():
    r = Registry()
    entry = r.get("operator", "denoising")
    assert entry.distribution == "invkit" and entry.plugin == "operators"


def test_blocking_by_distribution_name(monkeypatch):
    monkeypatch.setenv("INVKIT_BLOCK_PLUGINS", "invkit")
    r = Registry()
    assert r.names("operator") == []
    assert any("operators (invkit)" in s for s in r.skipped)


def test_plugin_commands_that_clash_or_fail_do_not_break_the_cli(capsys):
    from invkit.cli import build_parser

    class Clash:
        @hookimpl
        def invkit_register_commands(self, cli):
            cli.add_command("plugins", help="shadow", setup=lambda p: None, run=lambda a: 0)

    class Broken:
        @hookimpl
        def invkit_register_commands(self, cli):
            def setup(parser):
                raise RuntimeError("bad setup")

            cli.add_command("broken", help="x", setup=setup, run=lambda a: 0)

    class Good:
        @hookimpl
        def invkit_register_commands(self, cli):
            cli.add_command("hello", help="hi", setup=lambda p: p.add_argument("--who", default="x"), run=lambda a: print(f"hello {a.who}") or 0)

    r = reg((Clash(), "clash", "dist-c"), (Broken(), "broken", "dist-b"), (Good(), "good", "dist-g"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PluginWarning)
        parser, commands = build_parser(r)
    assert set(commands.commands) == {"hello"}
    assert any("dist-c" in w and "'plugins', which already exists" in w for w in r.warnings)
    assert any("dist-b" in w and "RuntimeError: bad setup" in w for w in r.warnings)
    args = parser.parse_args(["hello", "--who", "me"])
    assert args.handler(args) == 0 and "hello me" in capsys.readouterr().out
    args = parser.parse_args(["plugins"])  # the core command survived
    assert args.handler(args) == 0
