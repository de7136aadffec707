"""Safe checkpoint loading: original file layouts round-trip, mismatches are listed, code is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from invkit_priors.networks.adm import ADMConfig, ADMUNet
from invkit_priors.checkpoints.safe_load import (
    CheckpointError,
    CheckpointMismatchError,
    PickledCodeError,
    load_state_dict_file,
    load_strict,
)
from invkit_priors.networks.ddpm import DDPMConfig, DDPMUNet
from _nets import randomize as _randomize

ADM_TINY = dict(
    image_size=16, num_channels=32, channel_mult="1,2", num_res_blocks=1, attention_resolutions="8",
    num_head_channels=16, resblock_updown=True, learn_sigma=True,
)
DDPM_TINY = dict(ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,), resolution=8)


def randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Perturbed parameters (see _nets.randomize), in eval mode."""
    return _randomize(model, seed).eval()


def build(kind: str, seed: int | None = None, **overrides) -> torch.nn.Module:
    torch.manual_seed(123)
    if kind == "adm":
        model: torch.nn.Module = ADMUNet(ADMConfig.from_flags({**ADM_TINY, **overrides}))
    else:
        model = DDPMUNet(DDPMConfig(**{**DDPM_TINY, **overrides}))
    return randomize(model, seed) if seed is not None else model.eval()


def run(model: torch.nn.Module) -> torch.Tensor:
    g = torch.Generator().manual_seed(7)
    x = torch.randn(2, 3, 8, 8, generator=g)
    with torch.no_grad():
        return model(x, torch.tensor([3.0, 640.0]))


@pytest.fixture(params=["adm", "ddpm"])
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


def test_plain_state_dict_round_trip(kind: str, tmp_path: Path) -> None:
    src = build(kind, seed=1)
    path = tmp_path / "model.pt"
    torch.save(src.state_dict(), path)
    dst = build(kind)
    assert not torch.equal(run(dst), run(src))
    load_strict(dst, load_state_dict_file(path), source=path)
    assert torch.equal(run(dst), run(src))


def test_wrapped_checkpoints_prefer_ema(kind: str, tmp_path: Path) -> None:
    online, ema = build(kind, seed=1), build(kind, seed=2)
    path = tmp_path / "train_state.pth"
    torch.save({"model": online.state_dict(), "ema": ema.state_dict(), "step": 1000}, path)
    dst = build(kind)
    load_strict(dst, load_state_dict_file(path))
    assert torch.equal(run(dst), run(ema))
    load_strict(dst, load_state_dict_file(path, key="model"))
    assert torch.equal(run(dst), run(online))
    with pytest.raises(CheckpointError, match="no entry 'opt'"):
        load_state_dict_file(path, key="opt")


def test_data_parallel_prefix_and_ema_model_wrapper(tmp_path: Path) -> None:
    src = build("adm", seed=3)
    path = tmp_path / "dp.ckpt"
    torch.save({"ema_model": {f"module.{k}": v for k, v in src.state_dict().items()}}, path)
    dst = build("adm")
    load_strict(dst, load_state_dict_file(path))
    assert torch.equal(run(dst), run(src))
    path2 = tmp_path / "lightning.ckpt"
    torch.save({"state_dict": src.state_dict(), "epoch": 3}, path2)
    assert load_state_dict_file(path2).keys() == src.state_dict().keys()


def test_safetensors_round_trip(kind: str, tmp_path: Path) -> None:
    src = build(kind, seed=4)
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(path))
    dst = build(kind)
    load_strict(dst, load_state_dict_file(path))
    assert torch.equal(run(dst), run(src))
    sniffed = tmp_path / "model.weights"  # unknown suffix: recognised by content
    sniffed.write_bytes(path.read_bytes())
    assert load_state_dict_file(sniffed).keys() == src.state_dict().keys()


