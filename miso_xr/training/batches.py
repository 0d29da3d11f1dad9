"""Batches of crops and their query points, as the MISO paper builds them.

Every crop is queried at ``1 + fillers + random + grid**2`` continuous positions (1 + 4 + 10 +
6x6 = 51 by default):

- slot 0: the labelled point (its label; an unlabelled crop has a random point here);
- ``fillers`` slots: other training observations that fall inside the crop (their labels), the
  rest random unlabelled points;
- ``random`` slots: random unlabelled points;
- a ``grid x grid`` lattice spanning the crop edge to edge, unlabelled.

Random slots that land on an observed pixel take its label. Slots keep their meaning across the
crops of a batch, so the contrastive loss compares slot ``q`` of one crop with slot ``q`` of the
others (:func:`miso_xr.model.losses.info_nce`).

Unlabelled crops (half of each batch by default) are drawn afresh every epoch from anywhere on
the cube, or from boxes the user gives, and read lazily: one Dask compute per epoch for exactly
those crops (:func:`draw_unlabelled`). Nothing here imports torch at module level.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..cube.grid import Grid
from ..exceptions import InputError
from .crops import Crops, extract_crops

__all__ = ["QueryScheme", "draw_unlabelled", "location_xy", "query_tensor"]


@dataclass(frozen=True)
class QueryScheme:
    """Query slots of a crop: labelled point, fillers, random points, an edge-to-edge grid."""

    fillers: int
    random: int
    grid: int
    window: int

    @property
    def per_crop(self) -> int:
        return 1 + self.fillers + self.random + self.grid * self.grid

    @property
    def grid_rc(self) -> np.ndarray:
        """(grid**2, 2) pixel-unit (row, col) positions from the first to the last pixel centre."""
        if self.grid == 0:
            return np.zeros((0, 2))
        if self.grid == 1:
            g = np.array([self.window / 2])
        else:
            g = np.linspace(0.5, self.window - 0.5, self.grid)
        gr, gc = np.meshgrid(g, g, indexing="ij")
        return np.column_stack([gr.ravel(), gc.ravel()])


def query_tensor(rc: np.ndarray, window: int) -> np.ndarray:
    """Crop pixel units (row, col) -> grid_sample convention (x, y) in [-1, 1]."""
    q = np.empty(rc.shape, dtype="float32")
    q[..., 0] = -1.0 + 2.0 * rc[..., 1] / window
    q[..., 1] = -1.0 + 2.0 * rc[..., 0] / window
    return q


def location_xy(grid: Grid, row0: np.ndarray, col0: np.ndarray, rc: np.ndarray) -> np.ndarray:
    """Metres from the grid's centre (the region's: see ``region_origin``) of queries at crop
    pixel units ``rc`` of crops at ``row0, col0``; x east, y north.

    Computed from pixel indices, not from the grid's absolute coordinates, so the same pixels
    moved anywhere give bit-identical features (and a bit-identical trained model). float64: the
    location encoder wraps its phases in float64 (see :mod:`miso_xr.model.location`).
    """
    loc = np.empty(rc.shape, dtype="float64")
    loc[..., 0] = (col0[:, None] + rc[..., 1] - grid.width / 2) * grid.resolution
    loc[..., 1] = (grid.height / 2 - row0[:, None] - rc[..., 0]) * grid.resolution
    return loc


def draw_unlabelled(
    cube: Any,
    n: int,
    *,
    window: int,
    modalities: Sequence[str],
    rng: np.random.Generator,
    boxes: Sequence[tuple[float, float, float, float]] | None = None,
    min_valid: float = 0.5,
    tries: int = 4,
) -> Crops | None:
    """``n`` random ``window``-pixel crops, read lazily, mostly data (>= ``min_valid`` finite).

    Parameters
    ----------
    cube
        The cube (only the drawn crops are read, in one Dask compute per try).
    n
        Crops wanted.
    window
        Crop side in pixels.
    modalities
        Modalities to read.
    rng
        The run's random generator (seeded runs draw the same crops).
    boxes
        ``(xmin, ymin, xmax, ymax)`` boxes in the cube's CRS to draw from (a region or a tile
        list); default the whole cube.
    min_valid, tries
        Crops with less finite data are drawn again, at most ``tries`` rounds.
    """
    if n <= 0:
        return None
    grid = Grid.from_dataset(cube)
    if boxes:
        spans = []
        for b in boxes:
            r_top, c_left = grid.index(b[0], b[3])
            r_bot, c_right = grid.index(b[2], b[1])
            r_lo, r_hi = max(0, int(r_top)), min(grid.height - window, int(r_bot) - window + 1)
            c_lo, c_hi = max(0, int(c_left)), min(grid.width - window, int(c_right) - window + 1)
            if r_hi < r_lo or c_hi < c_lo:
                raise InputError(
                    f"unlabelled box {tuple(b)} holds no {window}-pixel crop inside the cube "
                    f"(bounds {grid.bounds}); give boxes of at least {window * grid.resolution:g} "
                    "m per side inside the cube"
                )
            spans.append((r_lo, r_hi, c_lo, c_hi))
    else:
        spans = [(0, grid.height - window, 0, grid.width - window)]
    weights = np.array([(s[1] - s[0] + 1) * (s[3] - s[2] + 1) for s in spans], dtype="float64")
    kept: list[Crops] = []
    have = 0
    for _ in range(tries):
        want = 2 * (n - have)
        which = rng.choice(len(spans), size=want, p=weights / weights.sum())
        r0 = np.array([rng.integers(spans[i][0], spans[i][1] + 1) for i in which], dtype="int64")
        c0 = np.array([rng.integers(spans[i][2], spans[i][3] + 1) for i in which], dtype="int64")
        cand = extract_crops(
            cube, None, None, window=window, modalities=modalities, origins=(r0, c0)
        )
        frac = np.mean(
            [np.isfinite(cand.arrays[m]).mean(axis=(1, 2, 3)) for m in modalities], axis=0
        )
        keep = np.flatnonzero(frac >= min_valid)[: n - have]
        if keep.size:
            kept.append(_take(cand, keep))
            have += keep.size
        if have >= n:
            break
    if not kept:
        return None
    return _concat(kept)


def _take(c: Crops, idx: np.ndarray) -> Crops:
    return Crops(
        {m: a[idx] for m, a in c.arrays.items()},
        c.row0[idx],
        c.col0[idx],
        c.x0[idx],
        c.y0[idx],
        c.size,
        c.grid,
        c.bands,
    )


def _concat(parts: list[Crops]) -> Crops:
    first = parts[0]
    if len(parts) == 1:
        return first
    return Crops(
        {m: np.concatenate([p.arrays[m] for p in parts]) for m in first.arrays},
        np.concatenate([p.row0 for p in parts]),
        np.concatenate([p.col0 for p in parts]),
        np.concatenate([p.x0 for p in parts]),
        np.concatenate([p.y0 for p in parts]),
        first.size,
        first.grid,
        first.bands,
    )


@dataclass
class LabelledPoints:
    """Training observations by grid pixel: slot 0 labels, filler labels, random-slot labels."""

    row: np.ndarray
    col: np.ndarray
    codes: np.ndarray
    neighbours: list[list[int]]
    by_pixel: dict[tuple[int, int], int]

    @classmethod
    def build(cls, grid: Grid, x: np.ndarray, y: np.ndarray, codes: np.ndarray, reach: int):
        from scipy.spatial import cKDTree

        row, col = grid.index(x, y)
        by_pixel: dict[tuple[int, int], int] = {}
        for r, c, v in zip(row.tolist(), col.tolist(), codes.tolist()):
            by_pixel.setdefault((r, c), v)
        rc = np.column_stack([row, col])
        neighbours = cKDTree(rc).query_ball_point(rc, r=reach, p=np.inf) if len(rc) else []
        return cls(row, col, codes, [list(n) for n in neighbours], by_pixel)


def assemble(
    *,
    labelled: Crops,
    items: np.ndarray,
    unlabelled: Crops | None,
    unl_items: np.ndarray,
    points: LabelledPoints,
    scheme: QueryScheme,
    max_shift: int,
    rng: np.random.Generator,
    prepare: Callable[[str, np.ndarray], np.ndarray],
) -> dict[str, np.ndarray | dict[str, np.ndarray]]:
    """One batch: labelled crops (shifted at random) then unlabelled crops, with their queries.

    Returns numpy arrays: ``images`` (modality -> (B, F, W, W) prepared input), ``query``
    (B, Q, 2), ``location`` (B, Q, 2) metres from the region centre, ``labels`` (B, Q)
    (-1 unlabelled).
    """
    window = scheme.window
    nq = scheme.per_crop
    mods = list(labelled.arrays)
    n_l, n_u = items.size, unl_items.size
    b = n_l + n_u
    raw = {
        m: np.empty((b, labelled.arrays[m].shape[1], window, window), dtype="float32") for m in mods
    }
    rc = np.empty((b, nq, 2), dtype="float64")
    labels = np.full((b, nq), -1, dtype="int64")
    row0 = np.empty(b, dtype="int64")
    col0 = np.empty(b, dtype="int64")
    first_random = 1 + scheme.fillers
    first_grid = first_random + scheme.random
    for j in range(b):
        if j < n_l:
            i = int(items[j])
            dr, dc = rng.integers(0, 2 * max_shift + 1, size=2)
            for m in mods:
                raw[m][j] = labelled.arrays[m][i, :, dr : dr + window, dc : dc + window]
            r_org, c_org = labelled.row0[i] + dr, labelled.col0[i] + dc
            # the labelled point, at its pixel centre (not always the crop centre)
            rc[j, 0] = (points.row[i] - r_org + 0.5, points.col[i] - c_org + 0.5)
            labels[j, 0] = points.codes[i]
            others = [
                o
                for o in points.neighbours[i]
                if o != i
                and 0 <= points.row[o] - r_org < window
                and 0 <= points.col[o] - c_org < window
            ]
            if len(others) > scheme.fillers:
                others = rng.choice(others, size=scheme.fillers, replace=False).tolist()
            for s, o in enumerate(others, start=1):
                rc[j, s] = (points.row[o] - r_org + 0.5, points.col[o] - c_org + 0.5)
                labels[j, s] = points.codes[o]
            free_from = 1 + len(others)
        else:
            i = int(unl_items[j - n_l])
            assert unlabelled is not None
            for m in mods:
                raw[m][j] = unlabelled.arrays[m][i]
            r_org, c_org = unlabelled.row0[i], unlabelled.col0[i]
            free_from = 0
        row0[j], col0[j] = r_org, c_org
        rc[j, free_from:first_grid] = rng.uniform(0, window, size=(first_grid - free_from, 2))
        rc[j, first_grid:] = scheme.grid_rc
        if j < n_l:  # random slots that land on an observed pixel take its label
            for s in range(free_from, nq):
                key = (int(r_org + rc[j, s, 0]), int(c_org + rc[j, s, 1]))
                if key in points.by_pixel:
                    labels[j, s] = points.by_pixel[key]
    return {
        "images": {m: prepare(m, raw[m]) for m in mods},
        "query": query_tensor(rc, window),
        "location": location_xy(labelled.grid, row0, col0, rc),
        "labels": labels,
    }
