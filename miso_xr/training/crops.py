"""Crops of a lazy cube around points: read only the windows needed, in one Dask compute.

Training MISO needs, for every observation, a ``window x window`` crop of each modality around it.
A cube over all of Alaska is far larger than memory, so nothing here touches more than the pixels
inside the crops: each crop is a slice of the modality's Dask array, and all slices (every point,
every modality) are computed together in one ``dask.compute`` so shared chunks are read once.

A ``margin`` adds pixels on every side so the training loop can shift the window at random (the
labelled point is then not always at the crop centre) without reading the cube again. Pixels
outside the grid are NaN, like any nodata.

Nothing here imports torch (prediction at points lives in :mod:`miso_xr.training.points`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from ..cube.grid import Grid, band_dim, require_bands, select_modalities
from ..exceptions import InputError

__all__ = ["Crops", "check_bands", "crop_origins", "extract_crops", "select_bands"]


@dataclass
class Crops:
    """Crops of every modality around a set of points.

    Attributes
    ----------
    arrays
        Modality -> ``(N, C, S, S)`` float32 raw cube values (NaN outside the grid or nodata),
        ``S = size``, bands in cube order.
    row0, col0
        ``(N,)`` int64 grid row/column of each crop's top-left pixel (may be negative near edges).
    x0, y0
        ``(N,)`` float64 pixel-centre coordinates of each crop's top-left pixel (CRS of the grid).
    size
        Crop side in pixels (``window + 2 * margin``).
    grid
        The cube's grid.
    bands
        Modality -> band names, in the order of ``arrays``.
    """

    arrays: dict[str, np.ndarray]
    row0: np.ndarray
    col0: np.ndarray
    x0: np.ndarray
    y0: np.ndarray
    size: int
    grid: Grid
    bands: dict[str, tuple[str, ...]]

    def __len__(self) -> int:
        return int(self.row0.size)

    def coords(self) -> tuple[np.ndarray, np.ndarray]:
        """``(N, S)`` x of each crop column and ``(N, S)`` y of each crop row (pixel centres)."""
        step = np.arange(self.size) * self.grid.resolution
        return self.x0[:, None] + step[None, :], self.y0[:, None] - step[None, :]


def crop_origins(grid: Grid, x: np.ndarray, y: np.ndarray, size: int) -> tuple[np.ndarray, ...]:
    """Top-left ``(row0, col0)`` of ``size``-pixel crops whose centre pixel holds each point.

    The centre pixel of an even-sized crop is the one right and below the middle (index
    ``size // 2``), the same convention as the training loop's labelled query.

    >>> g = Grid("EPSG:3338", 0.0, 100.0, 10.0, 10, 10)
    >>> crop_origins(g, np.array([55.0]), np.array([45.0]), 4)
    (array([3]), array([3]))
    """
    row, col = grid.index(np.asarray(x, dtype="float64"), np.asarray(y, dtype="float64"))
    return row - size // 2, col - size // 2


def extract_crops(
    cube: xr.Dataset,
    x: np.ndarray | Sequence[float],
    y: np.ndarray | Sequence[float],
    *,
    window: int,
    margin: int = 0,
    modalities: Sequence[str] | None = None,
    origins: tuple[np.ndarray, np.ndarray] | None = None,
) -> Crops:
    """Read ``(window + 2 * margin)``-pixel crops around points from a (lazy) cube.

    Only the pixels inside the crops are read: every crop is a slice of the modality's Dask array
    and all slices are computed in one ``dask.compute`` (chunks shared by several crops are read
    once). Parts of a crop outside the grid are NaN.

    Parameters
    ----------
    cube
        A MISO cube (``xr.Dataset``, one ``(<modality>_band, y, x)`` variable per modality),
        Dask- or numpy-backed.
    x, y
        Point coordinates in the cube's CRS. Each crop's centre pixel (index ``size // 2``) is the
        pixel holding the point.
    window
        The model's window in pixels.
    margin
        Extra pixels on every side, room for random shifts during training.
    modalities
        Modalities to read, in this order (default: every modality of the cube, in cube order).
    origins
        ``(row0, col0)`` of the crops' top-left pixels, instead of centring them on ``x, y``
        (used for random unlabelled tiles).

    Returns
    -------
    Crops
        ``arrays[mod]`` of shape ``(N, C, S, S)`` float32 and the crops' origins.

    Examples
    --------
    >>> import numpy as np
    >>> from miso_xr.cube.grid import Grid, make_cube
    >>> g = Grid("EPSG:3338", 0.0, 640.0, 10.0, 64, 64)
    >>> data = np.arange(64 * 64, dtype="float32").reshape(1, 64, 64)
    >>> cube = make_cube({"covariates": (data, ["elevation"])}, g, chunks=16)
    >>> c = extract_crops(cube, [5.0, 315.0], [635.0, 325.0], window=8)
    >>> c.arrays["covariates"].shape, bool(np.isnan(c.arrays["covariates"][0, 0, 0, 0]))
    ((2, 1, 8, 8), True)
    """
    import dask

    mods = select_modalities(cube, modalities)
    grid = Grid.from_dataset(cube)
    window, margin = int(window), int(margin)
    if window < 1 or margin < 0:
        raise InputError(f"window={window}, margin={margin}: need window >= 1 and margin >= 0")
    size = window + 2 * margin
    if origins is None:
        xs = np.atleast_1d(np.asarray(x, dtype="float64"))
        ys = np.atleast_1d(np.asarray(y, dtype="float64"))
        if xs.shape != ys.shape or xs.ndim != 1:
            raise InputError(f"x and y must be 1-D of the same length; got {xs.shape}, {ys.shape}")
        if not (np.isfinite(xs).all() and np.isfinite(ys).all()):
            raise InputError("x and y must be finite coordinates in the cube's CRS (found NaN/inf)")
        row0, col0 = crop_origins(grid, xs, ys, size)
    else:
        row0, col0 = (np.atleast_1d(np.asarray(o, dtype="int64")) for o in origins)
    n = row0.size
    # the part of each crop inside the grid; the rest stays NaN
    r_lo, c_lo = np.clip(row0, 0, grid.height), np.clip(col0, 0, grid.width)
    r_hi, c_hi = np.clip(row0 + size, 0, grid.height), np.clip(col0 + size, 0, grid.width)

    arrays: dict[str, np.ndarray] = {}
    pieces: list[Any] = []
    where: list[tuple[str, int]] = []
    bands: dict[str, tuple[str, ...]] = {}
    for m in mods:
        da = cube[m].transpose(band_dim(m), "y", "x")
        bands[m] = tuple(str(b) for b in da[band_dim(m)].values)
        arrays[m] = np.full((n, len(bands[m]), size, size), np.nan, dtype="float32")
        data = da.data
        for i in range(n):
            if r_hi[i] > r_lo[i] and c_hi[i] > c_lo[i]:
                pieces.append(data[:, r_lo[i] : r_hi[i], c_lo[i] : c_hi[i]])
                where.append((m, i))
    # one compute for all crops of all modalities: Dask culls every chunk no crop touches
    (values,) = dask.compute(pieces) if pieces else ([],)
    for (m, i), v in zip(where, values):
        rr, cc = r_lo[i] - row0[i], c_lo[i] - col0[i]
        arrays[m][i, :, rr : rr + v.shape[1], cc : cc + v.shape[2]] = v
    res = grid.resolution
    x0 = grid.left + (col0 + 0.5) * res
    y0 = grid.top - (row0 + 0.5) * res
    return Crops(arrays, row0, col0, x0, y0, size, grid, bands)


def check_bands(cube: xr.Dataset, bands: dict[str, tuple[str, ...]]) -> None:
    """Raise :class:`MissingBandError` naming the first modality or band the cube lacks."""
    require_bands(cube, bands, needed_by="the model")


def select_bands(crops: Crops, bands: dict[str, tuple[str, ...]]) -> Crops:
    """Reorder each modality's bands to the model's order."""
    arrays = {}
    for m, want in bands.items():
        have = list(crops.bands[m])
        idx = [have.index(b) for b in want]
        arrays[m] = crops.arrays[m] if idx == list(range(len(have))) else crops.arrays[m][:, idx]
    return Crops(
        arrays,
        crops.row0,
        crops.col0,
        crops.x0,
        crops.y0,
        crops.size,
        crops.grid,
        {m: tuple(b) for m, b in bands.items()},
    )
