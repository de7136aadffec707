"""One device rule (invkit.devices) for the runner and the checkpoint loaders."""

from __future__ import annotations

import pytest
import torch

from invkit.devices import resolve_device
from invkit.runner import RestoreError
from invkit.runner import resolve_device as runner_resolve_device


def test_names_and_refusals():
    assert resolve_device("cpu") == torch.device("cpu") == resolve_device(torch.device("cpu"))
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="'warp' is not a device; use cpu, cuda, cuda:N or auto"):
        resolve_device("warp")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available here"):
            resolve_device("cuda")
    # the runner refuses the same names with its own error type, naming the option
    with pytest.raises(RestoreError, match=r"^--device 'warp' is not a device"):
        runner_resolve_device("warp")


def test_the_checkpoint_loader_uses_the_same_rule(tmp_path):
    from invkit_priors.checkpoints.load import load_checkpoint_prior

    ckpt = tmp_path / "m.safetensors"
    ckpt.write_bytes(b"x")
    with pytest.raises(ValueError, match="'warp' is not a device"):
        load_checkpoint_prior(ckpt, device="warp")
