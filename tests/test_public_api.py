"""The public API is pinned: the names each public package exports (``__all__``) are listed here, so
adding, renaming or removing one is a deliberate change made in this file too.

For every pinned module: ``__all__`` is exactly the pinned list (no duplicates), every name in it
exists and imports (``from MODULE import NAME``), ``from MODULE import *`` yields exactly
``__all__``, and no public name of the module is left out of ``__all__``. A public name is one not
starting with ``_``: for a package's ``__init__`` every such attribute that is not a submodule
(what it re-exports); for a plain module every such name it defines itself (imports excluded).
"""

from __future__ import annotations

import __future__
import ast
import importlib
import inspect
import types

import pytest

#: module -> the sorted names of its ``__all__``.
PINNED: dict[str, list[str]] = {
    "invkit": [
        "Arg", "Callback", "Capability", "CheckReport", "CheckResult", "DEFAULT_MAX_SIZE", "DenseSVD",
        "DenseSizeError", "ForwardModel", "GaussianComponent", "GaussianForm", "GaussianNoise", "Generators",
        "IdentityUOperator", "LinearOperator", "MatrixOperator", "NOISE_MODELS", "NoiseModel", "Operator", "Param",
        "ParamError", "PluginConflictError", "PluginError", "PluginWarning", "PoissonNoise", "Prior", "Problem",
        "Registration", "Registry", "RequirementError", "Result", "SVDOperator", "SchemaError", "Shape", "Solver",
        "SpectralSetup", "Step", "TiledPrior", "UnknownPluginError", "__version__", "alpha_bar_from_sigma", "alphas_bar_from_betas",
        "as_shape", "autograd_vjp", "build_noise", "capabilities", "check_adjoint", "check_autograd_adjoint",
        "check_requirements", "check_schedule", "check_shapes", "check_svd", "check_vjp", "conformance_cases",
        "ddim_noise_scale", "ddim_step", "ddpm_sigma_grid", "ddrm_schedule", "eps_from_x0", "float_tuple", "from_vp",
        "get_registry", "hookimpl", "hookspec", "int_tuple", "is_noise_sigma", "jump_schedule", "keep_freed_memory", "linear_betas", "matrix_of",
        "missing_capabilities", "noise_spec", "parse_bool", "parse_params", "quantization_sigma", "randn_rows",
        "reset_registry", "resolve_generator", "respaced_sigmas", "respaced_timesteps", "row_generators",
        "run_checks", "sample_generators", "sample_seed", "sampler_schedule", "schema_of", "sigma_from_alpha_bar", "sigma_rows",
        "signature_params", "spectral_setup", "to_vp", "use_registry", "validated", "vp_sigma_grid", "vp_start_std", "x0_from_eps",
    ],
    # The runner: what the CLI drives and Python callers embed (README: from invkit.runner import ...).
    "invkit.runner": [
        "ANNOUNCE_SECONDS", "CHECKPOINT_SUFFIXES", "DEFAULT_MAX_MEGAPIXELS", "DEFAULT_MAX_MINUTES", "DegradeOptions", "Degraded", "Estimate",
        "JSON_KEYS", "Job", "Prepared", "ProgressCallback", "ProgressEvent", "RestoreError", "RestoreOptions",
        "SELECT_CHOICES", "Samples", "TILE_AUTO_PIXELS", "TILE_CHOICES", "Timer", "build_prior", "check_finite", "check_jobs", "check_options",
        "check_output", "check_prior_name", "check_values", "cost_or_refuse", "default_select", "degrade",
        "format_duration", "is_terminal", "measurement_view", "metrics_table", "oracle_best", "output_bits",
        "parse_crop", "parse_resize", "parse_size", "plan_jobs", "posterior_samples", "prepare", "projection_note",
        "resolve_device", "restore", "restore_prepared", "sample_residuals", "score", "select_restoration",
        "simulate_measurement", "std_map", "terminal_size",
    ],
    "invkit_solvers": ["DDNM", "DDNMPlus", "DDRM", "DPS", "DiffPIR", "ExactSolver", "HIO", "PiGDM"],
    "invkit_priors.analytic": [
        "DCTBasis", "GaussianMixturePrior", "GaussianPrior", "IdentityBasis", "MatrixBasis", "OrthogonalBasis",
        "PowerLawSpectrum", "gaussian", "gaussian_mixture",
    ],
    "invkit_priors.networks": ["ADMConfig", "ADMUNet", "ADM_PRESETS", "DDPMConfig", "DDPMUNet", "DDPM_PRESETS"],
    # The Python side of docs/checkpoints.md: the catalogue, downloads and the loader.
    "invkit_priors.checkpoints.catalogue": [
        "CATALOGUE_ENV", "CATALOGUE_FORMAT", "CatalogueFile", "CatalogueLike", "Entry", "Source", "find_by_filename",
        "get_entry", "load_catalogue",
    ],
    "invkit_priors.checkpoints.download": [
        "CACHE_ENV", "FetchError", "HashMismatchError", "Progress", "cached_path", "fetch", "is_cached",
        "resolve_cache_dir",
    ],
    "invkit_priors.checkpoints.load": ["ARCHS", "detect_arch", "infer_ddpm_config", "load_checkpoint_prior"],
    "invkit_priors.checkpoints.invkit_format": [
        "ARCHITECTURES", "INVKIT_FORMAT", "read_invkit_metadata", "write_invkit_prior",
    ],
    "invkit_priors.adapters.vp": [
        "PREDICTIONS", "PREDICTION_ALIASES", "Provenance", "VPDiffusionPrior", "check_class_label",
        "resolve_prediction",
    ],
}

