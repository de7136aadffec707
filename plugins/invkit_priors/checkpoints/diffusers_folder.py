"""diffusers model folders (optional extra ``invkit[diffusers]``) as :class:`~invkit_priors.adapters.vp.VPDiffusionPrior`.

A folder with a ``UNet2DModel`` ``config.json`` and its weights, and a scheduler config
(``scheduler_config.json`` beside it, or the pipeline layout ``unet/`` + ``scheduler/``). The
scheduler's ``alphas_cumprod`` and ``prediction_type`` (``epsilon``/``sample``/``v_prediction``)
configure the adapter. The network is built by diffusers from ``config.json`` on the ``meta``
device; the weights are read by invkit's safe loader (never by pickle with code) and assigned
after the strict key/shape check. Only scheduler classes may be named by the scheduler file.
Folders are written by diffusers' own ``save_pretrained``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..adapters.diffusers import DiffusersUNet
from ..adapters.vp import Provenance, VPDiffusionPrior, check_class_label, resolve_prediction
from .safe_load import CheckpointError, fill_model, load_state_dict_file

__all__ = ["load_diffusers_prior", "WEIGHT_FILES"]

#: Weight files of a diffusers model folder, in order of preference.
WEIGHT_FILES: tuple[str, ...] = (
    "diffusion_pytorch_model.safetensors",
    "diffusion_pytorch_model.bin",
    "diffusion_pytorch_model.fp16.safetensors",
    "diffusion_pytorch_model.fp16.bin",
)


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


def load_diffusers_prior(source: Path, class_label: Any, prediction: str | None, half: bool, device: torch.device) -> VPDiffusionPrior:
    """The prior of a diffusers model or pipeline folder (see the module notes).

    Raises:
        CheckpointError: diffusers is not installed; not a pixel-space ``UNet2DModel`` folder; no
            (or sharded) weights; a scheduler without a VP schedule.
        CheckpointMismatchError: The weights do not fit ``config.json``.
        ValueError: A class label missing or refused, or an unknown prediction.
    """
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
    weights = next((unet_dir / n for n in WEIGHT_FILES if (unet_dir / n).is_file()), None)
    if weights is None:
        if any(unet_dir.glob("*.index.json")):
            raise CheckpointError(f"{unet_dir}: sharded weights are not supported")
        raise CheckpointError(f"{unet_dir}: no weights file ({', '.join(WEIGHT_FILES[:2])})")
    with torch.device("meta"):
        unet = diffusers.UNet2DModel.from_config(cfg)
    state = _rename_deprecated_attention(load_state_dict_file(weights), unet.state_dict())
    fill_model(unet, state, weights)

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
    label = check_class_label(class_label, int(num_classes) if num_classes else None, source)
    pred = resolve_prediction(prediction, scfg.get("prediction_type"))
    learned = model.out_channels == 2 * model.in_channels
    model.to(device)
    config = {k: v for k, v in cfg.items() if not k.startswith("_")}
    provenance = Provenance(str(source), "diffusers", config, str(unet_dir / "config.json"), {"scheduler": scfg})
    return VPDiffusionPrior(model, ab, prediction=pred, learned_sigma=learned, class_label=label, half=half, provenance=provenance)
