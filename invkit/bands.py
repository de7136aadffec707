"""Bands of rows for a *valid* filter over a large image: bounded temporaries, same numbers.

A valid-region filter with a ``halo``-row footprint (``K − 1`` for a ``K``-tap kernel) maps
input rows ``[r, e + halo)`` to output rows ``[r, e)``. Applying it band by band and
concatenating (or summing) the bands gives the numbers of one whole-image call, while the
filter's temporaries are bounded by one band. :func:`row_bands` is the one place that chooses
the bands; :func:`invkit.metrics.ssim` and the separable blurs' ``correlate_valid`` use it.

A band holds at most ``band_pixels`` output pixels (all images and channels of its rows), and
at least ``4 · halo`` rows, so the re-read overlap is at most a quarter of the band.
"""

from __future__ import annotations

__all__ = ["row_bands"]


def row_bands(rows: int, halo: int, pixels_per_row: int, band_pixels: int) -> list[tuple[int, int]]:
    """Output row ranges ``[(start, end), ...]`` covering ``range(rows)`` in order.

    Args:
        rows: Output rows of the valid filter (input rows minus ``halo``); at least 1.
        halo: Extra input rows below a band that its output needs (``K − 1`` for ``K`` taps).
        pixels_per_row: Output pixels per row over the whole batch (``B · C · W_out``).
        band_pixels: The most output pixels wanted in one band.

    Returns:
        Consecutive half-open ranges of ``max(1, 4 · halo, band_pixels // pixels_per_row)`` rows
        (the last one shorter); one range ``[(0, rows)]`` when a band would hold every row (or a
        row holds no pixels). Band
        ``(s, e)`` reads input rows ``[s, e + halo)``.

    Raises:
        ValueError: If ``rows < 1`` or ``halo < 0``.

    Example:
        >>> row_bands(10, 1, 100, 400)
        [(0, 4), (4, 8), (8, 10)]
        >>> row_bands(10, 1, 100, 10**6)
        [(0, 10)]
    """
    if rows < 1 or halo < 0:
        raise ValueError(f"row_bands needs rows >= 1 and halo >= 0, got rows={rows}, halo={halo}")
    if pixels_per_row <= 0:  # an empty batch: nothing to bound
        return [(0, rows)]
    band = max(1, 4 * halo, band_pixels // pixels_per_row)
    if band >= rows:
        return [(0, rows)]
    return [(r, min(r + band, rows)) for r in range(0, rows, band)]
