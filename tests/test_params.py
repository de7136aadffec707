"""Parameter schemas: conversion, validation and messages; schemas declared once, in a signature."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import pytest

from invkit.params import (
    Arg,
    Param,
    ParamError,
    SchemaError,
    float_tuple,
    format_schema,
    int_tuple,
    parse_kv,
    parse_params,
    schema_of,
    signature_params,
    validated,
)

SCHEMA = (
    Param("sigma", float, 3.0, "std in px", min=0.0, min_inclusive=False),
    Param("size", int, None, "kernel size", min=1),
    Param("boundary", str, "reflect", "padding", choices=("zero", "reflect")),
    Param("flag", bool, False, "switch"),
    Param("weights", float_tuple, (1.0, 1.0), "weights"),
)


def test_defaults_and_conversion():
    assert parse_params(SCHEMA) == {"sigma": 3.0, "size": None, "boundary": "reflect", "flag": False, "weights": (1.0, 1.0)}
    got = parse_params(SCHEMA, ["sigma=1.5", "size=7", "boundary=zero", "flag=yes", "weights=0.2,0.8"])
    assert got == {"sigma": 1.5, "size": 7, "boundary": "zero", "flag": True, "weights": (0.2, 0.8)}
    assert parse_params(SCHEMA, {"size": "none"})["size"] is None
    assert parse_params(SCHEMA, {"size": 8.0})["size"] == 8


@pytest.mark.parametrize(
    "values,match",
    [
        (["sigma=0"], r"'sigma' = 0.0 is out of range; expected 0.0 < float"),
        (["sigma=abc"], r"'sigma': cannot read 'abc'"),
        (["sigma=nan"], r"'sigma' is NaN"),
        (["size=2.5"], r"'size': cannot read '2.5'.*not an integer"),
        (["size=0"], r"'size' = 0 is out of range"),
        (["boundary=wrap"], r"'boundary' = 'wrap' is not allowed; expected one of zero, reflect"),
        (["flag=maybe"], r"'flag': cannot read 'maybe'"),
        (["bogus=1"], r"unknown parameter\(s\) 'bogus'; known: sigma, size, boundary, flag, weights"),
        (["sigma"], r"not of the form key=value"),
    ],
)
def test_errors_name_the_parameter(values, match):
    with pytest.raises(ParamError, match=match):
        parse_params(SCHEMA, values, owner="gaussian_blur")


def test_required_parameter():
    with pytest.raises(ParamError, match="'path' is required"):
        parse_params((Param("path", str, doc="file"),), {})


def test_helpers():
    assert int_tuple("3,16,24") == (3, 16, 24) and int_tuple("3x4") == (3, 4)
    assert float_tuple("0.299,0.587,0.114") == (0.299, 0.587, 0.114)
    for bad in ("0.3,,0.4", "0.3,", ",0.3", ""):  # empty parts are refused, as int_tuple refuses them
        with pytest.raises(ValueError, match=r"has an empty part; give numbers separated by commas"):
            float_tuple(bad)
    with pytest.raises(ValueError, match="could not convert"):
        float_tuple("0.3,a")
    assert parse_kv(["a-b=1", "c=x=y"]) == {"a_b": "1", "c": "x=y"}
    text = format_schema(SCHEMA)
    assert "sigma: 0.0 < float, default 3.0. std in px" in text


def test_one_bool_parser_for_parameters_flags_and_configs():
    import pytest

    from invkit.params import parse_bool
    from invkit_priors.networks.adm import ADMConfig
    from invkit_priors.networks.ddpm import DDPMConfig

    for word in ("1", "true", "T", "yes", "Y", "on", True, 1):
        assert parse_bool(word) is True
    for word in ("0", "False", "f", "no", "N", "off", False, 0):
        assert parse_bool(word) is False
    for bad in ("maybe", 2, None, 0.5):
        with pytest.raises(ValueError, match="not a boolean"):
            parse_bool(bad)
    with pytest.raises(ValueError, match="ADM flag 'use_scale_shift_norm': not a boolean: 'sometimes'"):
        ADMConfig.from_flags({"use_scale_shift_norm": "sometimes"})
    # a DDPM config used to read any unknown word as False; now it is refused
    with pytest.raises(ValueError, match="DDPM config 'resamp_with_conv': not a boolean"):
        DDPMConfig(resamp_with_conv="sometimes")
    assert DDPMConfig(resamp_with_conv="yes").resamp_with_conv is True


def test_one_shape_parser():
    import pytest

    from invkit.forward import as_shape

    assert as_shape("3,64,48") == as_shape("3x64x48") == as_shape([3, 64, 48]) == (3, 64, 48)
    for bad in ("3,a,4", "3,4", (0, 1, 2)):
        with pytest.raises(ValueError, match="three positive integers"):
            as_shape(bad)


# ---------------------------------------------------------------------- schemas declared once, in the signature
def _blur(
    path: Annotated[str, Arg("kernel file")],
    sigma: Annotated[float, Arg("std in px", min=0.0, min_inclusive=False)] = 3.0,
    size: Annotated[int | None, Arg("kernel size", min=1, max=99, max_inclusive=False)] = None,
    boundary: Annotated[str, Arg("padding", choices=("zero", "reflect"))] = "reflect",
    flag: Annotated[bool, Arg("switch")] = False,
    weights: Annotated[Sequence[float], Arg("weights", type=float_tuple)] = (1.0, 1.0),
) -> dict[str, Any]:
    return {"path": path, "sigma": sigma, "size": size, "boundary": boundary, "flag": flag, "weights": weights}


def test_schema_derived_from_a_signature():
    schema = signature_params(_blur)
    assert [p.name for p in schema] == ["path", "sigma", "size", "boundary", "flag", "weights"]
    path, sigma, size, boundary, flag, weights = schema
    assert path.required and path.type is str and path.doc == "kernel file"
    assert not sigma.required and sigma.default == 3.0 and sigma.type is float
    assert (sigma.min, sigma.min_inclusive, sigma.max) == (0.0, False, None)
    assert size.type is int and size.default is None and (size.min, size.max, size.max_inclusive) == (1, 99, False)
    assert boundary.choices == ("zero", "reflect") and boundary.default == "reflect"
    assert flag.type is bool and flag.default is False
    assert weights.type is float_tuple and weights.default == (1.0, 1.0)
    # exactly what the same schema written by hand as Param tuples is
    assert schema[1:] == (
        Param("sigma", float, 3.0, "std in px", min=0.0, min_inclusive=False),
        Param("size", int, None, "kernel size", min=1, max=99, max_inclusive=False),
        Param("boundary", str, "reflect", "padding", choices=("zero", "reflect")),
        Param("flag", bool, False, "switch"),
        Param("weights", float_tuple, (1.0, 1.0), "weights"),
    )
    assert "path: str, required. kernel file" in format_schema(schema)
    # a class: its __init__, without self; one without __init__ declares nothing
    class Thing:
        def __init__(self, gain: Annotated[float, Arg("gain", max=10.0)] = 2.0) -> None:
            self.gain = gain

    assert signature_params(Thing) == (Param("gain", float, 2.0, "gain", max=10.0),)
    assert signature_params(type("Bare", (), {})) == ()


def test_a_direct_call_is_validated_like_a_cli_string():
    blur = validated(_blur)
    assert blur(path="k.npy", sigma="1.5", size="7", flag="yes", weights="0.2,0.8") == {
        "path": "k.npy", "sigma": 1.5, "size": 7, "boundary": "reflect", "flag": True, "weights": (0.2, 0.8)
    }
    assert blur("k.npy", 2, size=8.0)["size"] == 8 and blur("k.npy")["sigma"] == 3.0  # positional, converted, defaults filled
    schema = signature_params(_blur)
    for key, text in (("sigma", "0"), ("sigma", "nan"), ("sigma", "abc"), ("size", "2.5"), ("size", "99"), ("boundary", "wrap"), ("flag", "maybe")):
        with pytest.raises(ParamError) as direct:
            blur("k.npy", **{key: text})
        with pytest.raises(ParamError) as cli:
            parse_params(schema, ["path=k.npy", f"{key}={text}"], owner="_blur")
        assert str(direct.value) == str(cli.value), key
    with pytest.raises(ParamError, match=r"^_blur: parameter 'sigma' = 0.0 is out of range; expected 0.0 < float$"):
        blur("k.npy", sigma=0)  # a typed value: the same message as sigma=0 on the command line
    with pytest.raises(TypeError, match="_blur: missing a required argument: 'path'"):
        blur()
    with pytest.raises(TypeError, match="unexpected keyword argument 'bogus'"):
        blur("k.npy", bogus=1)
    assert signature_params(blur) == schema and blur.__name__ == "_blur"  # the wrapper keeps the declaration


def test_a_solver_declares_its_parameters_once():
    from invkit.registry import get_registry
    from invkit_solvers.ddrm import DDRM
    from invkit_solvers.exact import ExactSolver

    # the schema (as listed by the CLI) is the one DDRM used to declare by hand
    assert DDRM.params == (
        Param("eta", float, 0.85, "η: transition noise (0 = deterministic)", min=0.0, max=1.0),
        Param("eta_b", float, 1.0, "η_b: weight of the measurement in observed coefficients", min=0.0),
        Param("svd_rtol", float, 1e-3, "relative singular-value threshold below which a coefficient is unobserved", min=0.0, max=1.0, max_inclusive=False),
        Param("max_dense", int, 4096, "largest max(m, n) for the dense SVD fallback", min=1),
    )
    assert ExactSolver.params == (Param("max_size", int, 4096, "largest n = C*H*W (and m) to materialise as dense matrices", min=1),)
    reg = get_registry()
    assert reg.get("solver", "ddrm").params == DDRM.params
    # a direct call and a CLI string are refused with the same message
    with pytest.raises(ParamError) as direct:
        DDRM(eta=2.0)
    with pytest.raises(ParamError) as cli:
        reg.build("solver", "ddrm", ["eta=2.0"])
    assert str(direct.value) == str(cli.value) == "solver 'ddrm': parameter 'eta' = 2.0 is out of range; expected 0.0 <= float <= 1.0"
    solver = DDRM(eta="0.5", max_dense="100")
    assert (solver.eta, solver.eta_b, solver.svd_rtol, solver.max_dense) == (0.5, 1.0, 1e-3, 100) and type(solver.max_dense) is int
    with pytest.raises(ParamError, match=r"^solver 'exact': parameter 'max_size' = 0 is out of range"):
        ExactSolver(0)


def test_prior_factories_declare_their_parameters_once():
    from invkit.registry import get_registry
    from invkit_priors.analytic import gaussian, gaussian_mixture
    from invkit_priors.default.prior import default
    from invkit_priors.plugin import catalogue_prior, checkpoint

    reg = get_registry()
    for name, factory in (("default", default), ("gaussian", gaussian), ("gaussian_mixture", gaussian_mixture), ("checkpoint", checkpoint)):
        assert reg.get("prior", name).factory is factory
        assert "params" not in vars(factory) and "name" not in vars(factory), f"{name}: metadata bolted onto the factory"
        assert reg.get("prior", name).params == signature_params(factory) != ()
    assert reg.get("prior", "default").params == (
        Param("device", str, "cpu", "where the network runs: cpu, cuda or auto"),
        Param("half", bool, False, "float16 inference (GPU)"),
        Param("grad_checkpoint", bool, False, "recompute activations when a solver differentiates through the prior (dps): less memory, slower"),
        Param("clip", bool, False, "clip denoise's estimate to [0, 1] (guided-diffusion's clip_denoised): an exact MMSE estimate lies there; "
              "+0.3 dB on DDRM colorization of the default prior (docs/default_prior.md)"),
    )
    assert signature_params(gaussian_mixture)[0] == Param(
        "means", float_tuple, (0.3, 0.7), "comma-separated grey levels, one flat mean image per component, [0, 1] units"
    )
    path = signature_params(checkpoint)[0]
    assert path.name == "path" and path.required
    factory = catalogue_prior("adm-ffhq256")
    assert [p.name for p in signature_params(factory)] == ["class_label", "half", "device", "grad_checkpoint", "clip"]
    with pytest.raises(ParamError, match=r"^prior 'adm-ffhq256': parameter 'class_label' = -1 is out of range"):
        factory(class_label=-1)  # refused before looking for the file
    with pytest.raises(ParamError, match=r"^gaussian: parameter 'variance' = 0.0 is out of range"):
        gaussian(variance=0)
    assert gaussian_mixture(means="0.2,0.6", weights=[1, 3]).weights.tolist() == [0.25, 0.75]


def test_a_class_declaring_params_explicitly_is_not_read_from_its_signature():
    explicit = (Param("k", float, 2.0, "gain", min=0.0),)

    class Operatorish:
        params = explicit

        def __init__(self, in_shape: Any, **params: Any) -> None:  # no Annotated anywhere: the tuple is the declaration
            self.config = parse_params(self.params, params)

    assert schema_of(Operatorish) == explicit
    assert [p.name for p in signature_params(Operatorish)] == ["in_shape"]  # **params declares nothing: left out
    # operators (a params tuple and **params) and third-party solvers declaring params keep working
    from invkit.registry import get_registry
    from invkit_operators.super_resolution import BicubicSuperResolution, SuperResolution

    assert SuperResolution.params is BicubicSuperResolution.params  # one shared declaration
    assert get_registry().get("operator", "super_resolution").params == SuperResolution.params
    from invkit import Solver

    class Declared(Solver):
        """Declares params and validates them itself."""

        name = "declared"
        params = explicit

        def __init__(self, k=2.0):  # noqa: ANN001 - deliberately unannotated
            self.k = parse_params(self.params, {"k": k}, owner="solver 'declared'")["k"]

        def solve(self, problem, prior, *, steps=None, generator=None, callback=None):  # noqa: ANN001
            raise NotImplementedError

    assert Declared.params is explicit and schema_of(Declared) == explicit and Declared(k="3").k == 3.0


@pytest.mark.parametrize(
    "declare,match",
    [
        ("def f(x: Annotated[list[int], Arg('xs')] = None): pass", r"parameter 'x': unsupported annotation list\[int\]; .*type=float_tuple"),
        ("def f(x: Annotated[torch.Tensor, Arg('t')]): pass", r"parameter 'x': unsupported annotation Tensor"),
        ("def f(x: Annotated[int, Arg('n')] = None): pass", r"parameter 'x' defaults to None; annotate it `int \| None`"),
        ("def f(x: Annotated[int | None, Arg('n')] = 3): pass", r"parameter 'x' is annotated `int \| None` but its default is 3"),
        ("def f(x: Annotated[int, Arg('n', min=1)] = 0): pass", r"parameter 'x': its default 0 fails its own declaration"),
        ("def f(x: Annotated[str, Arg('s', choices=('a', 'b'))] = 'c'): pass", r"its default 'c' fails its own declaration"),
        ("def f(x: Annotated[str, Arg('s', min=1)] = 'a'): pass", r"min/max apply to numbers"),
        ("def f(x: Annotated[int, Arg('  ')] = 1): pass", r"parameter 'x': its Arg has no doc"),
        ("def f(x: Annotated[int, Arg('n')] | None = None): pass", r"write `Annotated\[X \| None, Arg\(...\)\]`"),
        ("def f(*args: Any): pass", r"^f\(\): \*args cannot be passed by keyword"),
        ("def f(x=1, /): pass", r"parameter 'x' is positional-only"),
        ("def f(x: Annotated[int, Arg('n'), Arg('m')] = 1): pass", r"parameter 'x' has 2 Arg metadata objects"),
        ("def f(x: Annotated[int, Arg('n')] = 1, /): pass", r"parameter 'x' is positional-only"),
        ("def f(x: 'Annotated[Undefined, Arg(\"n\")]' = 1): pass", r"cannot evaluate its annotation"),
    ],
)
def test_a_bad_declaration_fails_where_it_is_declared(declare, match):
    import torch

    scope: dict[str, Any] = {"Annotated": Annotated, "Arg": Arg, "Any": Any, "torch": torch}
    exec(declare, scope)  # noqa: S102 - each case is a one-line declaration
    with pytest.raises(SchemaError, match=match):
        signature_params(scope["f"])
    with pytest.raises(SchemaError, match=match):
        validated(scope["f"])  # at decoration, not at the first call


def test_a_plain_parameter_gets_an_inferred_schema():
    """A third party's parameter without Arg: name, default or required, a basic type; no doc, no constraints."""
    import numpy as np

    def plain(
        path,
        scale=1.0,
        steps: int = 10,
        half=False,
        name="x",
        gain: float | None = None,
        rate: Annotated[int, "not an Arg"] = 3,
        sizes=(1, 2),
        table: np.ndarray | None = None,
        hidden: "TypeCheckingOnly" = None,  # noqa: F821 - an annotation that cannot be evaluated declares nothing
        **extra: Any,
    ) -> dict[str, Any]:
        return {"path": path, "scale": scale, "steps": steps, "sizes": sizes, "table": table, "extra": extra}

    schema = signature_params(plain)
    assert [(p.name, p.type.__name__, "required" if p.required else p.default, p.doc, p.min, p.choices) for p in schema] == [
        ("path", "str", "required", "", None, None),
        ("scale", "float", 1.0, "", None, None),
        ("steps", "int", 10, "", None, None),
        ("half", "bool", False, "", None, None),
        ("name", "str", "x", "", None, None),
        ("gain", "float", None, "", None, None),
        ("rate", "int", 3, "", None, None),
        ("sizes", "str", (1, 2), "", None, None),
        ("table", "str", None, "", None, None),
        ("hidden", "str", None, "", None, None),
    ]  # **extra declares nothing
    assert format_schema(schema[:2]) == "  path: str, required.\n  scale: float, default 1.0."
    with pytest.raises(ParamError, match=r"^plain: parameter 'path' is required; pass --arg path=\.\.\.$"):
        parse_params(schema, {}, owner="plain")
    assert parse_params(schema, ["path=p", "scale=2", "steps=3", "half=yes", "gain=none", "sizes=3,4"])["sizes"] == "3,4"  # text stays text
    with pytest.raises(ParamError, match=r"^plain: parameter 'steps': cannot read '2.5' \(2.5 is not an integer\); expected int$"):
        parse_params(schema, ["path=p", "steps=2.5"], owner="plain")
    # a direct call: basic values converted, a value of no basic type passed as given
    checked = validated(plain)
    table = np.eye(2)
    out = checked("p", scale="0.5", sizes=[5, 6], table=table, more=1)
    assert out["scale"] == 0.5 and out["sizes"] == [5, 6] and out["table"] is table and out["extra"] == {"more": 1}


