"""The cost model (invkit.runner.cost) on priors whose time is known: a fake clock advanced by
each ``denoise`` call with a cost of its pixels, so the estimate is checked exactly, not timed."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import Tensor

from invkit.prior import Prior
from invkit.runner import Estimate, ProgressEvent, RestoreError, RestoreOptions, Timer, cost_or_refuse, projection_note
from invkit.tiled import TiledPrior, tile_grid


class Clock:
    """A clock that only moves when a prior says it worked."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class CostPrior(Prior):
    """Identity denoiser costing ``rows * (a p + b p^2 + c)`` seconds for ``p`` pixels per row."""

    name = "cost"

    def __init__(self, clock: Clock, a: float, b: float = 0.0, c: float = 0.0) -> None:
        self.clock, self.a, self.b, self.c = clock, a, b, c
        self.size_multiple = 8
        self.sigma_grid = None
        self.data_center = 0.5
        self.channels = 3
        self.calls = 0

    def cost(self, pixels: int) -> float:
        return self.a * pixels + self.b * pixels**2 + self.c

    def denoise(self, x: Tensor, sigma: float | Tensor) -> Tensor:
        self.calls += 1
        self.clock.now += x.shape[0] * self.cost(x.shape[-1] * x.shape[-2])
        return x


def _timer(prior: Prior, clock: Clock, prior_for=None, steps: int = 20) -> Timer:
    solver = type("S", (), {"default_steps": steps, "evaluations_per_step": 1.0})()
    return Timer(prior, torch.device("cpu"), 8, solver, prior_for=prior_for, clock=clock)


@pytest.mark.parametrize("h, w", [(600, 800), (1200, 1600), (3000, 4000)])
def test_linear_cost_is_predicted_exactly(h, w):
    clock = Clock()
    prior = CostPrior(clock, a=2e-5)
    est = _timer(prior, clock).per_eval(3, h, w)
    assert est.low == pytest.approx(2e-5 * h * w) and est.high == pytest.approx(2e-5 * h * w)


@pytest.mark.parametrize("h, w", [(600, 800), (1024, 1024), (1200, 1600), (2000, 3000)])
def test_superlinear_cost_lies_within_the_range(h, w):
    """Per-pixel cost growing with the pixels (attention): the power law is below, the quadratic fit above."""
    clock = Clock()
    prior = CostPrior(clock, a=1.5e-5, b=1.5e-5 / 4e6)  # 1.5x the linear cost at 2 MP
    est = _timer(prior, clock).per_eval(3, h, w)
    truth = prior.cost(h * w)
    assert est.low <= truth * (1 + 1e-9) and truth <= est.high * (1 + 1e-9)
    assert est.low < est.high
    assert ("from timings at 512x512 and 1024x1024" if h * w >= 1024 * 1024 else "from timings at 256x256 and 512x512") in est.how


def test_small_images_are_timed_at_128_and_256():
    clock = Clock()
    prior = CostPrior(clock, a=1e-5, c=1e-3)  # a per-call overhead: dearer per pixel when small
    est = _timer(prior, clock).per_eval(3, 300, 400)
    assert "128x128 and 256x256" in est.how
    assert est.low <= prior.cost(300 * 400) <= est.high


def test_each_size_is_timed_once_after_one_warm_up():
    clock = Clock()
    prior = CostPrior(clock, a=1e-5)
    timer = _timer(prior, clock)
    timer.per_eval(3, 1000, 1000)
    assert prior.calls == 5  # warm-up, 256² and 512² twice each (the least of two)
    timer.per_eval(3, 1000, 900)
    assert prior.calls == 5
    timer.per_eval(3, 2000, 1000)  # 512² from before, 1024² once
    assert prior.calls == 6


def test_tiled_cost_is_linear_in_tiles():
    """On tiles the estimate is the tile count times a tile's time (the high end +20 % for the whole-image work)."""
    clock = Clock()
    inner = CostPrior(clock, a=1e-5, b=1e-9)
    tiled = TiledPrior(inner, tile=64, overlap=16)
    timer = _timer(inner, clock, prior_for=lambda shape: tiled)
    for h, w in ((304, 400), (1000, 1504)):
        n = len(tile_grid(h, w, 64, 16, 8))
        est = timer.per_eval(3, h, w)
        assert est.low == pytest.approx(n * inner.cost(64 * 64)) and est.high == pytest.approx(1.2 * est.low)
        assert f"{n} tiles of 64x64" in est.how
        # what the tiled prior really costs on the fake clock
        before = clock.now
        tiled.denoise(torch.zeros(1, 3, h, w), 0.3)
        assert clock.now - before == pytest.approx(est.low)
    # a size off the multiple (a file's header, before the size rules pad it) counts the padded tiles
    assert timer.per_eval(3, 1001, 1500).low == pytest.approx(len(tile_grid(1008, 1504, 64, 16, 8)) * inner.cost(64 * 64))