UPDATE = "if the change is deliberate, update the pinned list in tests/test_public_api.py"


def _public_names(module: types.ModuleType) -> set[str]:
    """The module's public names, as the module docstring defines them."""
    if hasattr(module, "__path__"):  # a package: what its __init__ re-exports
        return {
            name for name, value in vars(module).items()
            if not name.startswith("_") and not isinstance(value, (types.ModuleType, __future__._Feature))
        }
    tree = ast.parse(inspect.getsource(module))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for target in node.targets for t in ast.walk(target) if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {name for name in names if not name.startswith("_")}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_all_is_the_pinned_list(name: str) -> None:
    exported = list(importlib.import_module(name).__all__)
    duplicates = sorted({n for n in exported if exported.count(n) > 1})
    assert not duplicates, f"{name}.__all__ lists {duplicates} more than once"
    added, removed = sorted(set(exported) - set(PINNED[name])), sorted(set(PINNED[name]) - set(exported))
    assert sorted(exported) == PINNED[name], f"{name}.__all__ changed (added {added}, removed {removed}); {UPDATE}"


@pytest.mark.parametrize("name", sorted(PINNED))
def test_every_exported_name_imports(name: str) -> None:
    module = importlib.import_module(name)
    missing = [n for n in module.__all__ if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ names {missing}, which {name} does not define"
    for exported in module.__all__:
        namespace: dict[str, object] = {}
        exec(f"from {name} import {exported}", namespace)  # noqa: S102 - names from __all__, checked above
        assert namespace[exported] is getattr(module, exported)


@pytest.mark.parametrize("name", sorted(PINNED))
def test_star_import_yields_exactly_all(name: str) -> None:
    namespace: dict[str, object] = {}
    exec(f"from {name} import *", namespace)  # noqa: S102
    namespace.pop("__builtins__", None)
    module = importlib.import_module(name)
    assert sorted(namespace) == sorted(module.__all__)


@pytest.mark.parametrize("name", sorted(PINNED))
def test_no_public_name_is_left_out_of_all(name: str) -> None:
    module = importlib.import_module(name)
    left_out = sorted(_public_names(module) - set(module.__all__))
    assert not left_out, (
        f"{name} has public names not in its __all__: {left_out}; export them (adding them to __all__; {UPDATE}) "
        f"or make them private with a leading underscore"
    )