def test_a_plain_solver_gets_an_inferred_schema():
    from invkit import Solver

    class Loose(Solver):
        name = "loose"

        def __init__(self, steps=10):  # noqa: ANN001 - a third party's plain __init__
            self.steps = steps

        def solve(self, problem, prior, *, steps=None, generator=None, callback=None):  # noqa: ANN001
            raise NotImplementedError

    assert Loose.params == (Param("steps", int, 10),)
    assert Loose(steps="4").steps == 4 and Loose().steps == 10
    with pytest.raises(ParamError, match=r"^solver 'loose': parameter 'steps': cannot read 'many'.*; expected int$"):
        Loose(steps="many")

    class PassesOn(Loose):  # **kwargs passed on: keeps the schema it inherits, not wrapped again
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)

    assert PassesOn.params is Loose.params and PassesOn(steps="5").steps == 5
    with pytest.raises(SchemaError, match=r"Starred.__init__: \*args cannot be passed by keyword"):

        class Starred(Solver):
            def __init__(self, *args):  # noqa: ANN002
                self.args = args

            def solve(self, problem, prior, *, steps=None, generator=None, callback=None):  # noqa: ANN001
                raise NotImplementedError


def test_a_solver_subclass_declaring_arg_parameters_is_validated():
    from invkit import Solver

    class Fine(Solver):
        name = "fine"

        def __init__(self, *, steps: Annotated[int, Arg("iterations", min=1)] = 10) -> None:
            self.steps = steps

        def solve(self, problem, prior, *, steps=None, generator=None, callback=None):  # noqa: ANN001
            raise NotImplementedError

    assert Fine.params == (Param("steps", int, 10, "iterations", min=1),)
    assert Fine(steps="4").steps == 4
    with pytest.raises(ParamError, match=r"^solver 'fine': parameter 'steps' = 0 is out of range"):
        Fine(steps=0)

    class Subclass(Fine):  # inherits the schema and the checked __init__, named by its own name
        name = "sub"

    assert Subclass.params is Fine.params
    with pytest.raises(ParamError, match=r"^solver 'sub': parameter 'steps'"):
        Subclass(steps=0)
