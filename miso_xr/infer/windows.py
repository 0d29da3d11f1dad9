"""Windows on a global lattice, the halo they need, and Gaussian blending (pure numpy).

The lattice
-----------
Along each axis, window ``k`` covers the grid pixels ``[k * stride, k * stride + window)``, counted
from the grid's first row/column (the grid origin), for every integer ``k`` whose window touches the
grid, negative ``k`` included. The lattice therefore never depends on how the cube is chunked: a
chunk evaluates exactly the windows of the global lattice that touch it, so every pixel is predicted
from the same windows whatever the chunking, and maps are identical across chunkings.

The edges
---------
The lattice runs past the grid's outer edges; the part of a window outside the grid reads NaN
(nodata) padding, which the model fills like any other nodata. So an edge pixel is covered by as many
windows as an interior pixel (``ceil(window / stride)`` or ``floor`` of it), with the same blending
weights, and nothing special happens at the border.

Blending
--------
Overlapping window predictions are averaged with a separable weight centred on the window, and the
weighted sum is divided by the sum of the weights at each pixel, so a constant prediction blends to
the same constant. By default the weight is a Hann (raised-cosine) window,
``w(i) = sin(pi (i + 0.5) / W)**2``: it falls smoothly to ~0 at the window's edges (where the model
sees least context), and at ``stride = W / 2`` the two windows over a pixel along an axis have
weights summing to exactly 1, so every pixel is a smooth cross-fade of its windows over the whole
stride. At a longer stride (less overlap, less work: ``(W / stride)**2`` windows per pixel) the
weight is a Tukey window: the Hann's raised-cosine ramps over the ``W - stride`` overlap at each
edge and 1 between them, again a partition of unity, so neighbouring windows cross-fade over the
whole of their overlap. A Gaussian weight (``sigma=``, the choice of nnU-Net and MONAI) is narrower at ``W / 8``:
the nearest window centre dominates and the hand-over between windows happens over a few pixels,
which drew the window lattice on the maps.

>>> plan = WindowPlan(window=8, stride=4)
>>> plan.starts(0, 10).tolist()          # windows touching pixels 0..9
[-4, 0, 4, 8]
>>> plan.halo_for((10, 10))              # pixels of context each chunk needs on each side
6
>>> plan.halo_for((8, 8, 8))             # chunks on multiples of the stride need less
4
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..exceptions import InputError

__all__ = ["WindowPlan", "blend_windows", "window_cells", "window_weights"]


def _ceil_div(a: int, b: int) -> int:
    return -((-a) // b)


@dataclass(frozen=True)
class WindowPlan:
    """Window side, lattice step and blending width, in pixels.

    Parameters
    ----------
    window
        Side of the square windows the model sees (pixels).
    stride
        Lattice step (pixels), ``1 <= stride <= window``. ``window / stride`` windows cover each
        pixel along an axis when ``stride`` divides ``window`` (e.g. ``stride = window // 2``: 4
        windows per pixel in 2-D).
    sigma
        ``None`` (default): the Hann blending weight. A number: a Gaussian blending weight of that
        standard deviation (pixels; the maps of before used ``window / 8``).

    Examples
    --------
    >>> WindowPlan(window=64, stride=32).coverage()
    4.0
    """

    window: int
    stride: int
    sigma: float | None = None

    def __post_init__(self) -> None:
        w, s = self.window, self.stride
        if not isinstance(w, (int, np.integer)) or isinstance(w, bool) or w < 1:
            raise InputError(f"window={w!r}: must be a positive whole number of pixels")
        if not isinstance(s, (int, np.integer)) or isinstance(s, bool) or not 1 <= s <= w:
            raise InputError(
                f"stride={s!r}: must be a whole number of pixels between 1 and window={w} "
                "(a larger stride would leave pixels between windows unpredicted)"
            )
        if self.sigma is not None and not (float(self.sigma) > 0 and np.isfinite(self.sigma)):
            raise InputError(f"sigma={self.sigma!r}: must be a positive number of pixels or None")
        object.__setattr__(self, "window", int(w))
        object.__setattr__(self, "stride", int(s))

    @property
    def blend_sigma(self) -> float | None:
        """The Gaussian's standard deviation (pixels), ``None`` for the Hann weight."""
        return float(self.sigma) if self.sigma is not None else None

    @property
    def taper(self) -> float:
        """Pixels over which the default weight rises from ~0 to 1 at each edge: the overlap of
        neighbouring windows, ``window - stride``, at most ``window / 2`` (the Hann window)."""
        return min(self.window / 2, float(self.window - self.stride))

    @property
    def blend(self) -> str:
        """The blending weight, in words (recorded in the maps' attributes)."""
        if self.sigma is not None:
            return f"gaussian sigma={float(self.sigma):g} px"
        return "hann" if self.taper == self.window / 2 else f"tukey taper={self.taper:g} px"

    def coverage(self) -> float:
        """Windows over a pixel in 2-D, on average over the lattice: ``(window / stride)**2``
        (the work per pixel, in windows)."""
        return (self.window / self.stride) ** 2

    def k_range(self, start: int, stop: int) -> tuple[int, int]:
        """Lattice indices ``k0 <= k < k1`` of the windows touching pixels ``[start, stop)``."""
        if stop <= start:
            return (0, 0)
        k0 = _ceil_div(start - self.window + 1, self.stride)
        k1 = (stop - 1) // self.stride + 1
        return (k0, k1)

    def starts(self, start: int, stop: int) -> np.ndarray:
        """First pixel (global index) of each window touching pixels ``[start, stop)``."""
        k0, k1 = self.k_range(start, stop)
        return np.arange(k0, k1, dtype=np.int64) * self.stride

    def reach(self, start: int, stop: int) -> tuple[int, int]:
        """Pixels of context the windows touching ``[start, stop)`` read before and after it."""
        s = self.starts(start, stop)
        if s.size == 0:
            return (0, 0)
        return (max(0, start - int(s[0])), max(0, int(s[-1]) + self.window - stop))

    def halo_for(self, chunks: Sequence[int]) -> int:
        """The smallest halo (overlap depth) that gives every chunk all its windows.

        At most ``window - 1``; ``stride * floor((window - 1) / stride)`` (``window - stride`` when
        the stride divides the window) when every chunk boundary is a multiple of the stride, so
        chunks that are multiples of ``stride`` save reading and compute.
        """
        halo, start = 0, 0
        for size in chunks:
            before, after = self.reach(start, start + int(size))
            halo = max(halo, before, after)
            start += int(size)
        return halo

    def weights(self) -> np.ndarray:
        """The ``(window, window)`` float64 blending weight (Hann or Tukey, or Gaussian)."""
        if self.sigma is not None:
            return window_weights(self.window, self.blend_sigma)
        return window_weights(self.window, taper=self.taper)


