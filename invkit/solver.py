"""The Solver protocol, the Problem it solves and the Result it returns.

A :class:`Problem` holds the operator, the measurement ``y`` and the noise model. A solver
states what it needs (DDRM: an SVD, efficient or dense; DPS: a differentiable forward) and
refuses clearly when it is missing. Progress goes through a callback that receives a
:class:`Step` after every iteration (the CLI turns it into a progress bar).
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor

from .dense import DEFAULT_MAX_SIZE, DenseSizeError, DenseSVD
from .noise import GaussianNoise
from .operator import Operator, SVDOperator
from .params import Param
from .prior import Prior

__all__ = [
    "Problem",
    "Result",
    "Solver",
    "Step",
    "Callback",
    "Generators",
    "resolve_generator",
    "randn_rows",
    "sample_seed",
    "sample_generators",
]

#: What a solver's ``generator`` argument takes: one generator for the whole batch, or one per
#: batch row (row ``b`` draws only from ``generator[b]``, so a sample does not depend on which
#: other samples share its batch).
Generators = torch.Generator | Sequence[torch.Generator]


@dataclass
class Problem:
    """An inverse problem ``y = H x + noise``.

    Args:
        operator: The degradation ``H``.
        y: Measurements ``(B, *operator.out_shape)``; one per image to restore.
        noise: The noise model (default: noiseless).

    Raises:
        ValueError: ``y`` has the wrong shape or holds NaN/inf.
    """

    operator: Operator
    y: Tensor
    noise: GaussianNoise = field(default_factory=GaussianNoise)

    def __post_init__(self) -> None:
        self.operator.check_measurement(self.y)
        if not torch.isfinite(self.y).all():
            raise ValueError("measurement contains NaN or inf values; clean or crop the input first")

    @property
    def sigma_y(self) -> float:
        """Measurement noise std in [0, 1] pixel units."""
        return float(self.noise.sigma)

    def repeat(self, count: int) -> "Problem":
        """The same problem with every measurement repeated ``count`` times, consecutively.

        Solvers return one sample per measurement, so this is how to draw ``count`` posterior
        samples of each in one batch: sample ``b * count + j`` belongs to measurement ``b``.
        """
        if count < 1:
            raise ValueError(f"Problem.repeat: count must be >= 1, got {count}")
        return Problem(self.operator, self.y.repeat_interleave(count, dim=0), self.noise)

    def require_svd(self, max_dense: int = DEFAULT_MAX_SIZE) -> SVDOperator:
        """The operator's SVD surface: its own, or a :class:`DenseSVD` for small operators.

        Raises:
            ValueError: The operator has no efficient SVD and is too large for the dense one.
        """
        if isinstance(self.operator, SVDOperator):
            return self.operator
        try:
            return DenseSVD(self.operator, max_size=max_dense)
        except DenseSizeError as exc:
            raise ValueError(f"{self.operator.label} has no efficient SVD and {exc}") from None


@dataclass
class Result:
    """What a solver returns.

    Attributes:
        x: Restored images ``(B, C, H, W)`` in [0, 1] units (not clipped).
        info: Solver-specific extras (schedule used, timings, ...).
    """

    x: Tensor
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class Step:
    """Progress report passed to the callback after each iteration.

    Attributes:
        index: 0-based step index.
        total: Number of steps.
        sigma: Noise level of the state after this step (0 at the end).
        x: Current state ``(B, C, H, W)``.
        x0_hat: The prior's current estimate of the clean images.
    """

    index: int
    total: int
    sigma: float
    x: Tensor
    x0_hat: Tensor


Callback = Callable[[Step], None]


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


class Solver(ABC):
    """A posterior sampler / restoration method.

    Attributes:
        name: Registry name.
        params: Parameter schema (``--solver-arg k=v``).
        row_generators: ``solve`` accepts one generator per batch row (draw with
            :func:`randn_rows`). ``invkit solve`` then passes one per sample, so samples do not
            depend on ``--batch``; otherwise it passes one generator per batch.
    """

    name: ClassVar[str] = ""
    params: ClassVar[tuple[Param, ...]] = ()
    row_generators: ClassVar[bool] = False

    @abstractmethod
    def solve(
        self,
        problem: Problem,
        prior: Prior,
        *,
        steps: int | None = None,
        generator: Generators | None = None,
        callback: Callback | None = None,
    ) -> Result:
        """Restore the images measured in ``problem`` using ``prior``.

        ``generator`` is one ``torch.Generator`` or one per batch row (see :data:`Generators`
        and :func:`randn_rows`); ``None`` means a fresh randomly seeded one.
        """
