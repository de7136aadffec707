"""Checkpoint files -> :class:`~invkit_priors.vp.VPDiffusionPrior`: one entry point for every layout.

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
is assigned only after :func:`~invkit_priors.checkpoint.load_strict` found exactly the model's keys
and shapes (else a :class:`~invkit_priors.checkpoint.CheckpointMismatchError` listing them). No
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

import json
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from invkit.devices import resolve_device
from invkit.params import parse_bool
from invkit.prior import alphas_bar_from_betas

from .adm_unet import ADM_PRESETS, DIFFUSION_FLAGS, ADMConfig, ADMUNet, _parse_command_line
from .checkpoint import CheckpointError, CheckpointMismatchError, compare_state_dict, load_state_dict_file, load_strict
from .ddpm_unet import DDPM_PRESETS, DDPMConfig, DDPMUNet
from .vp import VPDiffusionPrior

__all__ = [
    "load_checkpoint_prior",
    "detect_arch",
    "parse_flags",
    "infer_ddpm_config",
    "read_invkit_metadata",
    "ARCHS",
    "INVKIT_FORMAT",
    "PREDICTION_ALIASES",
]

#: Values of ``arch``.
ARCHS: tuple[str, ...] = ("auto", "adm", "ddpm", "diffusers")
#: ``format`` metadata of invkit's own prior files.
INVKIT_FORMAT = "invkit-prior-v1"
#: Names of the parameterisations as other code writes them -> :data:`invkit_priors.vp.PREDICTIONS`.
PREDICTION_ALIASES: dict[str, str] = {
    "epsilon": "epsilon", "eps": "epsilon", "x0": "x0", "sample": "x0", "x_start": "x0",
    "v": "v", "v_prediction": "v",
}
#: Schedule keys accepted in ``flags`` for either architecture (DDPM/DDIM YAML and guided-diffusion names).
_SCHEDULE_KEYS = frozenset(
    {"diffusion_steps", "num_diffusion_timesteps", "noise_schedule", "beta_schedule", "beta_start", "beta_end", "predict_xstart"}
)
_DIFFUSERS_WEIGHTS = (
    "diffusion_pytorch_model.safetensors",
    "diffusion_pytorch_model.bin",
    "diffusion_pytorch_model.fp16.safetensors",
    "diffusion_pytorch_model.fp16.bin",
)


# ====================================================================== flags
def _split_pairs(text: str, presets: Mapping[str, Any], what: str) -> tuple[str | None, dict[str, str]]:
    tokens = [t for t in re.split(r"[,;\s]+", text.strip()) if t]
    preset: str | None = None
    out: dict[str, str] = {}
    last: str | None = None
    for i, token in enumerate(tokens):
        if "=" in token:
            key, value = token.split("=", 1)
            key = key.strip().lstrip("-").replace("-", "_")
            if not key:
                raise ValueError(f"{what} flags: empty name in {token!r}")
            out[key] = value
            last = key
        elif i == 0:
            if token not in presets:
                raise ValueError(f"unknown {what} preset {token!r}; known: {', '.join(sorted(presets))} (or give k=v flags)")
            preset = token
        elif last is not None:  # a list value such as channel_mult=1,2,2,2
            out[last] = f"{out[last]},{token}"
        else:
            raise ValueError(f"cannot read {what} flags at {token!r}; expected a preset name first, then k=v pairs")
    return preset, out


def parse_flags(flags: str | Mapping[str, Any] | None, arch: str) -> dict[str, Any]:
    """Read architecture flags in any accepted form into one dict (presets expanded).

    Args:
        flags: A preset name, ``k=v`` pairs (after an optional preset name), a ``--name value``
            command line, a JSON object, a mapping, or ``None`` (empty).
        arch: ``"adm"`` or ``"ddpm"`` (selects the presets).

    Returns:
        ``{name: value}`` with string or typed values, diffusion-process keys included.

    Raises:
        ValueError: Unknown preset or unreadable text.
    """
    presets: Mapping[str, Mapping[str, Any]] = ADM_PRESETS if arch == "adm" else DDPM_PRESETS
    if flags is None:
        return {}
    if isinstance(flags, Mapping):
        return dict(flags)
    text = str(flags).strip()
    if not text:
        return {}
    if text.startswith("{"):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{arch} flags: invalid JSON ({err})") from None
        if not isinstance(value, dict):
            raise ValueError(f"{arch} flags: the JSON must be an object, got {type(value).__name__}")
        return value
    if text.startswith("--"):
        return _parse_command_line(text)
    preset, pairs = _split_pairs(text, presets, arch.upper())
    return {**(dict(presets[preset]) if preset else {}), **pairs}


# ====================================================================== schedule
def _cosine_betas(steps: int) -> Tensor:
    """Nichol & Dhariwal's cosine schedule (``alpha_bar(t) = cos((t + 0.008) / 1.008 * pi/2)^2``)."""

    def ab(t: float) -> float:
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    return torch.tensor([min(1 - ab((i + 1) / steps) / ab(i / steps), 0.999) for i in range(steps)], dtype=torch.float64)


