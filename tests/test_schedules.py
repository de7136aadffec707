"""invkit.schedules: DDRM's rule kept bit for bit, the even respacing, the explicit-schedule check."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch

from invkit.prior import ddpm_sigma_grid
from invkit.schedules import check_schedule, ddrm_schedule, respaced_sigmas, respaced_timesteps

GRID = ddpm_sigma_grid()  # 1000 ascending levels of the linear DDPM schedule, [0, 1] units


class Grid:
    """A prior with the DDPM grid (only what schedules read)."""

    sigma_grid = GRID


class SmallGrid:
    sigma_grid = torch.tensor([0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 51.2], dtype=torch.float64)


class Continuous:
    sigma_grid = None
    sigma_max = 80.0
    sigma_min = 0.002


def at(timesteps: list[int]) -> list[float]:
    """The schedule visiting ``timesteps`` (ascending) from the top, plus the final 0."""
    return [float(GRID[t]) for t in reversed(timesteps)] + [0.0]


# ---------------------------------------------------------------- ddrm_schedule


@pytest.mark.parametrize(
    ("steps", "timesteps"),
    [
        (20, list(range(0, 1000, 50))),  # 0, 50, ..., 950: the official code
        (1, [0]),
        (3, [0, 333, 666]),
        (7, [i * 142 for i in range(7)]),
        (100, list(range(0, 1000, 10))),
        (999, list(range(999))),
        (1000, list(range(1000))),
    ],
)
def test_ddrm_schedule_pinned_timesteps(steps: int, timesteps: list[int]) -> None:
    assert ddrm_schedule(Grid(), steps) == at(timesteps)


def test_ddrm_schedule_default_is_20_steps() -> None:
    assert ddrm_schedule(Grid()) == at(list(range(0, 1000, 50)))


def test_ddrm_schedule_every_count_follows_the_official_rule() -> None:
    # The rule of the official DDRM code, written out: skip = L // steps, timesteps i * skip.
    # (The plugin's own function now comes from here, so comparing with it would prove nothing;
    # this module's values were also checked bit for bit against the pre-move function.)
    for prior in (Grid(), SmallGrid()):
        grid = prior.sigma_grid
        for steps in range(1, len(grid) + 1):
            skip = len(grid) // steps
            expected = [float(grid[i * skip]) for i in range(steps - 1, -1, -1)] + [0.0]
            assert ddrm_schedule(prior, steps) == expected


def test_ddrm_schedule_continuous_branch() -> None:
    s = ddrm_schedule(Continuous(), 5)
    assert len(s) == 6 and s[-1] == 0.0
    assert s[0] == pytest.approx(80.0, rel=1e-15) and s[-2] == pytest.approx(0.002, rel=1e-14)  # exp(log(.)) as before
    ratios = [a / b for a, b in zip(s[:-2], s[1:-1])]
    assert ratios == pytest.approx([(80.0 / 0.002) ** 0.25] * 4, rel=1e-13)
    assert ddrm_schedule(Continuous(), 1) == [80.0, 0.0]


def test_ddrm_schedule_errors_unchanged() -> None:
    with pytest.raises(ValueError, match=r"^steps must be >= 1, got 0$"):
        ddrm_schedule(Grid(), 0)
    with pytest.raises(ValueError, match=r"^steps = 1001 exceeds the prior's 1000 trained noise levels; use steps <= 1000$"):
        ddrm_schedule(Grid(), 1001)
    with pytest.raises(ValueError, match="steps must be >= 1"):
        ddrm_schedule(Continuous(), -3)


# ---------------------------------------------------------------- respaced_sigmas


def round_half_up(v: Fraction) -> int:
    return math.floor(v + Fraction(1, 2))


def test_respaced_seven_steps_pinned() -> None:
    # i * 999 / 6 = 0, 166.5, 333, 499.5, 666, 832.5, 999 -> halves round up
    assert respaced_timesteps(1000, 7) == [0, 167, 333, 500, 666, 833, 999]
    assert respaced_sigmas(Grid(), 7) == at([0, 167, 333, 500, 666, 833, 999])


def test_respaced_one_step_is_the_top_level() -> None:
    assert respaced_timesteps(1000, 1) == [999]
    assert respaced_sigmas(Grid(), 1) == [float(GRID[999]), 0.0]


def test_respaced_all_levels_is_the_whole_grid() -> None:
    assert respaced_timesteps(1000, 1000) == list(range(1000))
    assert respaced_sigmas(Grid(), 1000) == [float(v) for v in GRID.flip(0)] + [0.0]


@pytest.mark.parametrize("steps", [2, 3, 20, 50, 100, 250])
def test_respaced_pinned_small_counts(steps: int) -> None:
    expected = [round_half_up(Fraction(i * 999, steps - 1)) for i in range(steps)]
    assert respaced_timesteps(1000, steps) == expected
    assert respaced_sigmas(Grid(), steps) == at(expected)


@pytest.mark.parametrize("levels", [1, 2, 10, 1000])
def test_respaced_every_count_is_distinct_even_and_spans_the_grid(levels: int) -> None:
    for steps in range(1, levels + 1):
        t = respaced_timesteps(levels, steps)
        assert len(t) == steps
        assert t[-1] == levels - 1
        if steps > 1:
            assert t[0] == 0
            gaps = [b - a for a, b in zip(t, t[1:])]
            assert min(gaps) >= 1 and max(gaps) - min(gaps) <= 1  # distinct and as even as integers allow
            assert t == [round_half_up(Fraction(i * (levels - 1), steps - 1)) for i in range(steps)]


def test_respaced_sigmas_strictly_decreasing_to_zero() -> None:
    for steps in (1, 2, 5, 10):
        s = respaced_sigmas(SmallGrid(), steps)
        assert len(s) == steps + 1 and s[0] == 51.2 and s[-1] == 0.0
        assert all(a > b for a, b in zip(s, s[1:]))
        assert check_schedule(s) == s


def test_respaced_continuous_equals_ddrm_rule() -> None:
    for steps in (1, 2, 7, 20, 1000, 5000):
        assert respaced_sigmas(Continuous(), steps) == ddrm_schedule(Continuous(), steps)


def test_respaced_errors() -> None:
    with pytest.raises(ValueError, match=r"steps must be >= 1, got 0; use steps >= 1"):
        respaced_sigmas(Grid(), 0)
    with pytest.raises(ValueError, match=r"steps must be >= 1, got -1"):
        respaced_sigmas(Continuous(), -1)
    with pytest.raises(ValueError, match=r"steps = 1001 is outside 1\.\.1000 .*; use 1 <= steps <= 1000"):
        respaced_sigmas(Grid(), 1001)
    with pytest.raises(ValueError, match=r"use 1 <= steps <= 10"):
        respaced_timesteps(10, 0)
    with pytest.raises(TypeError):
        respaced_sigmas(Grid(), 2.5)  # type: ignore[arg-type]


# ---------------------------------------------------------------- check_schedule


def test_check_schedule_normalises() -> None:
    assert check_schedule([3, 2, 1]) == [3.0, 2.0, 1.0, 0.0]
    assert check_schedule((3.0, 0.5, 0.0)) == [3.0, 0.5, 0.0]
    assert check_schedule([1.0]) == [1.0, 0.0]
    out = check_schedule(torch.tensor([2.0, 1.0], dtype=torch.float64))
    assert out == [2.0, 1.0, 0.0] and all(type(v) is float for v in out)


@pytest.mark.parametrize(
    "bad",
    [[], [0.0], [1.0, 1.0], [1.0, 2.0], [2.0, 1.0, 1.5], [float("nan"), 1.0], [float("inf"), 1.0], [-1.0], [1.0, -0.5]],
)
def test_check_schedule_rejects(bad: list[float]) -> None:
    with pytest.raises(ValueError, match=r"^sigmas must be finite and strictly decreasing to 0, got \["):
        check_schedule(bad)


def test_check_schedule_message_is_ddrms() -> None:
    with pytest.raises(ValueError) as err:
        check_schedule([1.0, 1.0])
    assert str(err.value) == "sigmas must be finite and strictly decreasing to 0, got [1.0, 1.0]"
