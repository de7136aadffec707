"""Checkpoint files -> :class:`~invkit_priors.adapters.vp.VPDiffusionPrior`: one entry point for every layout.

:func:`load_checkpoint_prior` turns a file (or a diffusers folder) into a prior with
``denoise(x, sigma)`` in [0, 1] units. It is what the registered prior ``checkpoint`` builds, and
what ``invkit solve --prior PATH`` uses::

    prior = load_checkpoint_prior("256x256_diffusion_uncond.pt")          # flags from the catalogue
    prior = load_checkpoint_prior("my_adm.pt", flags="ffhq256")           # an ADM preset
    prior = load_checkpoint_prior("my_adm.pt", flags="--image_size 64 --num_channels 64 ...")
    prior = load_checkpoint_prior("256x256_diffusion.pt", class_label=207)  # class-conditional
    prior = load_checkpoint_prior("celeba_hq.ckpt")                       # DDPM, config from the keys
    prior = load_checkpoint_prior("default.safetensors")                  # invkit's own metadata
    prior = load_checkpoint_prior("ddpm-cifar10-32/", arch="diffusers")   # needs `diffusers`

**Architecture.** ``arch="auto"`` reads it off the state-dict keys: ADM (guided-diffusion) keys
start with ``time_embed.``/``input_blocks.``, DDPM (Ho et al., DDIM/DDRM port) keys with
``temb.``/``conv_in.``; a folder is a diffusers model. An invkit ``.safetensors`` file names it in
its metadata.

**Configuration.** ``flags`` is a preset name (``imagenet256_uncond``, ``imagenet256_cond``,
``ffhq256``, ``small`` for ADM; ``celebahq256`` for DDPM), ``k=v`` pairs separated by commas or
spaces (``"image_size=64,num_channels=64,channel_mult=1,2,2,2"``; a preset name may come first,
then overrides), the guided-diffusion README's command line (``"--image_size 256 ..."``), a JSON
object, or a mapping. Without ``flags``:

* an invkit ``.safetensors`` file uses the flags stored in it;
* an ADM file whose name is in the catalogue of public checkpoints (``catalogue.json``,
  e.g. ``256x256_diffusion_uncond.pt``, ``ffhq_10m.pt``) uses the catalogue's flags;
* any other ADM file is refused with a message asking for ``flags`` (ADM's attention head count
  changes the output but not the parameter shapes, so it cannot be read off the file);
* a DDPM file's configuration is read off its parameter shapes (its single-head attention makes
  the shapes say everything).

Every parameter comes from the file: the model is built on the ``meta`` device and the state dict
is assigned only after :func:`~invkit_priors.checkpoints.safe_load.load_strict` found exactly the model's keys
and shapes (else a :class:`~invkit_priors.checkpoints.safe_load.CheckpointMismatchError` listing them). No
random weights can survive.

**Diffusion process.** The linear 1e-4..0.02 betas over 1000 steps by default. The flags may give
``diffusion_steps``/``num_diffusion_timesteps``, ``noise_schedule``/``beta_schedule``
(``linear`` or ``cosine``), ``beta_start``/``beta_end`` and ``predict_xstart`` (x0 prediction);
guided-diffusion's ``use_fp16`` is ignored (precision is ``half``). Learned-variance output
channels (``learn_sigma``, or a DDPM/diffusers model with twice the input channels out) are
dropped by the adapter.

**invkit's own files** are ``.safetensors`` with string metadata ``format = "invkit-prior-v1"``,
``architecture`` (``adm``/``ddpm``), ``flags`` (JSON object), ``prediction``
(``epsilon``/``x0``/``v``), ``schedule`` (JSON: ``{"betas": "linear", "beta_start": 1e-4,
"beta_end": 0.02, "steps": 1000}``, ``"cosine"``, or an explicit list of betas) and optionally
``data_range`` (only ``"[-1, 1]"``): what ``scripts/train_default_prior.py --export`` writes.

**diffusers** (optional extra ``invkit[diffusers]``): a folder with a ``UNet2DModel``
``config.json`` and its weights, and a scheduler config (``scheduler_config.json`` beside it, or
the pipeline layout ``unet/`` + ``scheduler/``). The scheduler's ``alphas_cumprod`` and
``prediction_type`` (``epsilon``/``sample``/``v_prediction``) configure the adapter. The weights
are read by invkit's safe loader, never by pickle with code.

**Class labels.** A class-conditional model needs ``class_label`` (bound at build time); giving a
label to an unconditional model is an error.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from invkit.devices import resolve_device

from ..adapters.vp import Provenance, VPDiffusionPrior, check_class_label, resolve_prediction
from ..networks.adm import ADM_PRESETS, DIFFUSION_FLAGS, ADMConfig, ADMUNet
from ..networks.ddpm import DDPMConfig, DDPMUNet
from .flags import parse_flags
from .invkit_format import read_invkit_metadata
from .safe_load import CheckpointError, build_on_meta, compare_state_dict, fill_model, load_state_dict_file
from .schedule import pop_schedule, schedule_from_metadata

__all__ = ["load_checkpoint_prior", "detect_arch", "infer_ddpm_config", "ARCHS"]

#: Values of ``arch``.
ARCHS: tuple[str, ...] = ("auto", "adm", "ddpm", "diffusers")
# ====================================================================== detection
def detect_arch(keys: Any) -> str | None:
    """``"adm"``, ``"ddpm"``, ``"diffusers"`` (a UNet2DModel state dict) or ``None`` from state-dict keys."""
    keys = list(keys)
    if any(k.startswith(("time_embed.", "input_blocks.")) for k in keys):
        return "adm"
    if any(k.startswith("temb.") for k in keys):
        return "ddpm"
    if any(k.startswith(("time_embedding.", "down_blocks.")) for k in keys):
        return "diffusers"
    if any(k.startswith("conv_in.") for k in keys):
        return "ddpm"
    return None


def infer_ddpm_config(state: Mapping[str, Tensor], resolution: int | None = None) -> DDPMConfig:
    """The DDPM architecture that has exactly these parameter shapes.

    Every shape-relevant setting is read off the keys (channels, multipliers, blocks per level,
    attention levels, convolutional resampling, in/out channels). ``resolution`` only names the
    training size (default: 256 for a 6-level network, else ``2 ** (levels + 1)``); attention is
    placed by level either way.

    Raises:
        CheckpointError: The keys are not those of a DDPM U-Net.
    """
    try:
        conv_in = state["conv_in.weight"]
        ch, in_ch = int(conv_in.shape[0]), int(conv_in.shape[1])
        levels = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("down."))
        mults = [int(state[f"down.{i}.block.0.conv1.weight"].shape[0]) // ch for i in range(levels)]
        blocks = 1 + max(int(k.split(".")[3]) for k in state if k.startswith("down.0.block."))
        attn_levels = [i for i in range(levels) if f"down.{i}.attn.0.q.weight" in state]
        out_ch = int(state["conv_out.weight"].shape[0])
    except (KeyError, ValueError, IndexError) as err:
        raise CheckpointError(f"not a DDPM U-Net state dict (cannot read {err} from its keys)") from None
    if resolution is None:
        resolution = 256 if levels == 6 else 2 ** (levels + 1)
    return DDPMConfig(
        ch=ch, ch_mult=tuple(mults), num_res_blocks=blocks,
        attn_resolutions=tuple(resolution // 2**i for i in attn_levels), resolution=resolution,
        resamp_with_conv=(levels == 1 or "down.0.downsample.conv.weight" in state), out_ch=out_ch, in_channels=in_ch,
    )


# ====================================================================== building
def _preset_hint(state: Mapping[str, Tensor]) -> str:
    """Name the ADM presets whose parameter shapes equal the file's (for the flags error)."""
    hits = []
    for name, flags in ADM_PRESETS.items():
        try:
            model = build_on_meta(ADMUNet, ADMConfig.from_flags(flags))
        except Exception:  # noqa: BLE001
            continue
        if compare_state_dict(model, state) == ([], [], []):
            hits.append(name)
    if not hits:
        return ""
    return f" Its parameter shapes match the preset(s) {', '.join(hits)}: if it is that model, pass flags={hits[0]}."


