"""The default prior's training script: its dataset cache follows the data folders; refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from _scripts import load_module

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "train_default_prior.py"


@pytest.fixture(scope="module")
def train():
    return load_module("train_default_prior", SCRIPT)


def _photo(path: Path, seed: int, size=(200, 120)) -> None:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (*size[::-1], 3), dtype=np.uint8)).save(path)


def test_dataset_cache_adds_new_and_drops_removed_files(train, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(train, "TRAIN_SKIMAGE", ())  # keep the test small
    data, cache = tmp_path / "data", tmp_path / "state" / "dataset.pt"
    _photo(data / "a.png", 0)
    _photo(data / "sub" / "b.jpg", 1, (400, 300))
    levels, sources = train.load_dataset([data], cache)
    # 200x120 -> one level (next 100x60 < 96); 400x300 -> 400x300, 200x150 (100x75 < 96)
    assert sorted(sources) == sorted([str(data / "a.png")] + [str(data / "sub" / "b.jpg")] * 2)
    assert [tuple(lv.shape) for lv, s in zip(levels, sources) if s.endswith("b.jpg")] == [(3, 300, 400), (3, 150, 200)]
    assert "2 image files added, 0 dropped" in capsys.readouterr().out
    # unchanged folders: the cache is used as it is, nothing is decoded again
    again = train.load_dataset([data], cache)
    assert again[1] == sources and "dataset cache updated" not in capsys.readouterr().out
    # one file more, one less; a relative path to the same folder names the same files
    _photo(data / "c.png", 2)
    (data / "a.png").unlink()
    monkeypatch.chdir(tmp_path)
    levels, sources = train.load_dataset([Path("data")], cache)
    assert "1 image files added, 1 dropped" in capsys.readouterr().out
    assert sorted(set(sources)) == sorted([str(data / "c.png"), str(data / "sub" / "b.jpg")])
    assert len(levels) == len(sources) == 3
    # no --data: the cache as it is
    assert train.load_dataset([], cache)[1] == sources


def test_one_file_per_picture(train, tmp_path):
    """KDE's wallpaper layout (one picture at many sizes, many of them symlinks to the largest, and a
    ``contents/screenshot.png`` preview) gives one file per picture, the largest and a real file; a
    dark variant is its own picture; symlinks elsewhere count once; ``all_sizes`` keeps everything."""
    import os

    images = tmp_path / "w" / "Autumn" / "contents" / "images"
    _photo(images / "2560x1600.jpg", 0, (256, 160))
    for name in ("1280x1024.jpg", "640x480.jpg"):
        os.symlink("2560x1600.jpg", images / name)  # Debian's package: the "sizes" are one file
    _photo(images / "720x1440.jpg", 1, (72, 144))
    _photo(images.parent / "screenshot.png", 2, (64, 40))
    _photo(images.parent / "images_dark" / "1920x1080.png", 3, (192, 108))
    _photo(tmp_path / "w" / "lone.png", 4)
    _photo(tmp_path / "w" / "big" / "images" / "x.png", 5, (300, 300))  # "images" outside "contents": its own picture
    _photo(tmp_path / "w" / "big" / "images" / "y.png", 6, (100, 100))
    os.symlink(tmp_path / "w" / "lone.png", tmp_path / "w" / "z_link_to_lone.png")
    got = [str(p.relative_to(tmp_path / "w")) for p in train.find_images([tmp_path / "w"])]
    assert got == ["Autumn/contents/images/2560x1600.jpg", "Autumn/contents/images_dark/1920x1080.png",
                   "big/images/x.png", "big/images/y.png", "lone.png"]
    assert len(train.find_images([tmp_path / "w"], all_sizes=True)) == 10
    assert train.picture_key(images / "640x480.jpg") == train.picture_key(images.parent / "screenshot.png") == str(images)
    # overlapping folders name a file once; a link and its target are one file, the real one kept
    assert [str(p.relative_to(tmp_path / "w")) for p in train.find_images([tmp_path / "w", tmp_path / "w" / "big"])] == got
    dark = images.parent / "images_dark"
    (images / "1920x1080.png").symlink_to(dark / "1920x1080.png")  # in another picture's folder
    assert train.one_file_per_picture([images / "1920x1080.png", dark / "1920x1080.png"]) == [dark / "1920x1080.png"]
    # a tie in size within a picture goes to the real file, whatever the order
    outside = tmp_path / "elsewhere" / "pic.png"
    _photo(outside, 7, (256, 160))
    (images / "0000x0000.jpg").symlink_to(outside)
    for order in (1, -1):
        assert train.one_file_per_picture([images / "0000x0000.jpg", images / "2560x1600.jpg"][::order]) == [images / "2560x1600.jpg"]


def test_symlinks_are_judged_by_their_targets(train, tmp_path, capsys):
    """A symlink into ``mate-backgrounds`` or to a file named like an evaluation image is left out
    like the file itself; a symlink to nothing and a file that is no image are skipped with a message."""
    import os

    _photo(tmp_path / "mate-backgrounds" / "p.png", 0)
    _photo(tmp_path / "other" / "astronaut.png", 1)
    folder = tmp_path / "d"
    _photo(folder / "ok.png", 2)
    os.symlink(tmp_path / "mate-backgrounds" / "p.png", folder / "innocent.png")
    os.symlink(tmp_path / "other" / "astronaut.png", folder / "holiday.png")
    os.symlink(tmp_path / "gone.png", folder / "dangling.png")
    (folder / "broken.jpg").write_bytes(b"not an image")
    assert [p.name for p in train.find_images([folder])] == ["ok.png"]
    out = capsys.readouterr().out
    assert "holiday.png: named like an evaluation image" in out and "dangling.png: a symlink to nothing" in out
    assert "broken.jpg: not a readable image" in out


def test_gpu_pack_keeps_one_file_per_picture(tmp_path):
    """``scripts/gpu_training_data.py`` packs what the training script would train on: the largest
    file of each picture (its pyramid's top level as JPEG), a dark variant as a picture of its own."""
    import os
    import subprocess
    import sys

    images = tmp_path / "w" / "Autumn" / "contents" / "images"
    _photo(images / "400x250.jpg", 0, (400, 250))
    os.symlink("400x250.jpg", images / "200x125.jpg")
    _photo(images / "160x100.jpg", 1, (160, 100))
    _photo(images.parent / "images_dark" / "300x200.png", 2, (300, 200))
    _photo(tmp_path / "w" / "lone.png", 3, (200, 120))
    proc = subprocess.run([sys.executable, str(SCRIPT.parent / "gpu_training_data.py"), str(tmp_path / "w"), str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    sizes = sorted(Image.open(p).size for p in (tmp_path / "out").glob("*.jpg"))
    assert sizes == [(200, 120), (300, 200), (400, 250)] and "3 images" in proc.stdout


def test_reserved_images_are_refused(train, tmp_path):
    with pytest.raises(SystemExit, match="mate-backgrounds is reserved"):
        train.find_images([tmp_path / "usr" / "share" / "mate-backgrounds"])
    _photo(tmp_path / "x" / "backgrounds" / "mate-backgrounds" / "p.png", 3)
    _photo(tmp_path / "x" / "ok.png", 4)
    for name in ("astronaut.png", "motorcycle_right.jpg", "Coffee-cup.png", "the_camera.tif"):
        _photo(tmp_path / "x" / name, 5)
    _photo(tmp_path / "x" / "catalogue.png", 6)  # "cat" only as part of a word: kept
    assert [p.name for p in train.find_images([tmp_path / "x"])] == ["catalogue.png", "ok.png"]


def test_evaluation_images_under_other_names_are_skipped(train, tmp_path, monkeypatch, capsys):
    from skimage import data

    monkeypatch.setattr(train, "TRAIN_SKIMAGE", ())
    folder = tmp_path / "d"
    folder.mkdir()
    Image.fromarray(data.astronaut()).resize((300, 300)).save(folder / "holiday.jpg", quality=80)
    Image.fromarray(data.stereo_motorcycle()[1]).convert("L").save(folder / "bike.png")  # the stereo twin, grey
    Image.fromarray(data.camera()).resize((256, 256)).save(folder / "tripod.png")  # the grey one, resized
    _photo(folder / "noise.png", 7)
    _, sources = train.load_dataset([folder], tmp_path / "cache.pt")
    assert set(sources) == {str(folder / "noise.png")}
    out = capsys.readouterr().out
    assert "holiday.jpg: it is the evaluation image astronaut" in out and "bike.png: it is the evaluation image motorcycle_right" in out
    assert "tripod.png: it is the evaluation image camera" in out


def test_evaluation_levels_are_the_benchmark_photos_and_none_is_trained_on(train):
    """``--eval-on evaluation`` crops exactly the benchmark's evaluation photos (full resolution
    first, then the same halvings as training; grey ``camera`` as three equal channels), and none
    of them is a scikit-image training photo."""
    from skimage import data
    import torch

    levels, sources = train.evaluation_levels()
    assert list(dict.fromkeys(sources)) == [f"evaluation:{n}" for n in train.EVALUATION_PHOTOS]
    eval_data = load_module("_eval_data", SCRIPT.parents[1] / "benchmarks" / "_eval_data.py")
    assert list(train.EVALUATION_PHOTOS) == list(eval_data.EVAL_IMAGES)  # the benchmark's photos, in its order
    assert torch.equal(levels[0], torch.from_numpy(data.astronaut()).permute(2, 0, 1))
    bike = levels[sources.index("evaluation:motorcycle_left")]
    assert torch.equal(bike, torch.from_numpy(data.stereo_motorcycle()[0]).permute(2, 0, 1))
    camera = levels[sources.index("evaluation:camera")]
    assert camera.shape == (3, 512, 512) and torch.equal(camera[0], torch.from_numpy(data.camera())) and torch.equal(camera[0], camera[2])
    assert all(lv.dtype == torch.uint8 and min(lv.shape[-2:]) >= train.MIN_SIDE for lv in levels)
    assert not set(train.TRAIN_SKIMAGE) & (train.EVALUATION_SKIMAGE | set(train.EVALUATION_PHOTOS))


def test_without_the_evaluation_check_no_thumbnails_are_needed(train, tmp_path, monkeypatch):
    """``eval_check=False`` (``--no-eval-check``, for the GPU carry of an already checked set) never
    asks for the evaluation thumbnails, which need scikit-image's downloadable photos."""
    from skimage import data

    monkeypatch.setattr(train, "TRAIN_SKIMAGE", ())

    def unavailable():
        raise RuntimeError("no network")

    monkeypatch.setattr(train, "evaluation_thumbnails", unavailable)
    folder = tmp_path / "d"
    folder.mkdir()
    Image.fromarray(data.astronaut()).resize((300, 300)).save(folder / "holiday.jpg", quality=80)
    _photo(folder / "noise.png", 7)
    _, sources = train.load_dataset([folder], tmp_path / "cache.pt", eval_check=False)
    assert set(sources) == {str(folder / "holiday.jpg"), str(folder / "noise.png")}
    with pytest.raises(RuntimeError, match="no network"):  # the default path does ask for them
        _photo(folder / "more.png", 8)
        train.load_dataset([folder], tmp_path / "cache.pt")


TINY = '{"image_size": 32, "num_channels": 32, "channel_mult": "1,2", "num_res_blocks": 1, "attention_resolutions": "2", "num_head_channels": 16}'


def _train(tmp_path: Path, state: Path, *extra: str) -> str:
    import subprocess
    import sys

    data = tmp_path / "data"
    if not data.exists():
        _photo(data / "a.png", 8, (128, 100))
        _photo(data / "b.png", 9, (100, 140))
    cmd = [sys.executable, str(SCRIPT), "--data", str(data), "--state", str(state), "--flags", TINY, "--no-skimage",
           "--crop", "32", "--batch", "2", "--save-every", "1", "--log-every", "1", "--threads", "1", *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_the_command_line_trains_on_one_file_per_picture_unless_all_sizes(tmp_path):
    """``main`` hands ``--all-sizes`` to the dataset: a picture at three sizes is one source by
    default and three files with the flag, the symlink too, as before (the same cache, brought up
    to date both ways)."""
    import os

    images = tmp_path / "data" / "Kite" / "contents" / "images"
    _photo(images / "200x120.png", 10, (200, 120))
    _photo(images / "160x100.png", 11, (160, 100))
    os.symlink("200x120.png", images / "100x60.png")
    state = tmp_path / "s"
    assert "dataset: 1 images" in _train(tmp_path, state, "--steps", "0")
    assert "dataset: 3 images" in _train(tmp_path, state, "--steps", "0", "--all-sizes")  # every file, as before
    assert "dataset: 1 images" in _train(tmp_path, state, "--steps", "0")


def _export_metadata(tmp_path: Path, name: str) -> dict[str, str]:
    """Export the state ``tmp_path / name`` to ``tmp_path / f"{name}.safetensors"`` and return its metadata."""
    from safetensors import safe_open

    out = tmp_path / f"{name}.safetensors"
    _train(tmp_path, tmp_path / name, "--export", str(out))
    with safe_open(str(out), framework="pt") as f:
        return f.metadata()


def test_resume_continues_exactly_and_export_loads(tmp_path):
    import torch

    from invkit_priors.checkpoints.load import load_checkpoint_prior

    _train(tmp_path, tmp_path / "straight", "--steps", "4")
    _train(tmp_path, tmp_path / "resumed", "--steps", "2")
    _train(tmp_path, tmp_path / "resumed", "--steps", "4")
    a = torch.load(tmp_path / "straight" / "state.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed" / "state.pt", weights_only=True)
    assert a["step"] == b["step"] == 4 and a["thread_seconds"] > 0 and a["warm_from"] == 0
    for part in ("model", "ema"):
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), (part, k)
    assert torch.equal(a["gen"], b["gen"])
    # a different seed trains differently (the comparison above can fail)
    _train(tmp_path, tmp_path / "other", "--steps", "4", "--seed", "1")
    c = torch.load(tmp_path / "other" / "state.pt", weights_only=True)
    assert any(not torch.equal(a["model"][k], c["model"][k]) for k in a["model"])
    # export: fp16 EMA with its metadata, loaded by the real loader
    out = tmp_path / "w.safetensors"
    _train(tmp_path, tmp_path / "straight", "--export", str(out))
    prior = load_checkpoint_prior(out)
    assert prior.provenance.arch == "adm" and prior.denoise(torch.rand(1, 3, 32, 32), 0.1).shape == (1, 3, 32, 32)
    from safetensors import safe_open

    with safe_open(str(out), framework="pt") as f:
        meta = f.metadata()
    assert meta["train_step"] == "4" and int(meta["train_thread_seconds"]) >= 0 and "flags" in meta


def test_curriculum_switches_crop_and_batch_and_resumes_exactly(tmp_path, train):
    import json

    import torch

    assert train.parse_curriculum("3:48x1,0:32x2") == [(0, 32, 2), (3, 48, 1)]
    assert [train.crop_and_batch([(0, 32, 2), (3, 48, 1)], s) for s in (0, 2, 3, 9)] == [(32, 2), (32, 2), (48, 1), (48, 1)]
    for bad in ("32x2", "1:32x2", "0:4x2", "0:32x0"):
        with pytest.raises(SystemExit, match="--curriculum"):
            train.parse_curriculum(bad)
    plan = ["--curriculum", "0:32x2,2:40x1"]
    _train(tmp_path, tmp_path / "straight", "--steps", "4", *plan)
    _train(tmp_path, tmp_path / "resumed", "--steps", "3", *plan)  # stops after the switch
    _train(tmp_path, tmp_path / "resumed", "--steps", "4", *plan)
    a = torch.load(tmp_path / "straight" / "state.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed" / "state.pt", weights_only=True)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert a["images_seen"] == 2 + 2 + 1 + 1 and a["crop"] == 40
    logs = [json.loads(line) for line in (tmp_path / "straight" / "log.jsonl").read_text().splitlines()]
    assert [(r["crop"], r["batch"]) for r in logs] == [(32, 2), (32, 2), (40, 1), (40, 1)]
    # each logged band holds the mean loss of the samples whose timestep fell in it
    assert all(set(r["band_loss"]) == {"t0-100", "t100-300", "t300-600", "t600-1000"} for r in logs)
    per_step = [[v for v in r["band_loss"].values() if v is not None] for r in logs]
    assert [1 <= len(v) <= b for v, b in zip(per_step, (2, 2, 1, 1))] == [True] * 4  # each sample falls in one band
    assert all(v > 0 for vs in per_step for v in vs)


def test_band_losses_split_by_timestep(train):
    import torch

    per = torch.tensor([1.0, 2.0, 3.0, 4.0])
    t = torch.tensor([5, 99, 100, 999])
    out = train.band_losses(per, t)
    assert out == {"t0-100": (3.0, 2), "t100-300": (3.0, 1), "t300-600": (0.0, 0), "t600-1000": (4.0, 1)}


STATE_V1 = Path(__file__).parent / "data" / "train_state_v1"
TINY_V1 = '{"image_size": 32, "num_channels": 32, "channel_mult": "1", "num_res_blocks": 0, "attention_resolutions": "", "num_head_channels": -1}'


def test_a_state_written_by_the_earlier_script_resumes_and_continues_exactly(tmp_path):
    """The state-file format and command line stay compatible (tests/data/train_state_v1/README.md)."""
    import shutil
    import subprocess
    import sys

    import torch

    def run(state: Path, *extra: str) -> str:
        cmd = [sys.executable, str(SCRIPT), "--state", str(state), "--save-every", "1", "--log-every", "1", "--threads", "1", *extra]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    resumed, fresh = tmp_path / "resumed", tmp_path / "fresh"
    shutil.copytree(STATE_V1, resumed)
    fresh.mkdir()
    shutil.copy(STATE_V1 / "dataset.pt", fresh / "dataset.pt")  # the same photos, from the cache
    same = ("--no-skimage", "--crop", "32", "--batch", "2")  # the earlier command line, less --data (the cache holds it)
    out = run(resumed, "--steps", "3", *same)
    assert "resumed at step 2" in out
    run(fresh, "--steps", "3", "--flags", TINY_V1, *same)
    a = torch.load(resumed / "state.pt", weights_only=True)
    b = torch.load(fresh / "state.pt", weights_only=True)
    assert a["step"] == b["step"] == 3
    # The stored state's first two steps were computed on another machine: float kernels may differ
    # there in the last bits (bit-equal on the machine that wrote it; up to 1.5e-11 absolute on
    # this one, measured 2026-12-03). Losing the optimizer state on resume would move parameters by
    # ~lr = 2e-4 (Adam's normalised step), eight orders of magnitude above this tolerance.
    worst = 0.0
    for part in ("model", "ema"):
        for k in a[part]:
            torch.testing.assert_close(a[part][k], b[part][k], rtol=0, atol=1e-9, msg=f"{part} {k}")
            worst = max(worst, float((a[part][k].double() - b[part][k].double()).abs().max()))
    print(f"largest difference resumed vs uninterrupted: {worst:.3g}")
    assert torch.equal(a["gen"], b["gen"])
    old = torch.load(STATE_V1 / "state.pt", weights_only=True)
    assert any(not torch.equal(old["model"][k], a["model"][k]) for k in a["model"])  # it did train on


def test_export_keeps_the_v1_file_layout_and_init_from_reads_only_invkit_files(tmp_path):
    """--export writes exactly the metadata the earlier script wrote; --init-from reads it back, and refuses other files."""
    import json
    import shutil
    import subprocess
    import sys

    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300)

    old = tmp_path / "old"
    shutil.copytree(STATE_V1, old)
    out = tmp_path / "w.safetensors"
    proc = run("--state", str(old), "--export", str(out))
    assert proc.returncode == 0, proc.stderr
    state = torch.load(STATE_V1 / "state.pt", weights_only=True)
    with safe_open(str(out), framework="pt") as f:  # read independently of invkit's reader
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    assert meta == {  # the layout the script wrote inline before the format had its own module
        "format": "invkit-prior-v1",
        "architecture": "adm",
        "flags": json.dumps(state["config"]),
        "prediction": "epsilon",
        "schedule": json.dumps({"betas": "linear", "beta_start": 1e-4, "beta_end": 0.02, "steps": 1000}),
        "data_range": "[-1, 1]",
        "train_step": "2",
        "train_images_seen": "4",
        "train_seconds": f"{state['seconds']:.0f}",
        "train_thread_seconds": f"{state['thread_seconds']:.0f}",
        "train_crop": "32",
    }
    assert tensors.keys() == state["ema"].keys()
    assert all(tensors[k].dtype == torch.float16 and torch.equal(tensors[k], state["ema"][k].half()) for k in tensors)

    new = tmp_path / "new"
    new.mkdir()
    shutil.copy(STATE_V1 / "dataset.pt", new / "dataset.pt")
    common = ("--flags", TINY_V1, "--no-skimage", "--crop", "32", "--batch", "2", "--threads", "1", "--steps", "3")
    proc = run("--state", str(new), "--init-from", str(out), *common)
    assert proc.returncode == 0, proc.stderr
    assert "initialised from" in proc.stdout and "EMA weights of step 2" in proc.stdout
    assert torch.load(new / "state.pt", weights_only=True)["step"] == 3

    plain = tmp_path / "plain.safetensors"
    save_file({k: v.contiguous() for k, v in state["ema"].items()}, str(plain))  # right tensors, no invkit metadata
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(STATE_V1 / "dataset.pt", other / "dataset.pt")
    proc = run("--state", str(other), "--init-from", str(plain), *common)
    assert proc.returncode != 0 and "is not an invkit prior file" in proc.stderr


def test_eval_loss_uses_common_random_numbers_and_the_training_target(tmp_path, train):
    """``--eval-loss``: the same draw for every file (a copy differs by exactly 0), independent of
    the batch size; untrained weights (ADM's zero-initialised output layer predicts 0) score
    ``E|eps|^2 = 1`` in every band, so the target is the unit-variance noise; trained ones less."""
    import shutil
    import subprocess
    import sys

    import torch

    _train(tmp_path, tmp_path / "fresh", "--steps", "0")
    _train(tmp_path, tmp_path / "fresh", "--export", str(tmp_path / "fresh.safetensors"))
    _train(tmp_path, tmp_path / "trained", "--steps", "30", "--lr", "1e-3", "--warmup", "1")
    _train(tmp_path, tmp_path / "trained", "--export", str(tmp_path / "trained.safetensors"))
    shutil.copy(tmp_path / "trained.safetensors", tmp_path / "copy.safetensors")
    levels, _ = train.load_dataset([tmp_path / "data"], tmp_path / "cache.pt", use_skimage=False, eval_check=False)
    files = [tmp_path / "fresh.safetensors", tmp_path / "trained.safetensors", tmp_path / "copy.safetensors"]
    kw = dict(crops=6, crop=32, per_band=3, p_gray=0.1, device=torch.device("cpu"))
    res = train.eval_loss(files, levels, batch=16, generator=torch.Generator().manual_seed(0), **kw)
    assert res[str(files[0])].shape == (6, 4, 3)
    assert torch.allclose(res[str(files[0])], torch.ones(6, 4, 3), atol=0.12)  # mean of 3072 squared N(0,1)
    assert torch.equal(res[str(files[1])], res[str(files[2])])
    assert res[str(files[1])].mean() < 0.9 * res[str(files[0])].mean()
    again = train.eval_loss(files[1:2], levels, batch=5, generator=torch.Generator().manual_seed(0), **kw)[str(files[1])]
    assert torch.allclose(again, res[str(files[1])], rtol=1e-4, atol=1e-6)  # batch-independent
    table = train.eval_loss_table(res)  # paired differences from the first file: trained is lower
    assert table.count("\n") == 4 and "| trained.safetensors | " in table and "(-" in table
    same = train.eval_loss_table({k: res[str(k)] for k in map(str, files[1:])})
    assert same.splitlines()[-1].count("(+0.0% ± 0.0)") == 5
    # through the command line
    cmd = [sys.executable, str(SCRIPT), "--state", str(tmp_path / "trained"), "--crop", "32", "--threads", "1", "--eval-crops", "4",
           "--eval-loss", *map(str, files)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "loss on 4 crops of 32x32" in proc.stdout and "| fresh.safetensors | 1.0" in proc.stdout
    # held out: the evaluation photos' crops, no training data needed (an empty --state)
    held = subprocess.run([sys.executable, str(SCRIPT), "--state", str(tmp_path / "empty"), "--crop", "32", "--threads", "1",
                           "--eval-crops", "4", "--eval-on", "evaluation", "--eval-loss", *map(str, files[:2])],
                          capture_output=True, text=True, timeout=300)
    assert held.returncode == 0, held.stderr
    assert "dataset: 6 images" in held.stdout and "of the evaluation photos (held out)" in held.stdout
    assert "| fresh.safetensors | 1.0" in held.stdout and "| trained.safetensors | " in held.stdout
    assert not (tmp_path / "empty" / "dataset.pt").exists()
    # a file that is not an exported prior: one line, exit 2, before the data are read
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not safetensors")
    proc = subprocess.run([*cmd[:-3], str(bad)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "not an invkit prior file" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize(("args", "message"), [
    (("--eval-on", "evaluation"), "only with --eval-loss"),
    (("--eval-on", "evaluation", "--data", ".", "--eval-loss", "{w}"), "without --data"),
    (("--all-sizes",), "--all-sizes takes effect when --data"),
    (("--eval-on", "evaluation", "--crop", "640", "--eval-loss", "{w}"), "no image has a pyramid level that large"),
])
def test_eval_and_data_flags_that_would_do_nothing_are_refused(tmp_path, args, message):
    """Flags that would be silently ignored, or a crop no level can give, get one line and exit 2."""
    import subprocess
    import sys

    weights = Path(__file__).resolve().parents[1] / "plugins" / "invkit_priors" / "default" / "weights" / "default.safetensors"
    cmd = [sys.executable, str(SCRIPT), "--state", str(tmp_path / "s"), *(a.format(w=weights) for a in args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_eval_loss_noises_forward_in_t(train, tmp_path, monkeypatch):
    """With a network that returns its input, the loss is |x_t - eps|^2: ~0 where x_t is nearly all
    noise (t >= 600, abar_t <= 0.05) and about |x0 - 0.9 eps|^2 where it is nearly the image (t < 100,
    abar_t >= 0.96): the forward process runs the right way in t, with the training schedule."""
    import torch

    _photo(tmp_path / "d" / "a.png", 8, (128, 100))
    levels, _ = train.load_dataset([tmp_path / "d"], tmp_path / "cache.pt", use_skimage=False, eval_check=False)
    monkeypatch.setattr(train, "_load_weights_model", lambda path, device: (lambda x, t: x))
    res = train.eval_loss([tmp_path / "identity"], levels, crops=4, crop=32, per_band=4, generator=torch.Generator().manual_seed(1),
                          p_gray=0.0, device=torch.device("cpu"))[str(tmp_path / "identity")]
    assert res[:, 3].max() < 0.06 and res[:, 0].min() > 0.5 and (res[:, 0].mean(1) > res[:, 1].mean(1)).all()
    x0 = torch.rand(2, 3, 4, 4) * 2 - 1
    eps = torch.randn(2, 3, 4, 4)
    ab = torch.tensor([0.9, 0.25])
    assert torch.allclose(train.noised(x0, torch.tensor([0, 1]), eps, ab),
                          torch.stack([0.9**0.5 * x0[0] + 0.1**0.5 * eps[0], 0.5 * x0[1] + 0.75**0.5 * eps[1]]))


def test_learning_rate_warms_up_then_decays_by_a_cosine(train):
    lr = lambda step, **kw: train.learning_rate(step, lr=1e-3, warmup=10, warm_from=100, total=200, **kw)  # noqa: E731
    assert lr(100) == pytest.approx(1e-4) and lr(109) == pytest.approx(1e-3) and lr(150) == 1e-3  # warm-up, then flat
    assert lr(199) == 1e-3  # no decay asked
    d = dict(decay_steps=40, lr_min=1e-5)
    assert lr(159, **d) == 1e-3 and lr(199, **d) == pytest.approx(1e-5)  # decay over steps 160..199, the last at lr_min
    assert lr(179, **d) == pytest.approx(1e-5 + (1e-3 - 1e-5) * 0.5)  # halfway: the cosine's midpoint
    rates = [lr(s, **d) for s in range(150, 200)]
    assert all(a >= b for a, b in zip(rates, rates[1:]))
    # a decay that overlaps the warm-up takes the lower of the two
    assert train.learning_rate(0, lr=1e-3, warmup=10, warm_from=0, total=4, decay_steps=4, lr_min=0.0) == pytest.approx(1e-4)


def test_more_steps_and_decay_through_the_command_line(tmp_path):
    import json
    import subprocess
    import sys

    _train(tmp_path, tmp_path / "s", "--steps", "2")
    decay = ("--decay-steps", "3", "--lr", "1e-3", "--lr-min", "1e-5", "--warmup", "1")
    _train(tmp_path, tmp_path / "s", "--more-steps", "4", *decay)
    recs = [json.loads(line) for line in (tmp_path / "s" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs] == [1, 2, 3, 4, 5, 6]
    assert recs[2]["lr"] == pytest.approx(1e-3) and recs[-1]["lr"] == pytest.approx(1e-5)
    assert recs[3]["lr"] > recs[4]["lr"] > recs[5]["lr"]
    # stopped inside the decay and resumed with the same command: it ends where it would have, on the same rates
    _train(tmp_path, tmp_path / "a", "--steps", "2")
    _train(tmp_path, tmp_path / "a", "--more-steps", "4", "--max-minutes", "0", *decay)  # stops after its first step
    _train(tmp_path, tmp_path / "a", "--more-steps", "4", *decay)
    again = [json.loads(line) for line in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in again] == [1, 2, 3, 4, 5, 6] and [r["lr"] for r in again] == [r["lr"] for r in recs]
    # bad values: one line, exit 2
    for bad, why in ((("--more-steps", "3", "--steps", "9"), "not both"), (("--lr-min", "-1e-4"), "--lr-min"),
                     (("--more-steps", "2", "--decay-steps", "5"), "longer than --more-steps"), (("--decay-steps", "-1"), "--decay-steps")):
        proc = subprocess.run([sys.executable, str(SCRIPT), "--state", str(tmp_path / "x"), *bad], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and why in proc.stderr, (bad, proc.stderr)


def test_epsilon_loss_splits_into_channel_means_and_weights_only_their_part(train):
    import torch

    g = torch.Generator().manual_seed(3)
    pred, eps = torch.randn(4, 3, 8, 8, generator=g), torch.randn(4, 3, 8, 8, generator=g)
    t = torch.tensor([10, 499, 500, 900])
    loss, plain, part = train.epsilon_loss(pred, eps, t)
    assert loss is plain  # no extra weight: the plain loss is trained on
    err = pred - eps
    torch.testing.assert_close(plain, err.square().mean(dim=(1, 2, 3)))
    # the exact split: mean(e^2) = (1/C) sum_c mean_c(e)^2 + (1/C) sum_c var_c(e) (population variance)
    rest = err.var(dim=(2, 3), unbiased=False).mean(dim=1)
    torch.testing.assert_close(part + rest, plain)
    torch.testing.assert_close(part, err.mean(dim=(2, 3)).square().mean(dim=1))
    weighted, plain_w, part_w = train.epsilon_loss(pred, eps, t, mean_weight=100.0, mean_from=500)
    torch.testing.assert_close(part_w, part)
    torch.testing.assert_close(plain_w, plain)
    torch.testing.assert_close(weighted[:2], plain[:2])  # below mean_from: the plain loss
    torch.testing.assert_close(weighted[2:], plain[2:] + 100.0 * part[2:])
    # an error with zero channel means gets no extra weight
    centred = pred - err.mean(dim=(2, 3), keepdim=True)
    w_c, _, p_c = train.epsilon_loss(centred, eps, t, mean_weight=100.0, mean_from=0)
    assert float(p_c.abs().max()) < 1e-12
    torch.testing.assert_close(w_c, train.epsilon_loss(centred, eps, t)[0])


def test_mean_weight_trains_on_the_weighted_loss_logs_the_plain_one_and_is_exported(tmp_path):
    import json

    import torch

    _train(tmp_path, tmp_path / "plain", "--steps", "3")
    _train(tmp_path, tmp_path / "weighted", "--steps", "3", "--mean-weight", "100", "--mean-weight-from", "0")
    plain = [json.loads(line) for line in (tmp_path / "plain" / "log.jsonl").read_text().splitlines()]
    weighted = [json.loads(line) for line in (tmp_path / "weighted" / "log.jsonl").read_text().splitlines()]
    # the first step's batch and weights are the same: the logged (plain) loss and its channel-mean part agree
    assert weighted[0]["loss"] == pytest.approx(plain[0]["loss"], rel=1e-6)
    for band, value in plain[0]["band_mean_part"].items():  # None: no sample of the batch in that band
        assert weighted[0]["band_mean_part"][band] == (None if value is None else pytest.approx(value, rel=1e-6))
    assert any(v is not None and v > 0 for v in plain[0]["band_mean_part"].values())
    a = torch.load(tmp_path / "plain" / "state.pt", weights_only=True)
    b = torch.load(tmp_path / "weighted" / "state.pt", weights_only=True)
    assert any(not torch.equal(a["model"][k], b["model"][k]) for k in a["model"])  # trained on another loss
    assert a["mean_weight_steps"] == 0 and b["mean_weight_steps"] == 3
    for name, expected in (("plain", None), ("weighted", "3")):
        assert _export_metadata(tmp_path, name).get("train_mean_weight_steps") == expected


def test_a_negative_mean_weight_is_refused(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, str(SCRIPT), "--state", str(tmp_path / "s"), "--mean-weight", "-1"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--mean-weight -1.0: must be >= 0" in proc.stderr


def test_the_head_runs_in_float32_under_autocast_also_in_a_copy(train):
    import copy
    import json

    import torch

    from invkit_priors.networks.adm import ADMConfig, ADMUNet

    torch.manual_seed(0)
    model = ADMUNet(ADMConfig.from_flags(json.loads(TINY)))
    with torch.no_grad():
        model.out[-1].weight.normal_(0, 0.1)  # ADM starts the last convolution at zero
    h = torch.randn(2, model.out[-1].in_channels, 8, 8)
    exact = model.out(h)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        rounded = model.out(h)  # autocast: the convolution in bfloat16
    assert rounded.dtype == torch.bfloat16 and not torch.equal(rounded.float(), exact)
    train.run_head_in_float32(model)
    train.run_head_in_float32(model)  # a second call changes nothing
    with torch.autocast("cpu", dtype=torch.bfloat16):
        head = model.out(h.bfloat16())  # a bfloat16 torso's output comes in
    assert head.dtype == torch.float32
    torch.testing.assert_close(head, model.out(h.bfloat16().float()))  # the float32 head on the rounded input
    twin = copy.deepcopy(model)  # e.g. an EMA copy: runs its own head, in float32
    with torch.no_grad():
        twin.out[-1].bias.fill_(7.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        twin_head = twin.out(h.bfloat16())
    assert twin_head.dtype == torch.float32
    torch.testing.assert_close(twin_head - head, torch.full_like(head, 7.0) - model.out[-1].bias.view(1, -1, 1, 1))


def test_predict_in_bfloat16_is_float32_close_and_rounded(train):
    import json

    import torch

    from invkit_priors.networks.adm import ADMConfig, ADMUNet

    torch.manual_seed(0)
    model = ADMUNet(ADMConfig.from_flags(json.loads(TINY)))
    with torch.no_grad():
        model.out[-1].weight.normal_(0, 0.1)
    xt, t = torch.randn(2, 3, 32, 32), torch.tensor([10, 900])
    with torch.no_grad():
        exact = train.predict(model, xt, t)
        rounded = train.predict(model, xt, t, bfloat16=True)
    assert rounded.dtype == torch.float32 and not torch.equal(rounded, exact)
    assert float((rounded - exact).norm() / exact.norm()) < 0.05


def test_bfloat16_training_logs_a_close_loss_resumes_exactly_and_is_exported(tmp_path):
    import json

    import torch

    fast = ("--lr", "1e-3", "--warmup", "0")  # so that two steps move the output off ADM's zero start
    _train(tmp_path, tmp_path / "f32", "--steps", "3", *fast)
    _train(tmp_path, tmp_path / "bf16", "--steps", "3", "--precision", "bfloat16", *fast)
    _train(tmp_path, tmp_path / "bf16_resumed", "--steps", "2", "--precision", "bfloat16", *fast)
    _train(tmp_path, tmp_path / "bf16_resumed", "--steps", "3", "--precision", "bfloat16", *fast)
    f32 = [json.loads(line) for line in (tmp_path / "f32" / "log.jsonl").read_text().splitlines()]
    bf16 = [json.loads(line) for line in (tmp_path / "bf16" / "log.jsonl").read_text().splitlines()]
    assert f32[0]["precision"] == "float32" and bf16[0]["precision"] == "bfloat16"
    # the same batches; the first step's loss is equal (ADM's last convolution starts at zero), the
    # third's moved by bfloat16 rounding, but little
    assert bf16[0]["loss"] == f32[0]["loss"]
    assert bf16[2]["loss"] != f32[2]["loss"] and bf16[2]["loss"] == pytest.approx(f32[2]["loss"], rel=0.02)
    a = torch.load(tmp_path / "bf16" / "state.pt", weights_only=True)
    b = torch.load(tmp_path / "bf16_resumed" / "state.pt", weights_only=True)
    c = torch.load(tmp_path / "f32" / "state.pt", weights_only=True)
    assert all(v.dtype == torch.float32 for v in a["model"].values())  # float32 master weights
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]) and torch.equal(a["ema"][k], b["ema"][k]), k
    assert any(not torch.equal(a["model"][k], c["model"][k]) for k in a["model"])
    assert a["bfloat16_steps"] == 3 and c["bfloat16_steps"] == 0
    for name, expected in (("f32", None), ("bf16", "3")):
        assert _export_metadata(tmp_path, name).get("train_bfloat16_steps") == expected
    # a float32 state resumed in bfloat16 says so and counts only the new steps
    said = _train(tmp_path, tmp_path / "f32", "--steps", "4", "--precision", "bfloat16", *fast)
    assert "the state's last run trained in float32; this one trains in bfloat16" in said
    assert torch.load(tmp_path / "f32" / "state.pt", weights_only=True)["bfloat16_steps"] == 1
    # --init-from carries the count on
    _train(tmp_path, tmp_path / "continued", "--steps", "4", "--init-from", str(tmp_path / "bf16.safetensors"))
    assert torch.load(tmp_path / "continued" / "state.pt", weights_only=True)["bfloat16_steps"] == 3