def window_weights(
    window: int, sigma: float | None = None, *, taper: float | None = None
) -> np.ndarray:
    """Separable weight of a ``window`` x ``window`` window, never below 1e-6.

    ``sigma=None``: Hann, ``sin(pi (i + 0.5) / W)**2`` per axis (a partition of unity at a stride
    of ``W / 2``); with ``taper`` (pixels, up to ``W / 2``, the default) a Tukey window: those
    ramps over ``taper`` pixels at each edge and 1 between them (a partition of unity at a stride
    of ``W - taper``). A number: Gaussian of that standard deviation, peak 1. The floor keeps the
    normalising sum away from zero.

    >>> w = window_weights(4, 1.0)
    >>> w.shape, bool(w[1, 1] == w.max())
    ((4, 4), True)
    >>> g = np.sqrt(np.diag(window_weights(8)))   # Hann per axis
    >>> bool(np.allclose(g[:4] + g[4:], 1.0))       # windows 4 apart: weights sum to 1
    True
    >>> t = np.sqrt(np.diag(window_weights(8, taper=2)))  # Tukey: windows 6 apart sum to 1
    >>> bool(np.allclose(t[:2] + t[6:], 1.0) and np.allclose(t[2:6], 1.0))
    True
    """
    i = np.arange(window, dtype=np.float64)
    if sigma is None:
        ramp = window / 2 if taper is None else min(float(taper), window / 2)
        if ramp > 0:
            # distance of each pixel centre from the nearer edge, over the ramp
            edge = np.minimum(i + 0.5, window - i - 0.5) / ramp
            g = np.where(edge < 1, np.sin(np.pi / 2 * np.minimum(edge, 1)) ** 2, 1.0)
        else:  # no overlap: nothing to cross-fade
            g = np.ones(window)
    else:
        c = i - (window - 1) / 2.0
        g = np.exp(-(c**2) / (2.0 * float(sigma) ** 2))
    return np.maximum(np.outer(g, g), 1e-6)