def test_a_failing_prior_gives_no_estimate():
    class Broken(CostPrior):
        def denoise(self, x, sigma):
            raise RuntimeError("no")

    clock = Clock()
    assert _timer(Broken(clock, 1e-5), clock).per_eval(3, 1000, 1000) is None


def _opts(**kw) -> RestoreOptions:
    return RestoreOptions(input=Path("in.png"), output=Path("out.png"), operator="denoising", **kw)


def test_time_budget_refuses_with_steps_and_resize_that_fit():
    clock = Clock()
    prior = CostPrior(clock, a=1e-4)  # 100 s per MP per evaluation
    timer = _timer(prior, clock)
    # 2 MP: 200 s per evaluation, 20 steps: 4000 s = 66.7 min
    with pytest.raises(RestoreError) as info:
        cost_or_refuse("p.png", 3, 1000, 2000, opts=_opts(max_minutes=30), timer=timer)
    msg = str(info.value)
    assert "over --max-minutes 30" in msg and "about 1 h 06 min" in msg
    assert "pass --steps 9 (a coarser solve); pass --resize" in msg  # 9 x 200 s = 30 min
    assert "; or --max-minutes 71 to run it anyway" in msg  # 66.7 min, 5 % spare, rounded up
    side = int(msg.split("pass --resize ")[1].split()[0])
    assert 20 * 1e-4 * side * side / 2 <= 30 * 60  # the advised size fits the budget
    assert 20 * 1e-4 * (side + 16) * (side + 16) / 2 > 30 * 60  # and is about the largest that does
    # within the budget: announced, and the estimate returned
    notes: list[str] = []
    est = cost_or_refuse("p.png", 3, 1000, 2000, opts=_opts(max_minutes=120), timer=timer, say_note=notes.append)
    assert est.low == pytest.approx(4000) and "about 1 h 06 min for 20 steps on cpu" in notes[0]


def test_projection_note_sets_the_first_step_beside_the_estimate():
    ev = ProgressEvent("step", Path("p.png"), 0, 1, 1, 20, 1, 1, 1, 100.0, (1500.0, 2400.0))
    note = projection_note(ev)
    assert note == "p.png: first step took 1 min 40 s; projected 33 min for this image (estimated 31 min before the run, 25 min to 40 min)"
    assert "estimated" not in projection_note(ProgressEvent("step", Path("p.png"), 0, 1, 1, 20, 1, 1, 1, 100.0))
    # after the second step: the time so far plus the second step's time for each step left (the
    # first held one-off set-up)
    second = ProgressEvent("step", Path("p.png"), 0, 1, 2, 20, 1, 1, 1, 160.0, (1500.0, 2400.0))
    assert projection_note(second, previous=100.0).startswith("p.png: second step took 1 min 00 s; projected 20 min for this image (estimated")
    assert projection_note(second) is None  # no previous step known
    assert projection_note(ProgressEvent("step", Path("p.png"), 0, 1, 3, 20, 1, 1, 1, 220.0), previous=160.0) is None


def test_estimate_text():
    assert Estimate(60.0, 60.0, "").text() == "about 1 min 00 s"
    e = Estimate(100.0, 400.0, "")
    assert e.mid == 200.0 and e.text() == "about 3 min 20 s (1 min 40 s to 6 min 40 s)"
    assert math.isclose(e.scaled(2).high, 800.0)


def _advice(msg: str) -> int:
    return int(msg.split("pass --resize ")[1].split()[0])


def test_advised_resize_fits_where_the_cost_per_pixel_changes_with_size():
    """Untiled below a threshold (dearer per pixel: attention), tiled above: the advice is
    re-estimated at its own size, and following it is not refused again."""
    clock = Clock()
    inner = CostPrior(clock, a=1e-5, b=1e-11)  # 0.26 MP: 1.1x the linear cost; 1.5 MP: 1.6x
    tiled = TiledPrior(inner, tile=256, overlap=32)
    timer = _timer(inner, clock, prior_for=lambda shape: tiled if shape[1] * shape[2] > 1_500_000 else inner)
    opts = _opts(max_minutes=90.0, samples=3)
    with pytest.raises(RestoreError) as info:
        cost_or_refuse("p.png", 3, 3000, 4000, opts=opts, timer=timer)
    msg = str(info.value)
    assert "pass --samples 1;" in msg and "pass --steps 10 " in msg  # fewer samples or steps
    side = _advice(msg)
    h, w = round(3000 * side / 4000), side
    assert cost_or_refuse("p.png", 3, h, w, opts=opts, timer=timer).low <= 90 * 60  # following it runs
    # and it is about the largest that does: 10 % more is refused
    with pytest.raises(RestoreError):
        cost_or_refuse("p.png", 3, round(h * 1.1), round(w * 1.1), opts=opts, timer=timer)


