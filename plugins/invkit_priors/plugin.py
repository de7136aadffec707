"""Entry-point module of the built-in priors (group ``invkit``, name ``priors``).

Registers the analytic priors ``gaussian`` and ``gaussian_mixture``
(:mod:`invkit_priors.analytic`), the ``checkpoint`` prior (any ADM/DDPM/diffusers checkpoint
file, :mod:`invkit_priors.checkpoints.load`) and the ``invkit prior list|fetch`` command (:mod:`invkit_priors.checkpoints.commands`). Heavy modules are imported
only when their name is used.
"""

from __future__ import annotations

from typing import Any

from invkit.hookspecs import Register, hookimpl
from invkit.params import Param


def checkpoint(
    path: str,
    arch: str = "auto",
    flags: str | None = None,
    class_label: int | None = None,
    prediction: str | None = None,
    half: bool = False,
    device: str = "cpu",
    key: str | None = None,
) -> Any:
    """A diffusion checkpoint file (ADM, DDPM, invkit .safetensors) or diffusers folder, loaded strictly.

    ``invkit solve --prior PATH`` builds this prior with ``path=PATH``; see
    :func:`invkit_priors.checkpoints.load.load_checkpoint_prior` for the layouts and docs/checkpoints.md
    for the public checkpoints (``invkit prior fetch NAME`` downloads them).
    """
    from .checkpoints.load import load_checkpoint_prior

    return load_checkpoint_prior(
        path, arch=arch, flags=flags, class_label=class_label, prediction=prediction, half=half, device=device, key=key
    )


checkpoint.name = "checkpoint"  # type: ignore[attr-defined]
checkpoint.params = (  # type: ignore[attr-defined]
    Param("path", str, doc="checkpoint file (.pt/.pth/.ckpt/.bin/.safetensors) or diffusers folder"),
    Param("arch", str, "auto", "architecture; auto reads it off the keys, metadata or folder", choices=("auto", "adm", "ddpm", "diffusers")),
    Param("flags", str, None, "architecture flags: preset name, k=v pairs, or the guided-diffusion '--image_size 256 ...' line"),
    Param("class_label", int, None, "class index for a class-conditional model (required there)", min=0),
    Param("prediction", str, None, "network output; default from the file/scheduler, else epsilon", choices=("epsilon", "x0", "v", "sample", "v_prediction")),
    Param("half", bool, False, "run in float16 (GPU)"),
    Param("device", str, "cpu", "torch device: cpu, cuda, cuda:1, ... or auto"),
    Param("key", str, None, "top-level entry holding the state dict in a wrapped checkpoint (default: ema, ema_model, state_dict, model)"),
)


def catalogue_prior(name: str) -> Any:
    """A prior factory for catalogue entry ``name``: loads the file ``invkit prior fetch NAME`` downloaded."""
    from .checkpoints.catalogue import load_catalogue

    entry = load_catalogue()[name]

    def factory(class_label: int | None = None, half: bool = False, device: str = "cpu") -> Any:
        from .checkpoints.download import cached_path
        from .checkpoints.load import load_checkpoint_prior

        path = cached_path(name)
        if not path.exists():
            size = f" ({entry.size_bytes / 1e9:.1f} GB)" if entry.size_bytes else ""
            raise FileNotFoundError(
                f"prior '{name}' is not downloaded yet: run `invkit prior fetch {name}`{size}, or pass the file with --prior PATH"
            )
        return load_checkpoint_prior(path, arch=entry.arch, flags=entry.flags, class_label=class_label, half=half, device=device)

    factory.__doc__ = f"Public checkpoint: {entry.title} (`invkit prior fetch {name}` first; docs/checkpoints.md)."
    factory.name = name  # type: ignore[attr-defined]
    factory.params = (  # type: ignore[attr-defined]
        Param("class_label", int, None, "class index (class-conditional models only)", min=0),
        Param("half", bool, False, "run in float16 (GPU)"),
        Param("device", str, "cpu", "torch device: cpu, cuda, cuda:1, ... or auto"),
    )
    return factory


@hookimpl
def invkit_register_priors(register: Register) -> None:
    """Register the built-in priors, and every public checkpoint of the catalogue under its name."""
    from .analytic import gaussian, gaussian_mixture
    from .default.prior import default
    from .checkpoints.catalogue import load_catalogue

    for factory in (default, gaussian, gaussian_mixture, checkpoint):
        register(factory.name, factory)
    for name in load_catalogue():
        register(name, catalogue_prior(name))


@hookimpl
def invkit_register_commands(cli: Any) -> None:
    """Add ``invkit prior list|fetch``."""
    from .checkpoints.commands import run_prior_command, setup_prior_command

    cli.add_command("prior", help="list and download the public diffusion checkpoints", setup=setup_prior_command, run=run_prior_command)