def window_cells(grid: np.ndarray, rows: np.ndarray, cols: np.ndarray, window: int) -> np.ndarray:
    """Each window's ``window x window`` cut of a per-pixel ``grid`` (H, W, ...), windows first.

    ``rows``, ``cols``: ``(N,)`` first row / column of each window, in ``grid``'s pixels.

    >>> g = np.arange(16).reshape(4, 4)
    >>> window_cells(g, np.array([0, 2]), np.array([1, 0]), 2).tolist()
    [[[1, 2], [5, 6]], [[8, 9], [12, 13]]]
    """
    offs = np.arange(window)
    return grid[rows[:, None, None] + offs[:, None], cols[:, None, None] + offs]


def blend_windows(
    probs: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    *,
    origin: tuple[int, int],
    shape: tuple[int, int],
    weights: np.ndarray,
    out: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Add weighted window predictions into a region; return ``(weighted_sum, weight_sum)``.

    Parameters
    ----------
    probs
        ``(N, K, W, W)`` predictions of ``N`` windows.
    rows, cols
        ``(N,)`` global first row / column of each window.
    origin, shape
        Global ``(row, col)`` of the region's first pixel, and its ``(height, width)``; window
        parts outside the region are dropped.
    weights
        ``(W, W)`` blending weight (:meth:`WindowPlan.weights`).
    out
        Accumulators from a previous call to add into (float64 ``(K, h, w)`` and ``(h, w)``).

    Divide ``weighted_sum / weight_sum`` once every window is in.

    >>> import numpy as np
    >>> p = np.ones((2, 1, 4, 4), dtype="float32")
    >>> s, w = blend_windows(p, np.array([0, 2]), np.array([0, 0]), origin=(0, 0), shape=(6, 4),
    ...                      weights=window_weights(4, 1.0))
    >>> bool(np.allclose(s / w, 1.0))
    True
    """
    n, k, win, _ = probs.shape
    h, w = shape
    if out is None:
        acc = np.zeros((k, h, w), dtype=np.float64)
        wsum = np.zeros((h, w), dtype=np.float64)
    else:
        acc, wsum = out
    r0, c0 = origin
    for i in range(n):
        # the window's rows [a, a + win) cut to the region's rows [r0, r0 + h)
        a, b = int(rows[i]) - r0, int(cols[i]) - c0
        ya0, ya1 = max(a, 0), min(a + win, h)
        xb0, xb1 = max(b, 0), min(b + win, w)
        if ya0 >= ya1 or xb0 >= xb1:
            continue
        wy, wx = slice(ya0 - a, ya1 - a), slice(xb0 - b, xb1 - b)
        wt = weights[wy, wx]
        acc[:, ya0:ya1, xb0:xb1] += probs[i][:, wy, wx] * wt
        wsum[ya0:ya1, xb0:xb1] += wt
    return acc, wsum