def test_over_the_pixel_limit_without_an_estimate_still_advises_a_size():
    class Broken(CostPrior):
        def denoise(self, x, sigma):
            raise RuntimeError("no")

    clock = Clock()
    with pytest.raises(RestoreError) as info:
        cost_or_refuse("p.png", 3, 3000, 4000, opts=_opts(max_megapixels=4), timer=_timer(Broken(clock, 1e-5), clock))
    msg = str(info.value)
    assert "no estimate (the prior failed on a small test image)" in msg and "--max-minutes" not in msg
    side = _advice(msg)
    assert 3000 * side / 4000 * side <= 4e6 and side % 8 == 0 and side > 2250


def test_super_resolution_and_measurement_advice_under_a_time_budget():
    clock = Clock()
    prior = CostPrior(clock, a=1e-4)
    timer = _timer(prior, clock)
    with pytest.raises(RestoreError) as info:  # SR x4: the advised --resize is in input pixels
        cost_or_refuse("p.png", 3, 2000, 2000, opts=_opts(max_minutes=10), timer=timer, scale=4)
    msg = str(info.value)
    n = _advice(msg)
    restored = int(msg.split("restored at ")[1].split(",")[0])
    assert restored == 4 * n and 20 * 1e-4 * restored**2 <= 10 * 60
    with pytest.raises(RestoreError) as info:  # a .safetensors measurement: no --resize
        cost_or_refuse("m.safetensors", 3, 2000, 2000, opts=_opts(max_minutes=10), timer=timer, resizable=False)
    assert "--resize" not in str(info.value) and "make the measurement from an image of at most" in str(info.value)


# ---------------------------------------------------------------------------- gradients' memory
def _gradient_timer(prior: Prior, clock: Clock) -> Timer:
    from invkit.requirements import Capability

    solver = type("G", (), {"default_steps": 20, "evaluations_per_step": 3.0, "requires": frozenset({Capability.PRIOR_GRADIENTS})})()
    return Timer(prior, torch.device("cpu"), 8, solver, clock=clock)