def _catalogue_flags(path: Path, arch: str) -> tuple[Any, str] | None:
    try:
        from .catalogue import find_by_filename
    except ImportError:  # pragma: no cover
        return None
    entry = find_by_filename(path.name)
    if entry is None or entry.arch != arch or entry.flags is None:
        return None
    return entry.flags, entry.name


def load_checkpoint_prior(
    path: str | os.PathLike[str],
    arch: str = "auto",
    flags: str | Mapping[str, Any] | None = None,
    class_label: int | None = None,
    prediction: str | None = None,
    half: bool = False,
    device: str | torch.device = "cpu",
    *,
    key: str | None = None,
    clip: bool = False,
) -> VPDiffusionPrior:
    """Load a diffusion checkpoint as a prior (see the module notes for every accepted layout).

    Args:
        path: A ``.pt``/``.pth``/``.ckpt``/``.bin``/``.safetensors`` file, or a diffusers folder.
        arch: ``"auto"`` (from the keys, the metadata or the folder), ``"adm"``, ``"ddpm"`` or
            ``"diffusers"``.
        flags: Architecture flags (preset name, ``k=v`` pairs, README command line, JSON or a
            mapping); default from the file's metadata, the catalogue, or (DDPM) the shapes.
        class_label: Class index bound for a class-conditional model (required there, refused
            elsewhere).
        prediction: ``"epsilon"``, ``"x0"`` or ``"v"`` (``"sample"``/``"v_prediction"`` accepted);
            default: what the file, flags or scheduler says, else epsilon.
        half: Run in float16 (for GPUs; ADM keeps its norms and head in float32).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ... or ``"auto"`` (CUDA when available).
        key: Take the state dict from this top-level entry of a wrapped checkpoint.
        clip: Clip ``denoise``'s estimate to [0, 1] (:attr:`VPDiffusionPrior.clip
            <invkit_priors.adapters.vp.VPDiffusionPrior.clip>`; ``--prior-arg clip=true``).

    Returns:
        The prior; its ``provenance`` records what was loaded and from where.

    Raises:
        FileNotFoundError: No such file or folder.
        CheckpointMismatchError: Keys or shapes differ from the architecture (listed).
        CheckpointError: Unreadable, pickled-code or truncated file; unknown layout.
        ValueError: Bad flags, missing/unexpected class label, bad prediction.
    """
    source = Path(path).expanduser()
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; expected one of {', '.join(ARCHS)}")
    if not source.exists():
        raise FileNotFoundError(f"checkpoint not found: {source}")
    dev = resolve_device(device)
    if source.is_dir() or arch == "diffusers":
        if arch not in ("auto", "diffusers"):
            raise ValueError(f"{source} is a folder; folders are diffusers models (arch=diffusers), not arch={arch}")
        if flags is not None:
            raise ValueError("flags do not apply to a diffusers folder (its config.json describes the model)")
        from .diffusers_folder import load_diffusers_prior

        prior = load_diffusers_prior(source, class_label, prediction, half, dev)
        prior.clip = clip
        return prior

    meta = read_invkit_metadata(source)
    state = load_state_dict_file(source, key=key, mmap=True)
    found = detect_arch(state)
    if meta is not None:
        meta_arch = meta.get("architecture", "")
        if meta_arch not in ("adm", "ddpm"):
            raise CheckpointError(f"{source}: metadata names architecture {meta_arch!r}; expected adm or ddpm")
        if arch not in ("auto", meta_arch):
            raise ValueError(f"{source} is an invkit {meta_arch} prior; drop arch={arch}")
        arch = meta_arch
        if meta.get("data_range", "[-1, 1]").replace(" ", "") != "[-1,1]":
            raise CheckpointError(f"{source}: data_range {meta['data_range']!r} is not supported (only [-1, 1])")
    elif arch == "auto":
        if found is None:
            shown = ", ".join(list(state)[:5])
            raise CheckpointError(
                f"{source}: cannot tell the architecture from its keys ({shown}, ...); pass arch=adm|ddpm and flags=..."
            )
        if found == "diffusers":
            raise CheckpointError(
                f"{source}: this is a diffusers UNet2DModel state dict; pass the model folder (with config.json and "
                "scheduler_config.json) and arch=diffusers"
            )
        arch = found

    origin = "flags"
    if flags is None and meta is not None:
        flags, origin = meta.get("flags") or "{}", "metadata"
    if flags is None:
        hit = _catalogue_flags(source, arch)
        if hit is not None:
            flags, origin = hit[0], f"catalogue entry {hit[1]}"
    cfg_flags = parse_flags(flags, arch)
    ab, flag_prediction = pop_schedule(cfg_flags)
    if meta is not None and "schedule" in meta:
        ab = schedule_from_metadata(meta.get("schedule"), source)

    if arch == "adm":
        if flags is None:
            raise ValueError(
                f"{source}: ADM checkpoints need their architecture flags (the attention head count is not in the file); "
                "pass --prior-arg flags=PRESET or flags='--image_size 256 --num_channels 256 ...' (the guided-diffusion "
                f"MODEL_FLAGS); presets: {', '.join(sorted(ADM_PRESETS))}.{_preset_hint(state)}"
            )
        cfg_flags = {k: v for k, v in cfg_flags.items() if k not in DIFFUSION_FLAGS}
        cfg_flags["use_fp16"] = False  # precision is `half`; the file's tensors are cast to the model's dtypes
        cfg = ADMConfig.from_flags(cfg_flags)
        label = check_class_label(class_label, cfg.num_classes if cfg.class_cond else None, source)
        model = fill_model(build_on_meta(ADMUNet, cfg), state, source, f"ADM flags from {origin}")
        learned = cfg.learn_sigma
        config: dict[str, Any] = cfg.to_flags()
    else:
        if cfg_flags:
            dcfg = DDPMConfig.from_dict(cfg_flags)
        else:
            dcfg = infer_ddpm_config(state)
            origin = "the parameter shapes"
        label = check_class_label(class_label, None, source)
        model = fill_model(build_on_meta(DDPMUNet, dcfg), state, source, f"DDPM configuration from {origin}")
        learned = dcfg.out_ch == 2 * dcfg.in_channels
        config = dcfg.to_dict()

    pred = resolve_prediction(prediction, meta.get("prediction") if meta else None, flag_prediction)
    model.to(dev)
    provenance = Provenance(str(source), arch, config, origin, dict(meta) if meta else {})
    prior = VPDiffusionPrior(model, ab, prediction=pred, learned_sigma=learned, class_label=label, half=half, provenance=provenance)
    prior.clip = clip
    return prior
