"""invkit.bands.row_bands: the bands of a valid filter cover every output row once, bounded."""

from __future__ import annotations

import pytest
import torch

from invkit.bands import row_bands


def _check(rows: int, halo: int, per_row: int, band_pixels: int) -> None:
    """The contract, stated without the function's formula."""
    bands = row_bands(rows, halo, per_row, band_pixels)
    floor = max(1, 4 * halo)  # the least band: 4 halos (the re-read overlap at most a quarter)
    assert bands[0][0] == 0 and bands[-1][1] == rows
    assert all(a[1] == b[0] for a, b in zip(bands, bands[1:])), "consecutive, no gap or overlap"
    sizes = [e - s for s, e in bands]
    assert all(n > 0 for n in sizes)
    if len(bands) == 1:
        # one band only when a band of the size the budget allows would hold every row
        assert per_row == 0 or rows <= max(floor, band_pixels // per_row)
        return
    size = sizes[0]
    assert all(n == size for n in sizes[:-1]) and sizes[-1] <= size, "equal bands, only the last shorter"
    assert size >= floor
    assert size * per_row <= band_pixels or size == floor, "within the pixel budget unless at the floor"
    assert size == floor or (size + 1) * per_row > band_pixels, "as large as the budget allows"


@pytest.mark.parametrize(
    "rows, halo, per_row, band_pixels, expected",
    [
        (10, 1, 100, 400, [(0, 4), (4, 8), (8, 10)]),
        (10, 1, 100, 10**6, [(0, 10)]),
        (10, 0, 100, 1, [(s, s + 1) for s in range(10)]),  # at least one row
        (100, 10, 1, 5, [(0, 40), (40, 80), (80, 100)]),  # at least 4 · halo rows
        (7, 3, 0, 5, [(0, 7)]),  # no pixels per row: one band
    ],
)
def test_row_bands_cases(rows, halo, per_row, band_pixels, expected):
    assert row_bands(rows, halo, per_row, band_pixels) == expected
    _check(rows, halo, per_row, band_pixels)


def test_row_bands_properties():
    hypothesis = pytest.importorskip("hypothesis")
    from hypothesis import strategies as st

    @hypothesis.settings(max_examples=300, derandomize=True, deadline=None, database=None)
    @hypothesis.given(
        rows=st.integers(1, 5000), halo=st.integers(0, 50), per_row=st.integers(0, 10**5), band_pixels=st.integers(0, 10**7)
    )
    def check(rows, halo, per_row, band_pixels):
        _check(rows, halo, per_row, band_pixels)

    check()


@pytest.mark.parametrize("rows, halo", [(0, 1), (5, -1)])
def test_row_bands_refuses_empty_or_negative(rows, halo):
    with pytest.raises(ValueError, match="rows >= 1 and halo >= 0"):
        row_bands(rows, halo, 10, 100)


def test_valid_filter_on_bands_equals_one_call():
    """A 5-tap valid box filter applied band by band, each reading its halo, equals one call."""
    x = torch.randn(2, 3, 53, 17, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    k = torch.ones(1, 1, 5, 1, dtype=torch.float64) / 5
    whole = torch.nn.functional.conv2d(x.reshape(6, 1, 53, 17), k).reshape(2, 3, 49, 17)
    bands = row_bands(49, 4, 2 * 3 * 17, 2 * 3 * 17 * 20)
    assert len(bands) == 3
    parts = [torch.nn.functional.conv2d(x[..., s : e + 4, :].reshape(6, 1, -1, 17), k) for s, e in bands]
    assert torch.equal(torch.cat(parts, dim=-2).reshape(2, 3, 49, 17), whole)