def test_gradients_through_a_network_prior_are_refused_over_memory(monkeypatch):
    """A solver that differentiates through a network prior needs ~20 kB a pixel: refused (no
    "run it anyway") with a --resize that fits, before any pixel is read."""
    import invkit.runner.cost as cost

    monkeypatch.setattr(cost, "device_memory_bytes", lambda device: 2 * 10**9)  # 2 GB: 75 000 pixels
    clock = Clock()
    prior = CostPrior(clock, a=1e-7)
    prior.tileable = True
    timer = _gradient_timer(prior, clock)
    assert cost.gradient_pixel_limit(timer) == pytest.approx(0.75 * 2e9 / 20_000)
    opts = RestoreOptions(input=Path("in.png"), output=Path("out.png"))
    with pytest.raises(RestoreError) as info:
        cost_or_refuse("in.png", 3, 300, 400, opts=opts, timer=timer)
    text = str(info.value)
    assert "differentiates through the prior: about 2.4 GB of activations (20 kB a pixel" in text
    assert "over 75% of the 2 GB of the cpu" in text
    assert "run it anyway" not in text and "use a solver that does not differentiate through the prior" in text
    side = int(text.split("--resize ")[1].split()[0])
    assert side * (side * 3 // 4) <= 75_000 < (side + 8) * ((side + 8) * 3 // 4)  # the largest that fits, multiple of 8
    # under the limit: no refusal (an estimate only above ESTIMATE_PIXELS)
    assert cost_or_refuse("in.png", 3, 200, 300, opts=opts, timer=timer) is None
    # the solvers to use instead are named as given; none given: no such option
    with pytest.raises(RestoreError) as info:
        cost_or_refuse("in.png", 3, 300, 400, opts=opts, timer=timer, alternatives=lambda: ["ddrm", "mine"])
    assert "does not differentiate through the prior (ddrm, mine; `invkit plugins` says what each needs)" in str(info.value)
    with pytest.raises(RestoreError) as info:
        cost_or_refuse("in.png", 3, 300, 400, opts=opts, timer=timer, alternatives=lambda: [])
    assert "use a solver" not in str(info.value) and str(info.value).endswith("or crop a region with --crop Y,X,H,W")


def test_over_memory_and_max_megapixels_names_both(monkeypatch):
    import invkit.runner.cost as cost

    monkeypatch.setattr(cost, "device_memory_bytes", lambda device: 2 * 10**9)  # 75 000 pixels
    clock = Clock()
    prior = CostPrior(clock, a=1e-7)
    prior.tileable = True
    timer = _gradient_timer(prior, clock)
    opts = RestoreOptions(input=Path("in.png"), output=Path("out.png"), max_megapixels=0.05)
    with pytest.raises(RestoreError) as info:
        cost_or_refuse("in.png", 3, 300, 400, opts=opts, timer=timer)
    text = str(info.value)
    assert "differentiates through the prior" in text and "also over --max-megapixels 0.05" in text
    side = int(text.split("--resize ")[1].split()[0])
    assert side * (side * 3 // 4) <= 50_000  # the advice fits the lower of the two limits


def test_no_gradient_limit_for_analytic_priors_or_plain_solvers(monkeypatch):
    import invkit.runner.cost as cost

    monkeypatch.setattr(cost, "device_memory_bytes", lambda device: 2 * 10**9)
    clock = Clock()
    analytic = CostPrior(clock, a=1e-7)  # tileable False: its gradient is a few images
    assert cost.gradient_pixel_limit(_gradient_timer(analytic, clock)) is None
    network = CostPrior(clock, a=1e-7)
    network.tileable = True
    assert cost.gradient_pixel_limit(_timer(network, clock)) is None  # the solver does not differentiate
    from invkit import get_registry

    iso = get_registry().build("prior", "gaussian", ["kind=isotropic"])  # tileable, but analytic
    assert iso.tileable and cost.gradient_pixel_limit(_gradient_timer(iso, clock)) is None
    fixed = get_registry().build("prior", "gaussian", ["kind=isotropic"]).isotropic(0.5, 0.04, shape=(3, 16, 16))
    assert not fixed.tileable  # a fixed shape: tiles would not fit it


def test_cli_refuses_dps_on_a_photo_too_large_for_its_gradients(tmp_path, capsys, monkeypatch):
    """Through ``invkit solve``: exit 2 and one line, from the header, no output written."""
    from PIL import Image

    import invkit.runner.cost as cost
    from invkit.cli import main

    monkeypatch.setattr(cost, "device_memory_bytes", lambda device: 2 * 10**9)
    src = tmp_path / "big.png"
    Image.new("RGB", (400, 300)).save(src)
    code = main(["solve", "--solver", "dps", "--operator", "gaussian_blur", "--sigma-y", "0.05", "--steps", "20",
                 "--input", str(src), "--output", str(tmp_path / "out.png")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "differentiates through the prior" in err and "--resize" in err
    # the solvers named are the registered ones that evaluate the prior without its gradients
    named = err.split("does not differentiate through the prior (")[1].split(";")[0].split(", ")
    assert {"ddrm", "diffpir"} <= set(named) and not {"dps", "pigdm", "exact", "hio"} & set(named)
    assert not (tmp_path / "out.png").exists()


def test_gradient_free_solvers_follow_the_registry_and_the_problem():
    """The alternatives named are read from the registry (and, given a problem, its requirements)."""
    from invkit import GaussianNoise, Problem, get_registry
    from invkit.runner.restore import _gradient_free_solvers

    registry = get_registry()
    every = _gradient_free_solvers(registry)
    assert {"ddrm", "ddnm", "diffpir"} <= set(every) and not {"dps", "pigdm", "exact", "hio"} & set(every)
    prior = registry.build("prior", "gaussian", ["kind=isotropic"])
    blur = registry.build_operator("gaussian_blur", (3, 16, 16), {"sigma": 1.0})
    linear = _gradient_free_solvers(registry, Problem(blur, torch.zeros(1, *blur.out_shape), GaussianNoise(0.05)), prior)
    assert "ddrm" in linear and set(linear) <= set(every)
    phase = registry.build_operator("phase_retrieval", (1, 8, 8), {})
    y = phase.forward(torch.rand(1, 1, 8, 8))
    assert _gradient_free_solvers(registry, Problem(phase, y, GaussianNoise(0.05)), prior) == []  # only dps and hio take it
