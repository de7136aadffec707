"""The default prior's training script: its dataset cache follows the data folders; refusals."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "train_default_prior.py"


@pytest.fixture(scope="module")
def train():
    spec = importlib.util.spec_from_file_location("train_default_prior", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


def test_reserved_images_are_refused(train, tmp_path):
    with pytest.raises(SystemExit, match="mate-backgrounds is reserved"):
        train.find_images([tmp_path / "usr" / "share" / "mate-backgrounds"])
    _photo(tmp_path / "x" / "backgrounds" / "mate-backgrounds" / "p.png", 3)
    _photo(tmp_path / "x" / "ok.png", 4)
    assert [p.name for p in train.find_images([tmp_path / "x"])] == ["ok.png"]
    assert not set(train.TRAIN_SKIMAGE) & train.EVALUATION_SKIMAGE
