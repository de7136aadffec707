"""The shared spectral set-up (ȳ, σ_y/s_i, observed mask) against the dense SVD of the operator."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import invkit
from invkit import DenseSVD, GaussianNoise, Problem, spectral_setup


@pytest.mark.parametrize(
    "name,shape,args",
    [
        ("gaussian_blur", (1, 10, 11), ["sigma=1.0"]),  # m = n, tiny singular values cut off
        ("super_resolution", (1, 4, 6), ["factor=2"]),  # k = m < n: coefficients beyond k unobserved
        ("inpainting", (2, 3, 3), ["fraction=0.4", "seed=1"]),  # compact measurement vector
    ],
)
def test_spectral_setup_matches_the_dense_svd(name, shape, args):
    op = invkit.get_registry().build_operator(name, shape, args)
    g = torch.Generator().manual_seed(0)
    y = torch.rand(2, *op.out_shape, generator=g, dtype=torch.float64)
    rtol, sigma_y = 1e-3, 0.03
    setup = spectral_setup(Problem(op, y, GaussianNoise(sigma_y)), svd_rtol=rtol)
    dense = DenseSVD(op)
    kept = dense.s[dense.s > rtol * dense.s.max()]
    # the observed coefficients and their noise std are those of the dense SVD (any order)
    assert int(setup.observed.sum()) == kept.size and setup.observed.shape == (op.in_numel,)
    assert np.allclose(np.sort(setup.nstd[setup.observed].numpy()), np.sort(sigma_y / kept), rtol=1e-10)
    assert bool(torch.isinf(setup.nstd[~setup.observed]).all()) and bool((setup.ybar[:, ~setup.observed] == 0).all())
    # V ȳ is the dense SVD's pseudo-inverse of y with the same cut-off (basis-independent)
    want = dense.pinv(y, rcond=rtol)
    assert torch.allclose(op.V(setup.ybar), want, atol=1e-10)
    assert setup.sigma_y == sigma_y


def test_no_observed_coefficients_when_all_singular_values_vanish():
    class Zero(invkit.LinearOperator):
        @property
        def out_shape(self):
            return self.in_shape

        def forward(self, x):
            return 0 * x

        def adjoint(self, y):
            return 0 * y

    setup = spectral_setup(Problem(Zero((1, 2, 2)), torch.ones(1, 1, 2, 2, dtype=torch.float64)))
    assert not bool(setup.observed.any()) and math.isinf(float(setup.nstd.min()))