def _alphas_bar(kind: Any, steps: int, beta_start: float | None, beta_end: float | None) -> Tensor:
    if isinstance(kind, (list, tuple)):
        return alphas_bar_from_betas(torch.tensor([float(b) for b in kind], dtype=torch.float64))
    kind = str(kind).strip().lower()
    if steps < 2:
        raise ValueError(f"diffusion steps must be at least 2, got {steps}")
    if kind == "linear":
        scale = 1000.0 / steps  # guided-diffusion's scaling, so other step counts keep the same curve
        start = scale * 1e-4 if beta_start is None else float(beta_start)
        end = scale * 0.02 if beta_end is None else float(beta_end)
        return alphas_bar_from_betas(torch.linspace(start, end, steps, dtype=torch.float64))
    if kind in ("cosine", "squaredcos_cap_v2"):
        return alphas_bar_from_betas(_cosine_betas(steps))
    raise ValueError(f"unknown noise schedule {kind!r}; supported: linear, cosine, or an explicit list of betas")


def _pop_schedule(flags: dict[str, Any]) -> tuple[Tensor, str | None]:
    """Remove the diffusion-process keys from ``flags``; return alphas-bar and a prediction (or None)."""
    sched = {k: flags.pop(k) for k in list(flags) if k in _SCHEDULE_KEYS}
    steps = int(float(sched.get("diffusion_steps", sched.get("num_diffusion_timesteps", 1000))))
    kind = sched.get("noise_schedule", sched.get("beta_schedule", "linear"))
    ab = _alphas_bar(kind, steps, sched.get("beta_start"), sched.get("beta_end"))
    if parse_bool(flags.get("rescale_timesteps", False), "flag 'rescale_timesteps'") and steps != 1000:
        raise ValueError("rescale_timesteps=True with diffusion_steps != 1000 is not supported")
    prediction = "x0" if parse_bool(sched.get("predict_xstart", False), "flag 'predict_xstart'") else None
    return ab, prediction


def _schedule_from_metadata(text: str | None, source: Path) -> Tensor:
    if text is None:
        return _alphas_bar("linear", 1000, None, None)
    try:
        spec = json.loads(text)
    except json.JSONDecodeError:
        spec = {"betas": text}
    if isinstance(spec, str):
        spec = {"betas": spec}
    if not isinstance(spec, dict) or "betas" not in spec:
        raise CheckpointError(f"{source}: metadata 'schedule' must be a JSON object with 'betas', got {text!r}")
    betas = spec["betas"]
    steps = int(spec.get("steps", len(betas) if isinstance(betas, list) else 1000))
    return _alphas_bar(betas, steps, spec.get("beta_start"), spec.get("beta_end"))


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


def read_invkit_metadata(path: str | os.PathLike[str]) -> dict[str, str] | None:
    """The metadata of an invkit ``.safetensors`` prior file, or ``None`` for any other file.

    Raises:
        CheckpointError: The file says it is an invkit prior of a format this version cannot read.
    """
    path = Path(path)
    if path.suffix.lower() != ".safetensors" or not path.is_file():
        return None
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
    except Exception:  # noqa: BLE001 - unreadable files get the loader's one-line error later
        return None
    fmt = meta.get("format", "")
    if fmt == INVKIT_FORMAT:
        return dict(meta)
    if fmt.startswith("invkit-prior-"):
        raise CheckpointError(f"{path}: prior format {fmt!r} is newer than this invkit reads ({INVKIT_FORMAT}); upgrade invkit")
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
def _fill(model: nn.Module, state: Mapping[str, Tensor], source: Path, origin: str | None = None) -> nn.Module:
    """Assign ``state`` to a meta-device ``model`` after the strict check, in the model's dtypes."""
    own = model.state_dict()
    cast = {k: (v.to(own[k].dtype) if k in own and v.is_floating_point() else v) for k, v in state.items()}
    try:
        load_strict(model, cast, source=source, assign=True)
    except CheckpointMismatchError as err:
        if origin is None:
            raise
        raise CheckpointMismatchError(f"{err} [{origin}]", err.missing, err.unexpected, err.mismatched) from None
    return model.requires_grad_(False).eval()


