"""Entry-point module of the built-in priors (group ``invkit``, name ``priors``).

Registers the analytic priors ``gaussian`` and ``gaussian_mixture``
(:mod:`invkit_priors.analytic`), the ``checkpoint`` prior (any ADM/DDPM/diffusers checkpoint
file, :mod:`invkit_priors.checkpoints.load`) and the ``invkit prior list|fetch`` command (:mod:`invkit_priors.checkpoints.commands`). Heavy modules are imported
only when their name is used.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, TypeAlias

from invkit.hookspecs import Register, hookimpl
from invkit.params import Arg, validated

def text_or_mapping(value: Any) -> str | Mapping[str, Any]:
    """A ``flags`` value: a mapping as it is (Python callers), anything else as text (``--prior-arg``)."""
    return value if isinstance(value, Mapping) else str(value)


#: The parameters every checkpoint prior shares (``half``, ``device``, ``clip``, ``grad_checkpoint``), declared once.
_Half: TypeAlias = Annotated[bool, Arg("run in float16 (GPU)")]
_Device: TypeAlias = Annotated[str, Arg("torch device: cpu, cuda, cuda:1, ... or auto")]
_Clip: TypeAlias = Annotated[
    bool, Arg("clip denoise's estimate to [0, 1] (guided-diffusion's clip_denoised): an exact MMSE estimate lies there; "
              "+0.3 dB on DDRM colorization of the default prior (docs/default_prior.md)")
]
_GradCheckpoint: TypeAlias = Annotated[
    bool, Arg("recompute activations when a solver differentiates through the prior (dps): less memory, slower (ADM networks)")
]


@validated
def checkpoint(
    path: Annotated[str, Arg("checkpoint file (.pt/.pth/.ckpt/.bin/.safetensors) or diffusers folder")],
    arch: Annotated[str, Arg("architecture; auto reads it off the keys, metadata or folder", choices=("auto", "adm", "ddpm", "diffusers"))] = "auto",
    flags: Annotated[
        str | Mapping[str, Any] | None,
        Arg("architecture flags: preset name, k=v pairs, or the guided-diffusion '--image_size 256 ...' line", type=text_or_mapping),
    ] = None,
    class_label: Annotated[int | None, Arg("class index for a class-conditional model (required there)", min=0)] = None,
    prediction: Annotated[
        str | None, Arg("network output; default from the file/scheduler, else epsilon", choices=("epsilon", "x0", "v", "sample", "v_prediction"))
    ] = None,
    half: _Half = False,
    device: _Device = "cpu",
    key: Annotated[
        str | None, Arg("top-level entry holding the state dict in a wrapped checkpoint (default: ema, ema_model, state_dict, model)")
    ] = None,
    grad_checkpoint: _GradCheckpoint = False,
    clip: _Clip = False,
) -> Any:
    """A diffusion checkpoint file (ADM, DDPM, invkit .safetensors) or diffusers folder, loaded strictly.

    ``invkit solve --prior PATH`` builds this prior with ``path=PATH``; see
    :func:`invkit_priors.checkpoints.load.load_checkpoint_prior` for the layouts and docs/checkpoints.md
    for the public checkpoints (``invkit prior fetch NAME`` downloads them). The parameters (the
    ``--prior-arg`` schema) are declared in the signature and direct calls are checked by it.
    """
    from .checkpoints.load import load_checkpoint_prior

    prior = load_checkpoint_prior(
        path, arch=arch, flags=flags, class_label=class_label, prediction=prediction, half=half, device=device, key=key, clip=clip
    )
    prior.set_gradient_checkpointing(grad_checkpoint)
    return prior


def catalogue_prior(name: str) -> Any:
    """A prior factory for catalogue entry ``name``: loads the file ``invkit prior fetch NAME`` downloaded.

    Its parameters (``class_label``, ``half``, ``device``, ``grad_checkpoint``, ``clip``) are declared in its signature and
    direct calls are checked by them (errors name ``prior 'NAME'``).
    """
    from .checkpoints.catalogue import load_catalogue

    entry = load_catalogue()[name]

    def factory(
        class_label: Annotated[int | None, Arg("class index (class-conditional models only)", min=0)] = None,
        half: _Half = False,
        device: _Device = "cpu",
        grad_checkpoint: _GradCheckpoint = False,
        clip: _Clip = False,
    ) -> Any:
        from .checkpoints.download import cached_path
        from .checkpoints.load import load_checkpoint_prior

        path = cached_path(name)
        if not path.exists():
            size = f" ({entry.size_bytes / 1e9:.1f} GB)" if entry.size_bytes else ""
            raise FileNotFoundError(
                f"prior '{name}' is not downloaded yet: run `invkit prior fetch {name}`{size}, or pass the file with --prior PATH"
            )
        prior = load_checkpoint_prior(path, arch=entry.arch, flags=entry.flags, class_label=class_label, half=half, device=device, clip=clip)
        prior.set_gradient_checkpointing(grad_checkpoint)
        return prior

    factory.__doc__ = f"Public checkpoint: {entry.title} (`invkit prior fetch {name}` first; docs/checkpoints.md)."
    return validated(factory, owner=f"prior '{name}'")


@hookimpl
def invkit_register_priors(register: Register) -> None:
    """Register the built-in priors, and every public checkpoint of the catalogue under its name."""
    from .analytic import gaussian, gaussian_mixture
    from .default.prior import default
    from .checkpoints.catalogue import load_catalogue

    register("default", default)
    register("gaussian", gaussian)
    register("gaussian_mixture", gaussian_mixture)
    register("checkpoint", checkpoint)
    for name in load_catalogue():
        register(name, catalogue_prior(name))


@hookimpl
def invkit_register_commands(cli: Any) -> None:
    """Add ``invkit prior list|fetch``."""
    from .checkpoints.commands import run_prior_command, setup_prior_command

    cli.add_command("prior", help="list and download the public diffusion checkpoints", setup=setup_prior_command, run=run_prior_command)
