"""Parameter schemas: conversion, validation and messages."""

from __future__ import annotations

import pytest

from invkit.params import Param, ParamError, float_tuple, format_schema, int_tuple, parse_kv, parse_params

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
