"""Every public checkpoint of the catalogue is a prior name: `--prior adm-ffhq256` after `invkit prior fetch`."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from invkit.registry import Registry


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("INVKIT_CACHE", str(tmp_path))
    return tmp_path


def test_catalogue_entries_are_registered_priors():
    reg = Registry()
    names = reg.names("prior")
    assert {"adm-ffhq256", "adm-imagenet256-uncond", "ddpm-celebahq256"} <= set(names)
    assert "invkit prior fetch adm-ffhq256" in reg.get("prior", "adm-ffhq256").summary


def test_not_downloaded_names_the_fetch_command(cache):
    with pytest.raises(FileNotFoundError, match=r"prior 'adm-ffhq256' is not downloaded yet: run `invkit prior fetch adm-ffhq256`"):
        Registry().build("prior", "adm-ffhq256")
    env = {**os.environ, "INVKIT_CACHE": str(cache)}
    img = cache / "in.png"
    from invkit.io import write_image

    write_image(img, torch.full((1, 3, 16, 16), 0.5))
    proc = subprocess.run([sys.executable, "-m", "invkit", "solve", "--operator", "denoising", "--prior", "adm-ffhq256", "--input", str(img), "--output", str(cache / "o.png")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2 and "invkit prior fetch adm-ffhq256" in proc.stderr and "Traceback" not in proc.stderr


def test_a_wrong_file_in_the_cache_is_refused_strictly(cache):
    from invkit_priors.checkpoints.download import cached_path

    path = cached_path("adm-ffhq256")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"time_embed.0.weight": torch.zeros(3, 3)}, path)
    with pytest.raises(Exception, match=r"missing"):
        Registry().build("prior", "adm-ffhq256")