def _meta(factory: Any, *args: Any) -> nn.Module:
    with torch.device("meta"):
        return factory(*args)


def _preset_hint(state: Mapping[str, Tensor]) -> str:
    """Name the ADM presets whose parameter shapes equal the file's (for the flags error)."""
    hits = []
    for name, flags in ADM_PRESETS.items():
        try:
            model = _meta(ADMUNet, ADMConfig.from_flags(flags))
        except Exception:  # noqa: BLE001
            continue
        if compare_state_dict(model, state) == ([], [], []):
            hits.append(name)
    if not hits:
        return ""
    return f" Its parameter shapes match the preset(s) {', '.join(hits)}: if it is that model, pass flags={hits[0]}."


def _check_label(class_label: Any, num_classes: int | None, source: Path) -> int | None:
    if num_classes is None:
        if class_label is not None:
            raise ValueError(f"{source}: the model is unconditional; drop class_label={class_label}")
        return None
    if class_label is None:
        raise ValueError(
            f"{source}: the model is class-conditional ({num_classes} classes); pass class_label=N with 0 <= N < {num_classes} "
            "(--prior-arg class_label=N)"
        )
    label = int(class_label)
    if not 0 <= label < num_classes:
        raise ValueError(f"{source}: class_label={label} is out of range; expected 0 <= N < {num_classes}")
    return label


def _prediction(explicit: str | None, *found: str | None) -> str:
    for value in (explicit, *found):
        if value is not None:
            key = str(value).strip().lower()
            if key not in PREDICTION_ALIASES:
                raise ValueError(f"unknown prediction {value!r}; expected one of epsilon, x0, v (or sample, v_prediction)")
            return PREDICTION_ALIASES[key]
    return "epsilon"


def _catalogue_flags(path: Path, arch: str) -> tuple[Any, str] | None:
    try:
        from .fetch import find_by_filename
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

    Returns:
        The prior; ``prior.source``, ``prior.arch`` and ``prior.config`` record what was loaded.

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
        return _load_diffusers(source, class_label, prediction, half, dev)

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
    ab, flag_prediction = _pop_schedule(cfg_flags)
    if meta is not None and "schedule" in meta:
        ab = _schedule_from_metadata(meta.get("schedule"), source)

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
        label = _check_label(class_label, cfg.num_classes if cfg.class_cond else None, source)
        model = _fill(_meta(ADMUNet, cfg), state, source, f"ADM flags from {origin}")
        learned = cfg.learn_sigma
        config: dict[str, Any] = cfg.to_flags()
    else:
        if cfg_flags:
            dcfg = DDPMConfig.from_dict(cfg_flags)
        else:
            dcfg = infer_ddpm_config(state)
            origin = "the parameter shapes"
        label = _check_label(class_label, None, source)
        model = _fill(_meta(DDPMUNet, dcfg), state, source, f"DDPM configuration from {origin}")
        learned = dcfg.out_ch == 2 * dcfg.in_channels
        config = dcfg.to_dict()

    pred = _prediction(prediction, meta.get("prediction") if meta else None, flag_prediction)
    model.to(dev)
    prior = VPDiffusionPrior(model, ab, prediction=pred, learned_sigma=learned, class_label=label, half=half)
    prior.source = str(source)  # type: ignore[attr-defined]
    prior.arch = arch  # type: ignore[attr-defined]
    prior.config = config  # type: ignore[attr-defined]
    prior.config_origin = origin  # type: ignore[attr-defined]
    prior.metadata = dict(meta) if meta else {}  # type: ignore[attr-defined]
    return prior


# ====================================================================== diffusers
class DiffusersUNet(nn.Module):
    """``model(x, t, y=None)`` around a diffusers ``UNet2DModel`` (returns the ``.sample`` tensor)."""

    def __init__(self, unet: nn.Module) -> None:
        super().__init__()
        self.unet = unet
        cfg = unet.config
        self.in_channels = int(cfg.in_channels)
        self.out_channels = int(cfg.out_channels)
        size = cfg.sample_size
        self.image_size = tuple(size) if isinstance(size, (list, tuple)) else size

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:  # noqa: D102
        return self.unet(x, t, class_labels=y, return_dict=False)[0]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: cannot read the JSON config ({err})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return data


