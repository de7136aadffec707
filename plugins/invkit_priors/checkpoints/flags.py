"""Architecture flags of a checkpoint, in every form users write them, read into one dict.

Forms (:func:`parse_flags`): a preset name (``imagenet256_uncond``, ``imagenet256_cond``,
``ffhq256``, ``small`` for ADM; ``celebahq256`` for DDPM); ``k=v`` pairs separated by commas or
spaces, optionally after a preset name (``"small,num_channels=128"``; a list value such as
``channel_mult=1,2,2,2`` continues over commas); the guided-diffusion README's command line
(``"--image_size 256 --num_channels 256 ..."``, :func:`parse_command_line`); a JSON object; or a
mapping. Values stay strings (or what the mapping holds); the network configs
(:class:`~invkit_priors.networks.adm.ADMConfig`, :class:`~invkit_priors.networks.ddpm.DDPMConfig`)
convert and validate them, and :mod:`invkit_priors.checkpoints.schedule` takes the
diffusion-process keys.

Example:
    >>> parse_flags("small,num_channels=128", "adm")["num_channels"]
    '128'
    >>> parse_command_line("--image_size 64 --class_cond=True")
    {'image_size': '64', 'class_cond': 'True'}
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping
from typing import Any

from ..networks.adm import ADM_PRESETS
from ..networks.ddpm import DDPM_PRESETS

__all__ = ["parse_flags", "parse_command_line"]


def parse_command_line(text: str) -> dict[str, str]:
    """``"--name value --other=value"`` (guided-diffusion's ``MODEL_FLAGS``) -> ``{name: value}``.

    Raises:
        ValueError: A token that is not ``--name``, or a flag without a value.
    """
    tokens = shlex.split(text)
    flags: dict[str, str] = {}
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if not token.startswith("--"):
            raise ValueError(f"cannot parse ADM flags at {token!r} (expected --name value)")
        name = token[2:]
        if "=" in name:
            name, value = name.split("=", 1)
            i += 1
        else:
            if i + 1 >= len(tokens):
                raise ValueError(f"ADM flag --{name} has no value")
            value = tokens[i + 1]
            i += 2
        flags[name] = value
    return flags


def _split_pairs(text: str, presets: Mapping[str, Any], what: str) -> tuple[str | None, dict[str, str]]:
    tokens = [t for t in re.split(r"[,;\s]+", text.strip()) if t]
    preset: str | None = None
    out: dict[str, str] = {}
    last: str | None = None
    for i, token in enumerate(tokens):
        if "=" in token:
            key, value = token.split("=", 1)
            key = key.strip().lstrip("-").replace("-", "_")
            if not key:
                raise ValueError(f"{what} flags: empty name in {token!r}")
            out[key] = value
            last = key
        elif i == 0:
            if token not in presets:
                raise ValueError(f"unknown {what} preset {token!r}; known: {', '.join(sorted(presets))} (or give k=v flags)")
            preset = token
        elif last is not None:  # a list value such as channel_mult=1,2,2,2
            out[last] = f"{out[last]},{token}"
        else:
            raise ValueError(f"cannot read {what} flags at {token!r}; expected a preset name first, then k=v pairs")
    return preset, out


def parse_flags(flags: str | Mapping[str, Any] | None, arch: str) -> dict[str, Any]:
    """Read architecture flags in any accepted form into one dict (presets expanded).

    Args:
        flags: A preset name, ``k=v`` pairs (after an optional preset name), a ``--name value``
            command line, a JSON object, a mapping, or ``None`` (empty).
        arch: ``"adm"`` or ``"ddpm"`` (selects the presets).

    Returns:
        ``{name: value}`` with string or typed values, diffusion-process keys included.

    Raises:
        ValueError: Unknown preset or unreadable text.
    """
    presets: Mapping[str, Mapping[str, Any]] = ADM_PRESETS if arch == "adm" else DDPM_PRESETS
    if flags is None:
        return {}
    if isinstance(flags, Mapping):
        return dict(flags)
    text = str(flags).strip()
    if not text:
        return {}
    if text.startswith("{"):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{arch} flags: invalid JSON ({err})") from None
        if not isinstance(value, dict):
            raise ValueError(f"{arch} flags: the JSON must be an object, got {type(value).__name__}")
        return value
    if text.startswith("--"):
        return parse_command_line(text)
    preset, pairs = _split_pairs(text, presets, arch.upper())
    return {**(dict(presets[preset]) if preset else {}), **pairs}