def test_meta_model_assign_and_mmap(tmp_path: Path) -> None:
    src = build("adm", seed=5)
    path = tmp_path / "model.pt"
    torch.save(src.state_dict(), path)
    with torch.device("meta"):
        dst = ADMUNet(ADMConfig.from_flags(ADM_TINY))
    load_strict(dst, load_state_dict_file(path, mmap=True), assign=True)
    assert torch.equal(run(dst.eval()), run(src))


def test_mismatch_lists_keys_and_leaves_model_untouched(tmp_path: Path) -> None:
    src = build("adm", seed=1, class_cond=True, learn_sigma=False)
    path = tmp_path / "cond.pt"
    torch.save(src.state_dict(), path)
    dst = build("adm")
    before = run(dst)
    with pytest.raises(CheckpointMismatchError) as info:
        load_strict(dst, load_state_dict_file(path), source=path)
    err = info.value
    msg = str(err)
    assert "\n" not in msg and str(path) in msg
    assert err.unexpected == ["label_emb.weight"] and "1 unexpected: label_emb.weight" in msg
    assert [k for k, _, _ in err.mismatched] == ["out.2.weight", "out.2.bias"]
    assert "out.2.weight (file [3, 32, 3, 3] vs model [6, 32, 3, 3])" in msg
    assert err.missing == []
    assert torch.equal(run(dst), before)


def test_mismatch_counts_are_capped(tmp_path: Path) -> None:
    narrow = build("ddpm")
    wide = build("ddpm", ch=64)
    with pytest.raises(CheckpointMismatchError) as info:
        load_strict(wide, narrow.state_dict())
    err = info.value
    assert len(err.mismatched) > 10
    assert f"{len(err.mismatched)} mis-shaped" in str(err)
    assert f"({len(err.mismatched) - 10} more)" in str(err)
    with pytest.raises(CheckpointMismatchError, match="missing: temb.dense.0.weight"):
        load_strict(narrow, {k: v for k, v in narrow.state_dict().items() if k != "temb.dense.0.weight"})


class _Payload:
    """A class whose instances torch.save pickles by reference to code."""

    def __init__(self) -> None:
        self.weight = torch.zeros(2)


def test_pickled_objects_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "object.pt"
    torch.save(_Payload(), path)
    with pytest.raises(PickledCodeError, match="contains pickled code.*never executes; convert it to a plain state dict or safetensors"):
        load_state_dict_file(path)


def test_global_opcode_is_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    # Protocol-2 pickle: GLOBAL os.system, a one-string tuple, REDUCE, STOP. Unpickling it with
    # the plain pickle module would run the command; the loader must refuse it instead.
    command = f"touch {marker}".encode()
    payload = b"\x80\x02cos\nsystem\nX" + len(command).to_bytes(4, "little") + command + b"\x85R."
    path = tmp_path / "evil.pt"
    path.write_bytes(payload)
    with pytest.raises(PickledCodeError, match="os.system"):
        load_state_dict_file(path)
    assert not marker.exists()


def test_truncated_and_corrupt_files(tmp_path: Path) -> None:
    src = build("ddpm", seed=1)
    good = tmp_path / "good.pt"
    torch.save(src.state_dict(), good)
    data = good.read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt") as info:
        load_state_dict_file(cut)
    assert str(cut) in str(info.value) and "\n" not in str(info.value)
    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty.ckpt"):
        load_state_dict_file(empty)
    st = tmp_path / "model.safetensors"
    save_file(src.state_dict(), str(st))
    st.write_bytes(st.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="model.safetensors.*truncated or corrupt"):
        load_state_dict_file(st)
    with pytest.raises(FileNotFoundError):
        load_state_dict_file(tmp_path / "nope.pt")


def test_files_without_a_state_dict(tmp_path: Path) -> None:
    path = tmp_path / "meta.pt"
    torch.save({"epoch": 3, "config": {"lr": 0.1}}, path)
    with pytest.raises(CheckpointError, match=r"no state dict found \(top-level keys \['config', 'epoch'\]\)"):
        load_state_dict_file(path)
    lst = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], lst)
    with pytest.raises(CheckpointError, match="holds a list"):
        load_state_dict_file(lst)
