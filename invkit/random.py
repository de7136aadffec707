"""Randomness for solvers: per-row generators and per-sample seeds.

Every random draw in invkit goes through a passed ``torch.Generator`` (never torch's global
state). A solver takes one generator for the whole batch or one per batch row; with one per row,
row ``b`` draws only from ``generator[b]``, so a sample does not depend on which other samples
share its batch (the solver conformance suite checks this for every registered solver).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

__all__ = ["Generators", "resolve_generator", "randn_rows", "sample_seed", "sample_generators", "row_generators"]

#: What a solver's ``generator`` argument takes: one generator for the whole batch, or one per
#: batch row (row ``b`` draws only from ``generator[b]``, so a sample does not depend on which
#: other samples share its batch).
Generators = torch.Generator | Sequence[torch.Generator]


def _check_generators(gens: list[Any], device: torch.device | str | None, single: bool = False) -> None:
    want = torch.device(device).type if device is not None else None
    for i, g in enumerate(gens):
        label = "generator" if single else f"generator[{i}]"
        if not isinstance(g, torch.Generator):
            raise ValueError(f"{label} is a {type(g).__name__}, not a torch.Generator; pass torch.Generator objects")
        if want is not None and g.device.type != want:
            raise ValueError(
                f"{label} is on {g.device.type} but the data is on {want}; create it with torch.Generator(device={want!r})"
            )


def resolve_generator(generator: Generators | None, device: torch.device | str = "cpu") -> Generators:
    """The generator(s) a solver draws from: those passed, or a fresh randomly seeded one on ``device``.

    Solvers never touch torch's global random state; pass a seeded generator for reproducible
    output, or a list of them (one per batch row) for samples that do not depend on the batch.

    Args:
        generator: One generator, a sequence of them, or None.
        device: Where the solver draws; every generator must be on this device type.

    Returns:
        The generator, or the sequence as a list.

    Raises:
        ValueError: An empty sequence, an element that is not a ``torch.Generator``, a generator
            on another device type, or something that is neither a generator nor a sequence.
    """
    if generator is None:
        fresh = torch.Generator(device=device)
        fresh.seed()
        return fresh
    if isinstance(generator, torch.Generator):
        _check_generators([generator], device, single=True)
        return generator
    if isinstance(generator, (str, bytes)) or not isinstance(generator, Sequence):
        raise ValueError(
            f"generator is a {type(generator).__name__}; pass a torch.Generator or a list of them (one per batch row)"
        )
    gens = list(generator)
    if not gens:
        raise ValueError("generator: an empty list; pass one torch.Generator or one per batch row")
    _check_generators(gens, device)
    return gens


def randn_rows(
    generator: Generators,
    shape: tuple[int, ...],
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Standard normal draws of ``shape = (B, ...)``.

    Args:
        generator: One generator (one ``torch.randn(shape)`` call) or ``B`` generators (row ``b``
            is ``torch.randn(shape[1:])`` from ``generator[b]``).
        shape: Output shape; its first entry is the batch.
        dtype: Output dtype (torch's default if None).
        device: Output device; the generators must live there.

    Raises:
        ValueError: A list whose length is not ``shape[0]``.

    Example:
        >>> import torch
        >>> gens = [torch.Generator().manual_seed(s) for s in (1, 2)]
        >>> rows = randn_rows(gens, (2, 3))
        >>> bool(torch.equal(rows[1], torch.randn(3, generator=torch.Generator().manual_seed(2))))
        True
    """
    if isinstance(generator, torch.Generator):
        return torch.randn(shape, generator=generator, dtype=dtype, device=device)
    gens = list(generator)
    _check_generators(gens, None)
    if len(gens) != shape[0]:
        raise ValueError(f"generator: {len(gens)} generators for a batch of {shape[0]}; pass one per batch row")
    if not gens:
        return torch.empty(shape, dtype=dtype, device=device)
    return torch.stack([torch.randn(shape[1:], generator=g, dtype=dtype, device=device) for g in gens])


def sample_seed(seed: int, index: int) -> int:
    """The seed of sample ``index`` in a run seeded with ``seed`` (what ``invkit solve --seed`` uses).

    A hash of both numbers (BLAKE2b, 63 bits), so runs with neighbouring seeds share no sample.

    Args:
        seed: The run's seed (``--seed``).
        index: The sample's index in the run, from 0.

    Returns:
        A seed for ``torch.Generator.manual_seed``, in ``[0, 2**63)``.

    Example:
        >>> sample_seed(0, 0) == sample_seed(0, 0) != sample_seed(1, 0) != sample_seed(0, 1)
        True
    """
    digest = hashlib.blake2b(f"invkit-sample:{int(seed)}:{int(index)}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def sample_generators(seed: int, start: int, count: int, device: torch.device | str = "cpu") -> list[torch.Generator]:
    """One generator per sample ``start, ..., start + count - 1`` of a run seeded with ``seed``.

    Pass the list as a solver's ``generator``: sample ``i`` is then the same whatever the
    batch it is drawn in.

    Args:
        seed: The run's seed.
        start: Index of the first sample.
        count: Number of generators.
        device: Device of the generators (that of the data).

    Returns:
        ``count`` generators, the ``i``-th seeded with ``sample_seed(seed, start + i)``.
    """
    return [torch.Generator(device=device).manual_seed(sample_seed(seed, start + i)) for i in range(count)]


def row_generators(generator: Generators, batch: int) -> list[torch.Generator] | None:
    """The per-row generators of ``generator``, or None when it is one generator for the batch.

    Raises:
        ValueError: A list whose length is not ``batch``.
    """
    if isinstance(generator, torch.Generator):
        return None
    gens = list(generator)
    if len(gens) != batch:
        raise ValueError(f"generator: {len(gens)} generators for a batch of {batch}; pass one per batch row")
    return gens
