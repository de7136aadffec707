"""denoising (identity): its check cases cover single-channel, non-square images."""

from __future__ import annotations

import torch

from invkit.checks import conformance_cases, run_checks
from invkit_operators.denoising import Denoising


def test_check_cases_cover_one_and_three_channels():
    cases = conformance_cases(Denoising)
    channels = {shape[0] for shape, _ in cases}
    assert {1, 3} <= channels
    assert any(shape[0] == 1 and shape[1] != shape[2] for shape, _ in cases)


def test_single_channel_identity():
    op = Denoising((1, 9, 14))
    x = torch.rand(2, 1, 9, 14, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.equal(op.forward(x), x) and torch.equal(op.adjoint(x), x)
    assert torch.equal(op.V(op.Vt(x)), x)
    assert run_checks(op).passed
