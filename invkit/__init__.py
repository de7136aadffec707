"""invkit: restore images from degraded measurements ``y = H x + noise`` with diffusion priors.

Operators, priors and solvers meet through small protocols and are discovered as pluggy
entry-point plugins (group ``invkit``). The public API is re-exported here.

Example:
    >>> import torch, invkit
    >>> op = invkit.get_registry().build_operator("denoising", (3, 8, 8))
    >>> report = invkit.run_checks(op)
    >>> report.passed
    True
"""

from .checks import CheckReport, CheckResult, check_adjoint, check_shapes, check_svd, conformance_cases, run_checks
from .dense import DEFAULT_MAX_SIZE, DenseSizeError, DenseSVD, MatrixOperator, matrix_of
from .hookspecs import hookimpl, hookspec
from .noise import GaussianNoise, quantization_sigma
from .operator import IdentityUOperator, Operator, Shape, SVDOperator, as_shape
from .params import Param, ParamError, float_tuple, int_tuple, parse_params
from .prior import Prior, alphas_bar_from_betas, ddpm_sigma_grid, linear_betas, vp_sigma_grid
from .registry import (
    PluginConflictError,
    PluginError,
    PluginWarning,
    Registration,
    Registry,
    UnknownPluginError,
    get_registry,
    reset_registry,
)
from .solver import (
    Callback,
    Generators,
    Problem,
    Result,
    Solver,
    Step,
    randn_rows,
    resolve_generator,
    sample_generators,
    sample_seed,
)

__version__ = "0.1.0"

__all__ = [
    "CheckReport",
    "CheckResult",
    "check_adjoint",
    "check_shapes",
    "check_svd",
    "conformance_cases",
    "run_checks",
    "DEFAULT_MAX_SIZE",
    "DenseSizeError",
    "DenseSVD",
    "MatrixOperator",
    "matrix_of",
    "hookimpl",
    "hookspec",
    "GaussianNoise",
    "quantization_sigma",
    "Operator",
    "Shape",
    "SVDOperator",
    "IdentityUOperator",
    "as_shape",
    "Param",
    "ParamError",
    "float_tuple",
    "int_tuple",
    "parse_params",
    "Prior",
    "alphas_bar_from_betas",
    "ddpm_sigma_grid",
    "linear_betas",
    "vp_sigma_grid",
    "PluginConflictError",
    "PluginError",
    "PluginWarning",
    "Registration",
    "Registry",
    "UnknownPluginError",
    "get_registry",
    "reset_registry",
    "Callback",
    "Problem",
    "Result",
    "Solver",
    "Step",
    "resolve_generator",
    "randn_rows",
    "sample_seed",
    "sample_generators",
    "Generators",
    "__version__",
]
