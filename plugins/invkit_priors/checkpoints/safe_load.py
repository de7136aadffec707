"""Safe checkpoint loading: tensors only, strict key and shape checks, never random weights.

The reading and writing of state-dict files, used by every checkpoint format:

* :func:`load_state_dict_file` reads a state dict from ``.pt``/``.pth``/``.ckpt``/``.bin``
  (``torch.load(..., map_location="cpu", weights_only=True)``: tensors and plain containers, no
  code is ever unpickled) or ``.safetensors``. Common wrappers are unwrapped — a dict whose
  ``ema``/``ema_model``/``state_dict``/``model`` entry holds the tensors (EMA weights preferred,
  being what a sampler wants) — and a ``module.`` prefix left by ``DataParallel`` is stripped.
  A file that needs code to unpickle is refused with a one-line explanation; a truncated or
  corrupt file gives a one-line error naming the file.
* :func:`load_strict` compares the keys and shapes of a state dict with a model's *before*
  loading anything and raises :class:`CheckpointMismatchError` listing missing, unexpected and
  mis-shaped keys; on success every parameter and buffer comes from the file.
  :func:`build_on_meta` and :func:`fill_model` build a network without allocating weights and
  fill it that way (the readers of every architecture use this pair).
* :func:`save_state_dict` is the one writer: ``.safetensors`` (with string metadata) or a
  PyTorch file of plain tensors (the layout guided-diffusion and the DDPM ports save), atomically.

Example:
    >>> import tempfile, os, torch
    >>> from invkit_priors.checkpoints.safe_load import load_state_dict_file, load_strict
    >>> net = torch.nn.Linear(2, 2)
    >>> path = os.path.join(tempfile.mkdtemp(), "net.pt")
    >>> torch.save({"ema": net.state_dict()}, path)
    >>> load_strict(torch.nn.Linear(2, 2), load_state_dict_file(path))
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from invkit.io import atomic_write

__all__ = [
    "CheckpointError",
    "CheckpointMismatchError",
    "PickledCodeError",
    "WRAPPER_KEYS",
    "load_state_dict_file",
    "load_strict",
    "compare_state_dict",
    "build_on_meta",
    "fill_model",
    "save_state_dict",
]

#: Entries that hold the tensors in a wrapped checkpoint, in order of preference.
WRAPPER_KEYS: tuple[str, ...] = ("ema", "ema_model", "state_dict", "model")

_TORCH_SUFFIXES = {".pt", ".pth", ".ckpt", ".bin", ".pkl", ".tar"}
_SHOW = 10


class CheckpointError(ValueError):
    """A checkpoint file cannot be read or holds no usable state dict."""


class PickledCodeError(CheckpointError):
    """The file needs arbitrary code to be unpickled; invkit refuses to run it."""


class CheckpointMismatchError(CheckpointError):
    """A state dict's keys or shapes differ from the model's.

    Attributes:
        missing: Keys the model has and the state dict lacks.
        unexpected: Keys the state dict has and the model lacks.
        mismatched: ``(key, shape in file, shape in model)`` for keys present in both.
    """

    def __init__(self, message: str, missing: list[str], unexpected: list[str], mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]]) -> None:
        super().__init__(message)
        self.missing = missing
        self.unexpected = unexpected
        self.mismatched = mismatched


def _is_tensor_dict(obj: object) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items())


def _unwrap(obj: object, path: Path, key: str | None, depth: int = 0) -> dict[str, Tensor]:
    """Find the tensor dict inside ``obj`` (the file's top-level object)."""
    if key is not None and depth == 0:
        if not isinstance(obj, Mapping) or key not in obj:
            found = sorted(map(str, obj.keys())) if isinstance(obj, Mapping) else type(obj).__name__
            raise CheckpointError(f"{path}: no entry {key!r} in the checkpoint (it holds {found})")
        return _unwrap(obj[key], path, None, depth + 1)
    if _is_tensor_dict(obj):
        return dict(obj)  # type: ignore[arg-type]
    if isinstance(obj, Mapping) and depth < 2:
        for name in WRAPPER_KEYS:
            if name in obj and isinstance(obj[name], Mapping):
                try:
                    return _unwrap(obj[name], path, None, depth + 1)
                except CheckpointError:
                    continue
    if isinstance(obj, Mapping):
        keys = sorted(map(str, obj.keys()))
        shown = keys[:_SHOW] + (["..."] if len(keys) > _SHOW else [])
        raise CheckpointError(
            f"{path}: no state dict found (top-level keys {shown}); expected a dict of tensors or "
            f"one under {list(WRAPPER_KEYS)} — pass key=... to pick an entry"
        )
    raise CheckpointError(
        f"{path}: the file holds a {type(obj).__name__}, not a state dict; save model.state_dict() instead"
    )


def _strip_prefix(state: dict[str, Tensor], prefix: str = "module.") -> dict[str, Tensor]:
    if state and all(k.startswith(prefix) for k in state):
        return {k[len(prefix) :]: v for k, v in state.items()}
    return state


def _sniff(path: Path) -> str:
    """``"safetensors"`` or ``"torch"`` from the suffix, else from the first bytes."""
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        return "safetensors"
    if suffix in _TORCH_SUFFIXES:
        return "torch"
    with open(path, "rb") as fh:
        head = fh.read(16)
    # safetensors: 8-byte little-endian header length, then a JSON object.
    if len(head) >= 9 and head[8:9] == b"{":
        return "safetensors"
    return "torch"


_TORCH_MAGIC = 0x1950A86A20F9469CFC6C


def _plain_pickle(path: Path) -> bool:
    """Whether ``path`` is a pickle (protocol 2 or later) but neither a zip ``torch.save`` file nor
    a legacy one, whose first pickled value is torch's magic number (any protocol). Only the first
    opcodes are parsed (pickletools; nothing is executed)."""
    import pickletools

    with open(path, "rb") as fh:
        head = fh.read(64)
    if head[:1] != b"\x80":
        return False
    try:
        for op, arg, _ in pickletools.genops(head):
            if op.name in ("PROTO", "FRAME"):
                continue
            return not (isinstance(arg, int) and arg == _TORCH_MAGIC)
    except Exception:  # noqa: BLE001 - the head ended mid-opcode: decided by what was seen
        pass
    return True


def _pickle_globals(path: Path, limit: int = 1 << 20) -> list[str]:
    """The ``module.name`` globals a pickle references, read by parsing its opcodes (never executed)."""
    import pickletools

    found: list[str] = []
    strings: list[str] = []
    try:
        with open(path, "rb") as fh:
            for op, arg, _ in pickletools.genops(fh.read(limit)):
                if op.name == "GLOBAL" and isinstance(arg, str):
                    found.append(arg.replace(" ", "."))
                elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                    found.append(f"{strings[-2]}.{strings[-1]}")
                elif isinstance(arg, str):
                    strings.append(arg)
    except Exception:  # noqa: BLE001 - truncated or not a pickle past the head: report what was seen
        pass
    return found


def _load_torch(path: Path, mmap: bool) -> object:
    if _plain_pickle(path):
        code = _pickle_globals(path)
        if code:
            raise PickledCodeError(
                f"{path}: this file contains pickled code (it references {code[0]}), which invkit never executes; "
                "convert it to a plain state dict or safetensors"
            )
        raise PickledCodeError(
            f"{path}: this is a plain Python pickle, not a PyTorch checkpoint (torch.save), and invkit never unpickles "
            "arbitrary files; save the weights with torch.save(model.state_dict(), ...) or as safetensors"
        )
    with warnings.catch_warnings():  # torch's notes on pickle protocols are not the user's business
        warnings.simplefilter("ignore", UserWarning)
        return _load_torch_quiet(path, mmap)


def _load_torch_quiet(path: Path, mmap: bool) -> object:
    if mmap:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception:  # legacy (non-zip) files cannot be mapped; errors are classified below
            pass
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        text = str(err)
        match = re.search(r"GLOBAL\s+([\w.]+)", text)
        if match or "global" in text.lower() or "reduce for" in text.lower():
            what = f" (it references {match.group(1)})" if match else ""
            raise PickledCodeError(
                f"{path}: this file contains pickled code{what}, which invkit never executes; "
                "convert it to a plain state dict or safetensors"
            ) from None
        raise CheckpointError(f"{path}: cannot read the PyTorch checkpoint — the file is truncated or corrupt") from None
    except (RuntimeError, OSError, EOFError, KeyError, ValueError, IndexError, TypeError, AttributeError) as err:
        if isinstance(err, FileNotFoundError):
            raise
        lines = str(err).strip().splitlines()
        detail = f"{type(err).__name__}: {lines[0][:120]}" if lines else type(err).__name__
        raise CheckpointError(
            f"{path}: cannot read the PyTorch checkpoint — the file is truncated or corrupt ({detail})"
        ) from None


def _load_safetensors(path: Path) -> dict[str, Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except Exception as err:  # SafetensorError is not importable in every version
        detail = str(err).splitlines()[0][:120] if str(err) else type(err).__name__
        raise CheckpointError(f"{path}: cannot read the safetensors file — truncated or corrupt ({detail})") from None


def load_state_dict_file(path: str | os.PathLike[str], *, key: str | None = None, mmap: bool = False) -> dict[str, Tensor]:
    """Read a state dict (tensors only) from a checkpoint file, safely.

    Args:
        path: A ``.pt``/``.pth``/``.ckpt``/``.bin`` PyTorch file or a ``.safetensors`` file (other
            suffixes are recognised by content).
        key: Take the state dict from this top-level entry instead of searching
            :data:`WRAPPER_KEYS` (``ema``, ``ema_model``, ``state_dict``, ``model``, in that order).
        mmap: Memory-map a zip-format PyTorch file instead of reading it (saves memory for large
            checkpoints).

    Returns:
        ``{name: tensor}`` on the CPU, with a common ``module.`` prefix removed.

    Raises:
        FileNotFoundError: No such file.
        PickledCodeError: The file needs code to be unpickled (refused, never executed).
        CheckpointError: The file is truncated/corrupt or holds no state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if _sniff(path) == "safetensors":
        obj: object = _load_safetensors(path)
    else:
        obj = _load_torch(path, mmap)
    return _strip_prefix(_unwrap(obj, path, key))


def compare_state_dict(model: nn.Module, state_dict: Mapping[str, Tensor]) -> tuple[list[str], list[str], list[tuple[str, tuple[int, ...], tuple[int, ...]]]]:
    """Keys the model lacks/has extra and shape mismatches between ``state_dict`` and ``model``.

    Returns:
        ``(missing, unexpected, mismatched)``: model keys absent from the file, file keys absent
        from the model, and ``(key, file shape, model shape)`` for differing shapes; each in the
        order of the model (or of the file for ``unexpected``).
    """
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    mismatched = [
        (k, tuple(state_dict[k].shape), tuple(own[k].shape))
        for k in own
        if k in state_dict and tuple(state_dict[k].shape) != tuple(own[k].shape)
    ]
    return missing, unexpected, mismatched


def _listing(title: str, items: list[str]) -> str:
    shown = items[:_SHOW]
    more = f", ... ({len(items) - _SHOW} more)" if len(items) > _SHOW else ""
    return f"{len(items)} {title}: " + ", ".join(shown) + more


def load_strict(model: nn.Module, state_dict: Mapping[str, Tensor], *, source: str | os.PathLike[str] | None = None, assign: bool = False) -> None:
    """Load ``state_dict`` into ``model`` only if every key and shape matches exactly.

    The comparison happens before anything is copied, so on failure the model is untouched; a
    model is never left with (partly) random weights. Dtypes may differ (values are cast to the
    model's dtype unless ``assign``).

    Args:
        model: The module to fill.
        state_dict: ``{name: tensor}``, e.g. from :func:`load_state_dict_file`.
        source: Where the state dict came from (a path), named in the error message.
        assign: Replace the model's tensors by the file's instead of copying into them (for a
            model built on the ``meta`` device; the model then takes the file's dtypes).

    Raises:
        CheckpointMismatchError: Listing the first missing, unexpected and mis-shaped keys, with
            counts.
    """
    missing, unexpected, mismatched = compare_state_dict(model, state_dict)
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(_listing("missing", missing))
        if unexpected:
            parts.append(_listing("unexpected", unexpected))
        if mismatched:
            parts.append(
                _listing("mis-shaped", [f"{k} (file {list(a)} vs model {list(b)})" for k, a, b in mismatched])
            )
        where = f" from {source}" if source is not None else ""
        raise CheckpointMismatchError(
            f"state dict{where} does not fit {type(model).__name__} (check the architecture "
            f"flags): " + "; ".join(parts),
            missing,
            unexpected,
            mismatched,
        )
    model.load_state_dict(dict(state_dict), strict=True, assign=assign)


def build_on_meta(factory: Callable[..., nn.Module], *args: object) -> nn.Module:
    """``factory(*args)`` built on the ``meta`` device: the architecture without any weights allocated."""
    with torch.device("meta"):
        return factory(*args)


def fill_model(model: nn.Module, state: Mapping[str, Tensor], source: str | os.PathLike[str], origin: str | None = None) -> nn.Module:
    """Assign ``state`` to a meta-device ``model`` after the strict check, in the model's dtypes.

    Args:
        model: From :func:`build_on_meta`.
        state: The file's tensors.
        source: The file, named in errors.
        origin: Where the architecture came from (e.g. ``"ADM flags from metadata"``), appended
            to a mismatch message in brackets.

    Returns:
        The model, frozen (``requires_grad_(False)``) and in ``eval()`` mode.

    Raises:
        CheckpointMismatchError: As :func:`load_strict`.
    """
    own = model.state_dict()
    cast = {k: (v.to(own[k].dtype) if k in own and v.is_floating_point() else v) for k, v in state.items()}
    try:
        load_strict(model, cast, source=source, assign=True)
    except CheckpointMismatchError as err:
        if origin is None:
            raise
        raise CheckpointMismatchError(f"{err} [{origin}]", err.missing, err.unexpected, err.mismatched) from None
    return model.requires_grad_(False).eval()


def save_state_dict(path: str | os.PathLike[str], state: Mapping[str, Tensor], metadata: Mapping[str, str] | None = None) -> Path:
    """Write a state dict atomically: ``.safetensors`` (contiguous tensors, string ``metadata``) or a plain PyTorch file.

    A PyTorch file holds only ``{name: tensor}`` (what :func:`load_state_dict_file` reads with
    ``weights_only=True``); ``metadata`` needs ``.safetensors``.

    Raises:
        ValueError: ``metadata`` for a non-safetensors path, or a non-string metadata value.
        FileNotFoundError: The folder does not exist.
    """
    path = Path(path)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import save_file

        meta = dict(metadata or {})
        bad = sorted(k for k, v in meta.items() if not isinstance(v, str))
        if bad:
            raise ValueError(f"safetensors metadata values must be strings; not so for {bad}")
        return atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))
    if metadata:
        raise ValueError(f"{path}: metadata needs a .safetensors file")
    return atomic_write(path, lambda tmp: torch.save(tensors, tmp))
