"""invkit's own prior file (one writer, one reader) and the one state-dict writer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from invkit_priors.checkpoints.invkit_format import INVKIT_FORMAT, read_invkit_metadata, write_invkit_prior
from invkit_priors.checkpoints.safe_load import CheckpointError, load_state_dict_file, save_state_dict

STATE = {"a.weight": torch.arange(6, dtype=torch.float32).reshape(2, 3) / 7, "b.steps": torch.tensor([3, 4])}


def test_the_writer_and_the_reader_agree(tmp_path: Path) -> None:
    path = write_invkit_prior(tmp_path / "sub" / "p.safetensors", STATE, architecture="ddpm", flags={"ch": 32},
                              prediction="v", schedule="cosine", extra={"note": "x"})
    meta = read_invkit_metadata(path)
    assert meta == {"format": INVKIT_FORMAT, "architecture": "ddpm", "flags": '{"ch": 32}', "prediction": "v",
                    "schedule": '"cosine"', "data_range": "[-1, 1]", "note": "x"}
    back = load_state_dict_file(path)
    assert back["a.weight"].dtype == torch.float16 and torch.equal(back["a.weight"], STATE["a.weight"].half())
    assert back["b.steps"].dtype == torch.int64 and torch.equal(back["b.steps"], STATE["b.steps"])  # only floats are cast
    kept = write_invkit_prior(tmp_path / "f32.safetensors", STATE, architecture="adm", flags={}, dtype=None)
    assert torch.equal(load_state_dict_file(kept)["a.weight"], STATE["a.weight"])
    assert json.loads(read_invkit_metadata(kept)["schedule"]) == {"betas": "linear", "beta_start": 1e-4, "beta_end": 0.02, "steps": 1000}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"path": "p.pt"}, "is a .safetensors file"),
        ({"architecture": "unet"}, "unknown architecture 'unet'"),
        ({"prediction": "score"}, "unknown prediction 'score'"),
        ({"extra": {"format": "mine"}}, r"may not overwrite the format's keys \['format'\]"),
        ({"extra": {"train_step": 3}}, r"must be strings; not so for \['train_step'\]"),
    ],
)
def test_the_writer_refuses_what_the_reader_could_not_take(tmp_path: Path, kwargs: dict, message: str) -> None:
    args = {"path": "p.safetensors", "architecture": "adm", "prediction": "epsilon", "extra": None, **kwargs}
    target = tmp_path / args.pop("path")
    with pytest.raises(ValueError, match=message):
        write_invkit_prior(target, STATE, flags={}, **args)
    assert not any(tmp_path.iterdir())  # nothing written, not even a temporary file


def test_other_files_are_not_invkit_priors_and_a_newer_format_is_named(tmp_path: Path) -> None:
    assert read_invkit_metadata(save_state_dict(tmp_path / "plain.safetensors", STATE)) is None
    assert read_invkit_metadata(save_state_dict(tmp_path / "plain.pt", STATE)) is None
    newer = save_state_dict(tmp_path / "n.safetensors", STATE, metadata={"format": "invkit-prior-v9"})
    with pytest.raises(CheckpointError, match="'invkit-prior-v9' is newer than this invkit reads"):
        read_invkit_metadata(newer)


def test_the_state_dict_writer_writes_plain_tensors_safely_loadable(tmp_path: Path) -> None:
    pt = save_state_dict(tmp_path / "s.pt", STATE)
    assert torch.load(pt, weights_only=True).keys() == STATE.keys()  # plain {name: tensor}, no code
    assert all(torch.equal(load_state_dict_file(pt)[k], v) for k, v in STATE.items())
    st = save_state_dict(tmp_path / "s.safetensors", STATE, metadata={"k": "v"})
    with safe_open(str(st), framework="pt") as f:
        assert f.metadata() == {"k": "v"}
    with pytest.raises(ValueError, match="metadata needs a .safetensors file"):
        save_state_dict(tmp_path / "m.pt", STATE, metadata={"k": "v"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.pt", "s.safetensors"]
