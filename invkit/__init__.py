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

from .allocator import keep_freed_memory
from .checks import (
    CheckReport,
    CheckResult,
    check_adjoint,
    check_autograd_adjoint,
    check_shapes,
    check_svd,
    check_vjp,
    conformance_cases,
    run_checks,
)
from .dense import DEFAULT_MAX_SIZE, DenseSizeError, DenseSVD, MatrixOperator, matrix_of
from .hookspecs import hookimpl, hookspec
from .forward import ForwardModel, IdentityUOperator, LinearOperator, Operator, Shape, SVDOperator, as_shape, autograd_vjp
from .noise import NOISE_MODELS, GaussianNoise, NoiseModel, PoissonNoise, build_noise, is_noise_sigma, noise_spec, quantization_sigma
from .params import Arg, Param, ParamError, SchemaError, float_tuple, int_tuple, parse_bool, parse_params, schema_of, signature_params, validated
from .prior import GaussianComponent, GaussianForm, Prior, alphas_bar_from_betas, ddpm_sigma_grid, linear_betas, sigma_rows, vp_sigma_grid
from .problem import Problem
from .random import Generators, randn_rows, resolve_generator, row_generators, sample_generators, sample_seed
from .registry import (
    PluginConflictError,
    PluginError,
    PluginWarning,
    Registration,
    Registry,
    UnknownPluginError,
    get_registry,
    reset_registry,
    use_registry,
)
from .requirements import Capability, RequirementError, capabilities, check_requirements, missing_capabilities
from .schedules import check_schedule, ddrm_schedule, jump_schedule, respaced_sigmas, respaced_timesteps, sampler_schedule
from .solver import Callback, Result, Solver, Step
from .spectral import SpectralSetup, spectral_setup
from .tiled import TiledPrior
from .vp import alpha_bar_from_sigma, ddim_noise_scale, ddim_step, eps_from_x0, from_vp, sigma_from_alpha_bar, to_vp, vp_start_std, x0_from_eps

__version__ = "0.1.0"

__all__ = [
    "keep_freed_memory",
    "CheckReport",
    "CheckResult",
    "check_adjoint",
    "check_autograd_adjoint",
    "check_vjp",
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
    "PoissonNoise",
    "NoiseModel",
    "NOISE_MODELS",
    "build_noise",
    "noise_spec",
    "quantization_sigma",
    "is_noise_sigma",
    "ForwardModel",
    "LinearOperator",
    "autograd_vjp",
    "Operator",
    "Shape",
    "SVDOperator",
    "IdentityUOperator",
    "as_shape",
    "Arg",
    "Param",
    "ParamError",
    "SchemaError",
    "float_tuple",
    "int_tuple",
    "parse_bool",
    "parse_params",
    "schema_of",
    "signature_params",
    "validated",
    "Prior",
    "GaussianComponent",
    "GaussianForm",
    "alphas_bar_from_betas",
    "ddpm_sigma_grid",
    "linear_betas",
    "sigma_rows",
    "vp_sigma_grid",
    "PluginConflictError",
    "PluginError",
    "PluginWarning",
    "Registration",
    "Registry",
    "UnknownPluginError",
    "get_registry",
    "reset_registry",
    "use_registry",
    "Callback",
    "Problem",
    "Result",
    "Solver",
    "Step",
    "resolve_generator",
    "randn_rows",
    "sample_seed",
    "sample_generators",
    "row_generators",
    "Generators",
    "Capability",
    "RequirementError",
    "capabilities",
    "check_requirements",
    "missing_capabilities",
    "check_schedule",
    "ddrm_schedule",
    "respaced_sigmas",
    "jump_schedule",
    "sampler_schedule",
    "vp_start_std",
    "respaced_timesteps",
    "alpha_bar_from_sigma",
    "sigma_from_alpha_bar",
    "to_vp",
    "from_vp",
    "eps_from_x0",
    "x0_from_eps",
    "ddim_noise_scale",
    "ddim_step",
    "SpectralSetup",
    "spectral_setup",
    "TiledPrior",
    "__version__",
]
