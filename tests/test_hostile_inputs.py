"""Hostile and oversized inputs are refused in one line with exit code 2, before anything large
is allocated (issue 17).

Sizes are checked from the image file's header (:func:`invkit.io.image_size`) after working out
what ``--resize``/``--crop`` and the operator (a super-resolution factor) make of them; the
advice in a refusal names an option that works when followed.
"""

from __future__ import annotations

import importlib
import os
import re
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from invkit.cli import main
from invkit.io import image_size, read_image, write_measurement, Measurement

GAUSS = ["--prior", "gaussian", "--prior-arg", "kind=isotropic"]


def _limited(args: list[str], limit_bytes: int = 1 << 30, timeout: float = 60.0) -> subprocess.CompletedProcess:
    """``invkit ARGS`` in a subprocess whose address space is capped (RLIMIT_AS) and time bounded."""

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))

    env = {k: v for k, v in os.environ.items() if k != "INVKIT_BLOCK_PLUGINS"}
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run([sys.executable, "-m", "invkit", *args], capture_output=True, text=True, timeout=timeout,
                          preexec_fn=cap, env=env)


@pytest.fixture(scope="module")
def small_png(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("hostile") / "small.png"
    Image.new("RGB", (64, 64), (100, 120, 140)).save(path)
    return path


@pytest.fixture(scope="module")
def huge_png(tmp_path_factory) -> Path:
    """A 12000 × 12000 grey PNG: ~140 KB on disk, 144 MP (1.15 GB as float64) decoded."""
    path = tmp_path_factory.mktemp("hostile") / "huge.png"
    Image.new("L", (12000, 12000), 0).save(path)
    return path


def test_image_size_reads_the_header_only(huge_png, tmp_path):
    """The header gives the size read_image would return, the EXIF rotation included, for a
    file whose decoding alone would exceed a 1 GiB address space."""
    assert image_size(huge_png) == (1, 12000, 12000)
    probe = subprocess.run(
        [sys.executable, "-c", f"import resource; resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30)); "
         f"from invkit.io import image_size; print(image_size({str(huge_png)!r}))"],
        capture_output=True, text=True, timeout=60,
    )
    assert probe.returncode == 0 and probe.stdout.strip() == "(1, 12000, 12000)", probe.stderr[-2000:]
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90°: read_image returns it upright, H and W swapped
    for suffix in (".jpg", ".png"):
        path = tmp_path / f"rotated{suffix}"
        Image.new("RGB", (40, 20)).save(path, exif=exif)
        assert image_size(path) == tuple(read_image(path).x.shape[1:]) == (3, 40, 20)
    grey16 = tmp_path / "g16.png"
    Image.new("I;16", (30, 10)).save(grey16)
    assert image_size(grey16) == tuple(read_image(grey16).x.shape[1:]) == (1, 10, 30)


@pytest.mark.parametrize("case", ["resize-20000", "resize-100000", "12000-squared"])
def test_oversized_work_is_refused_under_a_1_gib_address_space(case, small_png, huge_png, tmp_path):
    """Each was an allocation of 9.6 GB, 240 GB or a MemoryError (exit 1) before the size check."""
    out = tmp_path / "o.png"
    if case == "12000-squared":
        args = ["--input", str(huge_png)]
    else:
        args = ["--input", str(small_png), "--resize", case.split("-")[1]]
    proc = _limited(["solve", "--operator", "denoising", *GAUSS, "--output", str(out), *args])
    assert proc.returncode == 2, proc.stderr[-3000:]
    msg = proc.stderr.strip()
    assert len(msg.splitlines()) == 1 and "Traceback" not in msg
    assert "over --max-megapixels 16" in msg and "--resize 4000" in msg
    assert not out.exists()


def test_super_resolution_advice_restores_within_the_limit(small_png, tmp_path, capsys):
    """SR ×40 of a 64² measurement: the advised --resize is in measurement pixels (50, restored
    at 2000²), not 2000 (which restored 80000² and gave the same advice again)."""
    out = tmp_path / "o.png"
    code = main(["solve", "--operator", "super_resolution", "--arg", "factor=40", *GAUSS, "--input", str(small_png), "--output", str(out),
                 "--max-megapixels", "4"])
    err = capsys.readouterr().err
    assert code == 2 and "is 2560x2560 pixels" in err, err
    n = int(re.search(r"--resize (\d+)", err).group(1))
    assert n == 50 and "restored at 2000" in err
    assert (n * 40) ** 2 <= 4e6
    # following it restores at 2000² (one step of the cheap Gaussian prior)
    code = main(["solve", "--operator", "super_resolution", "--arg", "factor=40", *GAUSS, "--input", str(small_png), "--output", str(out),
                 "--resize", str(n), "--steps", "1", "--sigma-y", "0.01"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert Image.open(out).size == (2000, 2000)


def test_compact_measurement_advice_does_not_name_resize(tmp_path, capsys):
    """A .safetensors measurement cannot be resized (--resize is refused for it): the advice says to
    make the measurement smaller instead; and the operator is never built at the huge size."""
    path = tmp_path / "m.safetensors"
    y = torch.zeros(1, 3, 100, 100)
    write_measurement(path, Measurement(y=y, operator="super_resolution", params={"factor": 40}, in_shape=(3, 4000, 4000)))
    code = main(["solve", *GAUSS, "--input", str(path), "--output", str(tmp_path / "o.png"), "--max-megapixels", "4"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "is 4000x4000 pixels" in err and "--resize" not in err and "make the measurement from an image of at most" in err


def test_decompression_bomb_is_a_bad_input(small_png, tmp_path, capsys, monkeypatch):
    """Pillow's decompression-bomb refusal (over 2 × MAX_IMAGE_PIXELS) was an internal error (exit 1)."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # the 64² file is then a "bomb"
    code = main(["solve", "--operator", "denoising", *GAUSS, "--sigma-y", "0.01", "--input", str(small_png), "--output", str(tmp_path / "o.png")])
    err = capsys.readouterr().err
    assert code == 2 and "decompression bomb" in err.lower() and "Downscale it" in err, err
    assert Image.MAX_IMAGE_PIXELS == 1000  # image_size restores Pillow's limit


# ------------------------------------------------------------------ files a run reads or writes
@pytest.fixture
def holes(tmp_path) -> Path:
    path = tmp_path / "holes.png"
    Image.fromarray(((torch.arange(64 * 64).reshape(64, 64) % 3 > 0).numpy() * 255).astype("uint8")).save(path)
    return path


@pytest.mark.parametrize("command", ["solve", "degrade"])
def test_operator_input_files_are_never_overwritten(command, small_png, holes, capsys):
    """--output equal to the mask_file (with --force) overwrote it; every file a run reads is an input."""
    before = holes.read_bytes()
    extra = [*GAUSS, "--sigma-y", "0"] if command == "solve" else []
    code = main([command, "--operator", "inpainting", "--arg", "mask=file", "--arg", f"mask_file={holes}", *extra,
                 "--input", str(small_png), "--output", str(holes), "--force"])
    err = capsys.readouterr().err
    assert code == 2 and "is a file the run reads (an operator argument)" in err, err
    assert holes.read_bytes() == before
    # the std map and figure of a solve are outputs too
    code = main(["solve", "--operator", "inpainting", "--arg", "mask=file", "--arg", f"mask_file={holes}", *GAUSS, "--sigma-y", "0",
                 "--input", str(small_png), "--output", str(holes.with_name("x.png")), "--figure", str(holes), "--force"])
    err = capsys.readouterr().err
    assert code == 2 and "is a file the run reads (an operator argument)" in err and holes.read_bytes() == before, err


def test_an_unwritable_output_folder_is_found_before_any_work(small_png, tmp_path, capsys, monkeypatch):
    """A folder that cannot be written was found only after the solve, naming the temp file.
    The fault is injected where files are created (root ignores permissions here)."""
    import invkit.runner.files as files

    calls = []

    def refuse(*args, **kwargs):
        calls.append(kwargs.get("dir"))
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(files.tempfile, "mkstemp", refuse)
    started = []
    restore_module = importlib.import_module("invkit.runner.restore")  # (invkit.runner.restore is also the function)
    monkeypatch.setattr(restore_module, "prepare", lambda *a, **k: started.append(1))  # reading the input: the first work
    out = tmp_path / "out" / "o.png"
    out.parent.mkdir()
    code = main(["solve", "--operator", "denoising", *GAUSS, "--sigma-y", "0.01", "--input", str(small_png), "--output", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and f"cannot write into folder {out.parent}: Permission denied" in err, err
    assert calls == [out.parent] and not started


@pytest.mark.skipif(subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode != 0 if shutil.which("unshare") else True,
                    reason="needs a private mount namespace (unshare -m)")
def test_a_read_only_mount_is_refused_before_any_work(small_png, tmp_path):
    """A real read-only tmpfs in a private mount namespace: exit 2 with one line, nothing computed."""
    ro = tmp_path / "ro"
    ro.mkdir()
    script = (f"mount -t tmpfs -o ro tmpfs {ro} && exec {sys.executable} -m invkit solve --operator denoising "
              f"--prior gaussian --prior-arg kind=isotropic --sigma-y 0.01 --input {small_png} --output {ro}/o.png")
    proc = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == f"invkit: error: cannot write into folder {ro}: Read-only file system; choose another output folder"


# ------------------------------------------------------------------ malformed measurement files
def _measurement(tmp_path: Path, name: str = "m.safetensors") -> Path:
    path = tmp_path / name
    y = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    write_measurement(path, Measurement(y=y, operator="gaussian_blur", params={"sigma": 1.0}, in_shape=(1, 8, 8), sigma_y=0.05))
    return path


def _with_metadata(src: Path, dst: Path, change: dict[str, str | None]) -> Path:
    """A copy of a measurement file with metadata fields replaced (None: removed)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(src), framework="pt") as f:
        meta, y = dict(f.metadata()), f.get_tensor("y")
    for key, value in change.items():
        if value is None:
            meta.pop(key, None)
        else:
            meta[key] = value
    save_file({"y": y}, str(dst), metadata=meta)
    return dst


@pytest.mark.parametrize(
    "field,value,says",
    [
        ("params", "[1, 2]", "field 'params' is [1, 2], expected an object of parameter values"),
        ("params", "{sigma: 2}", "field 'params' is not JSON"),
        ("bits", '"x"', """field 'bits' is "x", expected 8, 16, 32 or null"""),
        ("in_shape", "[1, 8]", "field 'in_shape' is [1, 8], expected the image shape [C, H, W]"),
        ("operator", "5", "field 'operator' is 5, expected an operator name"),
        ("sigma_y", "-1", "field 'sigma_y' is -1, expected a noise std"),
        ("noise", '{"name": "gaussian", "sigma": -1}', "field 'noise' is broken"),
    ],
)
def test_malformed_measurement_fields_are_named(field, value, says, tmp_path, capsys):
    """Each was a KeyError/TypeError (exit 1), a message naming neither file nor field, or blamed --sigma-y."""
    bad = _with_metadata(_measurement(tmp_path), tmp_path / "bad.safetensors", {field: value})
    code = main(["solve", *GAUSS, "--steps", "1", "--input", str(bad), "--output", str(tmp_path / "o.png")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"measurement {bad}: {says}" in err and "--sigma-y" not in err


@pytest.mark.parametrize("field", ["operator", "in_shape", "params", "sigma_y", "bits"])
def test_a_missing_field_is_not_an_internal_error(field, tmp_path, capsys):
    """A missing operator or in_shape was a KeyError (exit 1); now the field counts as unknown."""
    bad = _with_metadata(_measurement(tmp_path), tmp_path / "bad.safetensors", {field: None})
    code = main(["solve", *GAUSS, "--steps", "1", "--input", str(bad), "--output", str(tmp_path / "o.png")])
    err = capsys.readouterr().err
    assert code in (0, 2) and "Traceback" not in err and "internal error" not in err.lower(), err
    if field == "operator":
        assert code == 2 and "pass --operator NAME" in err


def test_fuzzed_measurement_metadata_and_arguments_exit_0_or_2(tmp_path, capsys):
    """Hypothesis (derandomized, bounded) mutates a valid file's metadata and the --arg strings:
    every run ends with exit 0 or 2 and no traceback. Reports how many reached field validation."""
    hypothesis = pytest.importorskip("hypothesis")
    from hypothesis import strategies as st

    good = _measurement(tmp_path, "good.safetensors")
    json_values = st.recursive(
        st.none() | st.booleans() | st.integers(-3, 20) | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=6),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=2),
        max_leaves=4,
    )
    raw = st.one_of(json_values.map(lambda v: __import__("json").dumps(v)), st.text(max_size=10))
    fields = st.sampled_from(["operator", "params", "in_shape", "sigma_y", "bits", "noise", "format"])
    keys = st.sampled_from(["sigma", "kernel", "size", "mask", "factor", "nonsense", ""])
    arg = st.tuples(keys, st.text(alphabet="0123456789.-e=xa,", max_size=6)).map(lambda kv: f"{kv[0]}={kv[1]}")
    outcomes: list[tuple[int, bool]] = []
    counter = iter(range(10**6))

    @hypothesis.settings(max_examples=60, derandomize=True, deadline=None, database=None,
                         suppress_health_check=list(hypothesis.HealthCheck))
    @hypothesis.given(change=st.dictionaries(fields, st.none() | raw, min_size=1, max_size=2), args=st.lists(arg, max_size=2))
    def run(change, args):
        i = next(counter)
        bad = _with_metadata(good, tmp_path / f"f{i}.safetensors", change)
        argv = ["solve", *GAUSS, "--steps", "1", "--input", str(bad), "--output", str(tmp_path / f"o{i}.png")]
        for a in args:
            argv += ["--arg", a]
        code = main(argv)
        err = capsys.readouterr().err
        assert code in (0, 2), (change, args, err)
        assert "Traceback" not in err and "internal error" not in err.lower(), (change, args, err)
        outcomes.append((code, "field '" in err))

    run()
    reached = sum(1 for _, named in outcomes if named)
    print(f"{len(outcomes)} examples: {sum(c == 0 for c, _ in outcomes)} ran, {reached} refused by a field check")
    assert len(outcomes) >= 60 and reached > 0


# ------------------------------------------------------------------ smaller ones (defect 10)
@pytest.mark.parametrize(
    "argv,says",
    [
        (["solve", "--operator", "gaussian_blur", "--arg", "sigma=1", "--arg", "sigma=2"], "argument 'sigma' is given twice (sigma=1 and sigma=2)"),
        (["degrade", "--operator", "gaussian_blur", "--arg", "sigma=1", "--arg", "sigma=2"], "argument 'sigma' is given twice"),
        (["solve", "--operator", "denoising", "--sigma-y", "1e6"], "--sigma-y 1e+06 is in [0, 1] pixel units"),
        (["solve", "--operator", "denoising", "--sigma-y", "25"], "in 8-bit units 25 is --sigma-y 0.09804"),
        (["degrade", "--operator", "denoising", "--sigma-y", "2"], "--sigma-y 2 is in [0, 1] pixel units"),
    ],
)
def test_small_mistakes_are_refused_in_one_line(argv, says, small_png, tmp_path, capsys):
    code = main([*argv, "--input", str(small_png), "--output", str(tmp_path / "o.png")])
    err = capsys.readouterr().err
    assert code == 2 and says in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o.png").exists()


def test_the_same_argument_twice_with_one_value_is_fine():
    from invkit.params import parse_kv

    assert parse_kv(["sigma=1", "sigma=1"]) == {"sigma": "1"}


def test_version_and_a_negative_tolerance(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    import invkit

    assert capsys.readouterr().out.startswith(f"invkit {invkit.__version__} (torch {torch.__version__}, Python ")
    with pytest.raises(SystemExit) as exc:
        main(["check-operator", "blur", "--tol", "-1"])
    assert exc.value.code == 2 and "tolerance '-1' is not a positive number" in capsys.readouterr().err


# ------------------------------------------------------------------ all or nothing, no clobber (defect 7)
def test_output_transaction_is_all_or_nothing(tmp_path, monkeypatch):
    """The primitive, deterministically: a failed move undoes the moved files (an overwritten one
    comes back), removes the temporaries and names the file; without overwrite a file that
    appeared meanwhile is never clobbered."""
    import errno

    import invkit.io as io

    a, b, c = tmp_path / "a.txt", tmp_path / "b.txt", tmp_path / "c.txt"
    b.write_text("old b")
    real_replace = os.replace

    def full_disk_on_c(src, dst):
        if Path(dst) == c:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(io.os, "replace", full_disk_on_c)
    with pytest.raises(OSError, match=f"cannot write {c}: No space left on device; none of the files written with it were kept"):
        with io.output_transaction(overwrite=True):
            for path in (a, b, c):
                io.atomic_write(path, lambda tmp, p=path: tmp.write_text("new " + p.stem))
    monkeypatch.setattr(io.os, "replace", real_replace)
    assert not a.exists() and b.read_text() == "old b" and not c.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.txt"]  # no temporaries, no backups left

    # an exception inside the block: nothing appears
    with pytest.raises(KeyboardInterrupt):
        with io.output_transaction(overwrite=False):
            io.atomic_write(a, lambda tmp: tmp.write_text("a"))
            raise KeyboardInterrupt
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.txt"]

    # exclusive creation: the destination appears between the check and the write (another run)
    with pytest.raises(FileExistsError, match="another run wrote it meanwhile"):
        with io.output_transaction(overwrite=False):
            io.atomic_write(a, lambda tmp: tmp.write_text("mine"))
            a.write_text("theirs")
    assert a.read_text() == "theirs" and sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt"]


def test_a_failing_sample_file_leaves_no_outputs(small_png, tmp_path, capsys, monkeypatch):
    """Today's failure: a full disk while writing the samples left o.png and o_std.png and named no file."""
    import errno

    import invkit.io as io

    out = tmp_path / "o.png"
    from PIL import Image as PILImage

    original_save = PILImage.Image.save

    def save(self, fp, *args, **kwargs):
        if "o_sample2.png" in Path(str(fp)).name:  # the second sample's temporary, after o.png and o_std.png
            raise OSError(errno.ENOSPC, "No space left on device")
        return original_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(PILImage.Image, "save", save)
    code = main(["solve", "--operator", "denoising", *GAUSS, "--sigma-y", "0.05", "--steps", "2", "--samples", "3",
                 "--input", str(small_png), "--output", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "o_sample2.png: No space left on device; none of the files written with it were kept" in err, err
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ batches: resume and keep going (defect 8)
def test_a_folder_run_keeps_going_and_resumes(tmp_path, capsys):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    for i, colour in enumerate(((200, 10, 10), (10, 200, 10))):
        Image.new("RGB", (32, 32), colour).save(src / f"good{i}.png")
    (src / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    base = ["solve", "--operator", "denoising", *GAUSS, "--sigma-y", "0.05", "--steps", "1", "--input", str(src), "--output", str(out)]
    # one unreadable image refuses the whole batch before any work
    assert main(base) == 2
    err = capsys.readouterr().err
    assert "bad.png" in err and not out.exists()
    # --keep-going: the others are restored, the failure listed at the end, exit 2
    assert main([*base, "--keep-going"]) == 2
    err = capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["good0.png", "good1.png"]
    assert "1 of 3 input(s) failed (the others were restored): bad.png: cannot read image" in err.strip().splitlines()[-1]
    # an interrupted run: one output missing; --skip-existing restores only that one
    (out / "good1.png").unlink()
    before = (out / "good0.png").stat().st_mtime_ns
    assert main([*base, "--keep-going", "--skip-existing"]) == 2  # bad.png still fails
    err = capsys.readouterr().err
    assert "skipping 1 of 3 input(s) whose outputs all exist (--skip-existing): good0.png" in err
    assert (out / "good1.png").exists() and (out / "good0.png").stat().st_mtime_ns == before
    # without --skip-existing (or --force) the existing outputs are refused, as before
    src.joinpath("bad.png").unlink()
    assert main(base) == 2 and "exists" in capsys.readouterr().err
    assert main([*base, "--skip-existing"]) == 0
    assert "skipping 2 of 2" in capsys.readouterr().err


# ------------------------------------------------------------------ plugins that misbehave (defect 9)
def test_misbehaving_plugins_are_contained(tmp_path, monkeypatch, capsys):
    """sys.exit() at import ended the CLI silently; a plugin printing to stdout broke --json; an
    import failure was warned twice (once as a raw Python warning). Now: one warning line each,
    stdout clean, the CLI goes on."""
    import importlib.metadata as md
    import json as _json

    import invkit.registry as registry_module

    (tmp_path / "acme_exits.py").write_text("import sys\nprint('exiting now')\nsys.exit(3)\n")
    (tmp_path / "acme_loud.py").write_text(
        "import invkit\nprint('hello from import')\n"
        "@invkit.hookimpl\n"
        "def invkit_register_operators(register):\n"
        "    print('hello from registration')\n"
        "    raise SystemExit(4)\n"
    )
    (tmp_path / "acme_broken.py").write_text("raise ImportError('no module named acme_dep')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    fake = [md.EntryPoint(name=n, value=n, group="invkit") for n in ("acme_exits", "acme_loud", "acme_broken")]
    real = registry_module.importlib.metadata.entry_points
    monkeypatch.setattr(registry_module.importlib.metadata, "entry_points", lambda group: [*real(group=group), *fake])
    registry_module.reset_registry()
    try:
        code = main(["plugins", "--json"])
    finally:
        registry_module.reset_registry()
    out, err = capsys.readouterr()
    assert code == 0
    _json.loads(out)  # stdout is the JSON alone
    lines = err.strip().splitlines()
    for name, cause in (("acme_exits", "SystemExit: 3"), ("acme_broken", "ImportError: no module named acme_dep"), ("acme_loud", "SystemExit: 4")):
        mine = [line for line in lines if f"plugin '{name}'" in line]
        assert len(mine) == 1 and cause in mine[0], (name, lines)
    assert not any("Warning" in line or line.startswith(" ") for line in lines), lines  # no raw Python warnings
    assert "hello from import" in err and "hello from registration" in err and "exiting now" in err


def test_a_raw_pickle_is_named_as_such_without_torch_noise(small_png, tmp_path, capsys):
    """A plain pickle (not torch.save) leaked torch's pickle-protocol warning and was called "truncated"."""
    import pickle

    raw = tmp_path / "weights.bin"
    raw.write_bytes(pickle.dumps({"a": 1}, protocol=4))
    code = main(["solve", "--operator", "denoising", "--prior", str(raw), "--sigma-y", "0.01", "--input", str(small_png), "--output", str(tmp_path / "o.png")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "is a plain Python pickle, not a PyTorch checkpoint" in err and "truncated" not in err and "Warning" not in err
    legacy = tmp_path / "legacy.bin"  # a legacy (non-zip) torch.save file is still read as a checkpoint
    torch.save({"a": torch.zeros(2)}, legacy, _use_new_zipfile_serialization=False)
    code = main(["solve", "--operator", "denoising", "--prior", str(legacy), "--sigma-y", "0.01", "--input", str(small_png), "--output", str(tmp_path / "o.png")])
    err = capsys.readouterr().err
    assert code == 2 and "cannot tell the architecture from its keys" in err


# ------------------------------------------------------------------ silent skips (defect 6)
def test_a_folder_reads_what_pillow_reads_and_names_what_it_skips(tmp_path, capsys):
    """WebP was silently skipped in a folder while a single WebP file was refused."""
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    Image.new("RGB", (32, 32), (200, 10, 10)).save(src / "a.webp", lossless=True)
    Image.new("RGB", (32, 32), (10, 200, 10)).save(src / "b.png")
    (src / "notes.txt").write_text("not an image")
    base = ["solve", "--operator", "denoising", *GAUSS, "--sigma-y", "0.05", "--steps", "1"]
    assert main([*base, "--input", str(src), "--output", str(out)]) == 0
    err = capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png"]
    assert "skipping 1 file(s) that are not images or measurements (or are views beside a measurement): notes.txt" in err
    assert main([*base, "--input", str(src / "a.webp"), "--output", str(tmp_path / "single.png")]) == 0


@pytest.mark.parametrize("orientation", range(1, 9))
def test_16_bit_grey_follows_its_exif_orientation_like_8_bit(orientation, tmp_path):
    """16-bit grayscale ignored its EXIF orientation (8-bit was rotated by Pillow's exif_transpose)."""
    import numpy as np

    a8 = np.random.default_rng(orientation).integers(0, 256, (10, 17)).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(a8).save(tmp_path / "g8.png", exif=exif)
    Image.fromarray(a8.astype(np.uint16) * 257).save(tmp_path / "g16.png", exif=exif)
    assert Image.open(tmp_path / "g16.png").mode.startswith("I;16")
    x8, x16 = read_image(tmp_path / "g8.png"), read_image(tmp_path / "g16.png")
    assert x16.bits == 16 and torch.allclose(x8.x, x16.x, atol=1e-6)
    assert image_size(tmp_path / "g16.png") == tuple(x16.x.shape[1:])


def test_a_dropped_alpha_channel_is_said(tmp_path, capsys):
    """RGBA alpha was dropped without a note."""
    src = tmp_path / "rgba.png"
    Image.new("RGBA", (32, 32), (100, 120, 140, 128)).save(src)
    Image.new("RGB", (8, 8)).save(tmp_path / "rgb.png")
    assert read_image(src).alpha and not read_image(tmp_path / "rgb.png").alpha
    code = main(["solve", "--operator", "denoising", *GAUSS, "--sigma-y", "0.05", "--steps", "1", "--input", str(src), "--output", str(tmp_path / "o.png")])
    assert code == 0 and "rgba.png: its alpha channel (transparency) was dropped" in capsys.readouterr().err


def test_the_resize_before_a_crop_is_size_checked_too(small_png, tmp_path, capsys):
    """--resize 3000 --crop 0,0,64,64 resized to 3000² (unchecked) before cropping; the resize allocates it."""
    code = main(["solve", "--operator", "denoising", *GAUSS, "--sigma-y", "0.05", "--input", str(small_png), "--output", str(tmp_path / "o.png"),
                 "--resize", "3000", "--crop", "0,0,64,64", "--max-megapixels", "0.01"])
    err = capsys.readouterr().err
    assert code == 2 and "3000x3000 after --resize, before --crop" in err and not (tmp_path / "o.png").exists()


def test_a_recorded_sigma_y_above_one_blames_the_file(tmp_path, capsys):
    bad = _with_metadata(_measurement(tmp_path), tmp_path / "bad.safetensors", {"sigma_y": "5"})
    code = main(["solve", *GAUSS, "--steps", "1", "--input", str(bad), "--output", str(tmp_path / "o.png")])
    err = capsys.readouterr().err
    assert code == 2 and f"measurement {bad}: field 'sigma_y' is 5" in err and "--sigma-y" not in err


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_legacy_torch_files_of_any_pickle_protocol_are_checkpoints(protocol, tmp_path):
    """Only protocol 2 was recognised as a legacy torch.save file; the others were called plain pickles."""
    from invkit_priors.checkpoints.safe_load import _plain_pickle
    import pickle

    legacy = tmp_path / "legacy.bin"
    torch.save({"a": torch.zeros(2)}, legacy, _use_new_zipfile_serialization=False, pickle_protocol=protocol)
    raw = tmp_path / "raw.bin"
    raw.write_bytes(pickle.dumps({"a": 1}, protocol=protocol))
    assert not _plain_pickle(legacy) and _plain_pickle(raw)


# ------------------------------------------------------------------ follow-ups of the review
@pytest.mark.parametrize("command", ["solve", "degrade"])
def test_a_kernel_file_error_is_not_called_a_size_problem(command, small_png, tmp_path, capsys):
    """A kernel file that cannot be read said 'measurement ... is 64x64: ...; resize it with --resize H,W':
    no size fixes a parameter (:class:`invkit.ParamError`), so only its reason is said."""
    bad = tmp_path / "k.png"
    bad.write_text("not an image")
    extra = [*GAUSS, "--sigma-y", "0.01"] if command == "solve" else []
    code = main([command, "--operator", "blur", "--arg", "kernel=file", "--arg", f"kernel_file={bad}", *extra,
                 "--input", str(small_png), "--output", str(tmp_path / "o.png")])
    err = capsys.readouterr().err
    assert code == 2 and "cannot read kernel_file" in err and "resize" not in err and "x64" not in err, err


def test_degrade_advice_names_what_degrade_can_do(tmp_path, capsys):
    """degrade said 'pad or crop the image' as if it had --crop/--pad; it names what does."""
    src = tmp_path / "odd.png"
    Image.new("RGB", (60, 60), (10, 20, 30)).save(src)
    code = main(["degrade", "--operator", "compressed_sensing", "--input", str(src), "--output", str(tmp_path / "m.safetensors")])
    err = capsys.readouterr().err
    assert code == 2 and "crop or pad the file first" in err and "`invkit solve --simulate`, which has --crop, --pad and --resize" in err, err


def test_one_input_into_an_output_folder_is_created(small_png, tmp_path, capsys):
    """solve --help says a folder --output is created if needed; with one input it was refused."""
    out = tmp_path / "restored" / "deeper"
    code = main(["solve", "--operator", "denoising", *GAUSS, "--sigma-y", "0.1", "--steps", "2",
                 "--input", str(small_png), "--output", f"{out}/"])
    assert code == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == [f"{small_png.stem}.png"]
    # an image name still needs its folder (a typo in the folder is not silently created)
    code = main(["solve", "--operator", "denoising", *GAUSS, "--sigma-y", "0.1", "--steps", "2",
                 "--input", str(small_png), "--output", str(tmp_path / "nope" / "o.png")])
    assert code == 2 and "does not exist; create it first" in capsys.readouterr().err


def test_a_mask_file_recorded_in_a_measurement_is_an_input_too(small_png, holes, tmp_path, capsys):
    """A measurement records its mask_file (made absolute); solving it into that file with --force overwrote it."""
    meas = tmp_path / "m.safetensors"
    assert main(["degrade", "--operator", "inpainting", "--arg", "mask=file", "--arg", f"mask_file={holes}",
                 "--input", str(small_png), "--output", str(meas)]) == 0
    before = holes.read_bytes()
    code = main(["solve", *GAUSS, "--input", str(meas), "--output", str(holes), "--force", "--steps", "2"])
    err = capsys.readouterr().err
    assert code == 2 and "is a file the run reads" in err and holes.read_bytes() == before, err


def test_an_image_without_operator_or_with_size_is_refused_before_decoding(huge_png, tmp_path):
    """An image measurement without --operator, or with --size, was decoded in full before any check."""
    for extra, says in ((["--sigma-y", "0.1"], "which records no operator; pass --operator NAME"),
                        (["--operator", "denoising", "--size", "1,8,8"], "12000x12000")):
        proc = _limited(["solve", *GAUSS, *extra, "--input", str(huge_png), "--output", str(tmp_path / "o.png")])
        assert proc.returncode == 2 and says in proc.stderr, proc.stderr


def test_keep_going_survives_running_out_of_memory_on_one_image(tmp_path, capsys, monkeypatch):
    """--keep-going did not catch an out-of-memory error (a RuntimeError: CUDA OOM) on one large image."""
    restore_mod = importlib.import_module("invkit.runner.restore")

    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    for name in ("a", "b"):
        Image.new("RGB", (32, 32), (90, 100, 110)).save(src / f"{name}.png")
    real = restore_mod.posterior_samples

    def oom_on_a(op, y, *args, **kwargs):
        if float(y.mean()) > 0 and not hasattr(oom_on_a, "hit"):
            oom_on_a.hit = True
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return real(op, y, *args, **kwargs)

    monkeypatch.setattr(restore_mod, "posterior_samples", oom_on_a)
    code = main(["solve", "--operator", "denoising", *GAUSS, "--sigma-y", "0.05", "--steps", "1", "--keep-going",
                 "--input", str(src), "--output", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "1 of 2 input(s) failed" in err and "CUDA out of memory" in err, err
    assert [p.name for p in out.iterdir()] == ["b.png"]



def test_an_image_shaped_measurement_file_without_in_shape_is_sized_before_allocating(tmp_path):
    """A .safetensors of image-shaped y with in_shape null and an SR factor of 300 took 75 s and
    17.5 GB before refusing (the review of this issue); under 1 GiB it exits 2 with advice that works."""
    y = torch.rand(1, 3, 64, 64)
    for factor, says in ((300, "over --max-megapixels"), (40, "pass --resize 50 (the input's longest side; restored at 2000")):
        src = tmp_path / f"sr{factor}.safetensors"
        write_measurement(src, Measurement(y=y, operator="super_resolution", params={"factor": factor}, in_shape=None, sigma_y=0.01))
        proc = _limited(["solve", *GAUSS, "--input", str(src), "--output", str(tmp_path / "o.png"), "--max-megapixels", "4"])
        assert proc.returncode == 2 and says in proc.stderr, proc.stderr


def test_skip_existing_and_force_exclude_each_other(small_png, tmp_path, capsys):
    code = main(["solve", "--operator", "denoising", "--sigma-y", "0.1", "--skip-existing", "--force", "--input", str(small_png), "--output", str(tmp_path / "o.png")])
    assert code == 2 and "--skip-existing and --force exclude each other" in capsys.readouterr().err