def _diffusers_layout(source: Path) -> tuple[Path, Path]:
    """(folder with the UNet config.json, scheduler_config.json) of a model or pipeline folder."""
    folder = source if source.is_dir() else source.parent
    if (folder / "unet" / "config.json").is_file():
        unet_dir = folder / "unet"
    elif (folder / "config.json").is_file():
        unet_dir = folder
    else:
        raise CheckpointError(f"{folder}: no config.json (nor unet/config.json); not a diffusers model folder")
    for cand in (
        unet_dir / "scheduler_config.json",
        folder / "scheduler_config.json",
        folder / "scheduler" / "scheduler_config.json",
        unet_dir.parent / "scheduler" / "scheduler_config.json",
    ):
        if cand.is_file():
            return unet_dir, cand
    raise CheckpointError(
        f"{folder}: no scheduler_config.json (beside config.json or in scheduler/); it holds the noise schedule "
        "and prediction type, which the prior needs"
    )


def _rename_deprecated_attention(state: dict[str, Tensor], own: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Old diffusers files name attention projections query/key/value/proj_attn (now to_q/to_k/to_v/to_out.0)."""
    names = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}
    out: dict[str, Tensor] = {}
    for k, v in state.items():
        head, _, leaf = k.rpartition(".")
        prefix, _, module = head.rpartition(".")
        new = f"{prefix}.{names[module]}.{leaf}" if module in names else k
        out[new if (k not in own and new in own) else k] = v
    return out


def _load_diffusers(source: Path, class_label: Any, prediction: str | None, half: bool, device: torch.device) -> VPDiffusionPrior:
    try:
        import diffusers
    except ImportError:
        raise CheckpointError(
            "arch=diffusers needs the optional package diffusers: pip install 'invkit[diffusers]'"
        ) from None
    unet_dir, sched_path = _diffusers_layout(source)
    cfg = _read_json(unet_dir / "config.json")
    cls_name = cfg.get("_class_name", "UNet2DModel")
    if cls_name != "UNet2DModel":
        raise CheckpointError(
            f"{unet_dir}: a {cls_name}; only pixel-space UNet2DModel folders are supported (e.g. google/ddpm-*)"
        )
    weights = next((unet_dir / n for n in _DIFFUSERS_WEIGHTS if (unet_dir / n).is_file()), None)
    if weights is None:
        if any(unet_dir.glob("*.index.json")):
            raise CheckpointError(f"{unet_dir}: sharded weights are not supported")
        raise CheckpointError(f"{unet_dir}: no weights file ({', '.join(_DIFFUSERS_WEIGHTS[:2])})")
    with torch.device("meta"):
        unet = diffusers.UNet2DModel.from_config(cfg)
    state = _rename_deprecated_attention(load_state_dict_file(weights), unet.state_dict())
    _fill(unet, state, weights)

    scfg = _read_json(sched_path)
    # Only scheduler classes may be named by the file (never an arbitrary diffusers attribute).
    named = getattr(diffusers, str(scfg.get("_class_name", "DDPMScheduler")), None)
    base = getattr(diffusers, "SchedulerMixin", None)
    sched_cls = named if isinstance(named, type) and base is not None and issubclass(named, base) else diffusers.DDPMScheduler
    try:
        scheduler = sched_cls.from_config(scfg)
    except Exception as err:  # noqa: BLE001
        raise CheckpointError(f"{sched_path}: cannot build {sched_cls.__name__} ({type(err).__name__}: {err})") from None
    ab = getattr(scheduler, "alphas_cumprod", None)
    if ab is None:
        raise CheckpointError(f"{sched_path}: {sched_cls.__name__} has no alphas_cumprod; only VP (DDPM-type) schedules are supported")
    ab = torch.as_tensor(ab, dtype=torch.float64)
    if not bool(torch.all(ab > 0)):
        raise CheckpointError(f"{sched_path}: zero terminal SNR schedules (rescale_betas_zero_snr) are not supported")

    model = DiffusersUNet(unet)
    num_classes = cfg.get("num_class_embeds")
    label = _check_label(class_label, int(num_classes) if num_classes else None, source)
    pred = _prediction(prediction, scfg.get("prediction_type"))
    learned = model.out_channels == 2 * model.in_channels
    model.to(device)
    prior = VPDiffusionPrior(model, ab, prediction=pred, learned_sigma=learned, class_label=label, half=half)
    prior.source = str(source)  # type: ignore[attr-defined]
    prior.arch = "diffusers"  # type: ignore[attr-defined]
    prior.config = {k: v for k, v in cfg.items() if not k.startswith("_")}  # type: ignore[attr-defined]
    prior.config_origin = str(unet_dir / "config.json")  # type: ignore[attr-defined]
    prior.metadata = {"scheduler": scfg}  # type: ignore[attr-defined]
    return prior
