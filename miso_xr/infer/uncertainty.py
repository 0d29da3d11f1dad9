"""Where to observe next: uncertain places, far from existing observations, spread out.

:func:`suggest_samples` works on a coarsened uncertainty map (mean over blocks of pixels, at most
``max_cells`` blocks), so it scales to statewide maps: Dask reduces the map to a few hundred thousand
numbers, and the selection runs on those.

The score of a block is ``uncertainty * (1 - exp(-d / min_distance))``, ``d`` being its distance to the
nearest existing observation or already chosen site: uncertain places score high, places next to an
observation score near zero. Sites are chosen greedily, best score first, and no two chosen sites are
closer than ``min_distance``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from ..exceptions import InputError

__all__ = ["suggest_samples"]


def suggest_samples(
    maps: xr.Dataset | xr.DataArray,
    n: int,
    *,
    observations: pd.DataFrame | None = None,
    min_distance: float | None = None,
    exclude_nodata: bool = True,
    max_cells: int = 250_000,
) -> pd.DataFrame:
    """The ``n`` places where a new field observation would help the map most.

    Parameters
    ----------
    maps
        Maps with an ``uncertainty`` variable (``cube.miso.predict(model)``), or that DataArray.
    n
        How many sites to suggest.
    observations
        Existing observations: a table with ``x``/``y`` columns (``read_observations``; its
        ``attrs["crs"]`` when it differs from the map's) or a GeoDataFrame. Sites are pushed away
        from them.
    min_distance
        Smallest distance between two suggested sites, and the length scale of the distance term
        (CRS units). Default: half the spacing of ``n`` sites spread evenly over the mapped area.
    exclude_nodata
        Skip blocks with no mapped pixel. ``False`` treats unmapped blocks as maximally uncertain
        (uncertainty 1), e.g. to plan visits where the cube has gaps.
    max_cells
        The map is averaged over square blocks until at most this many remain.

    Returns
    -------
    pandas.DataFrame
        One row per site, best first: ``x``, ``y`` (map CRS, block centres), ``lon``, ``lat``,
        ``uncertainty`` (block mean), ``distance_to_nearest_observation`` (CRS units; NaN without
        observations), ``score``. ``attrs["crs"]``, ``attrs["block_pixels"]``,
        ``attrs["min_distance"]``. Fewer than ``n`` rows when the map has no more room.

    Examples
    --------
    >>> sites = maps.miso.suggest_samples(20, observations=obs)     # doctest: +SKIP
    >>> sites[["lon", "lat", "score"]].head(3)                      # doctest: +SKIP
    """
    from ..cube.grid import Grid

    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise InputError(f"n={n!r}: the number of sites must be a whole number >= 1")
    unc = _uncertainty(maps)
    grid = Grid.from_dataset(unc)
    if min_distance is not None and not (float(min_distance) >= 0):
        raise InputError(f"min_distance={min_distance!r}: must be a distance >= 0 in CRS units")

    # coarsen: square blocks of f x f pixels, NaN-aware mean (nodata pixels do not count)
    f = max(1, math.ceil(math.sqrt(grid.width * grid.height / max_cells)))
    if f > 1:
        # sum / count rather than nanmean: no "mean of empty slice" warning for all-NaN blocks
        total = unc.fillna(0).astype("float64").coarsen(y=f, x=f, boundary="pad").sum()
        count = unc.notnull().coarsen(y=f, x=f, boundary="pad").sum()
        coarse = total / count.where(count > 0)
    else:
        coarse = unc.astype("float64")
    values = np.asarray(coarse.values, dtype="float64")
    cy, cx = np.asarray(coarse["y"].values), np.asarray(coarse["x"].values)
    if f > 1:  # pad blocks at the edges: centres from the block's index, not the padded mean
        cx = grid.left + (np.arange(values.shape[1]) * f + f / 2) * grid.resolution
        cy = grid.top - (np.arange(values.shape[0]) * f + f / 2) * grid.resolution
    xx, yy = np.meshgrid(cx, cy)
    if exclude_nodata:
        keep = np.isfinite(values)
    else:
        values = np.where(np.isfinite(values), values, 1.0)
        keep = np.ones(values.shape, dtype=bool)
    if not keep.any():
        raise InputError("the uncertainty map has no mapped pixel (all NaN); nothing to suggest")
    u = np.clip(values[keep], 0.0, 1.0)
    px, py = xx[keep], yy[keep]
    cell_area = (f * grid.resolution) ** 2
    if min_distance is None:
        min_distance = 0.5 * math.sqrt(u.size * cell_area / n)
    min_distance = float(min_distance)

    obs_xy = _observation_xy(observations, grid.crs)
    if obs_xy is not None and len(obs_xy):
        from scipy.spatial import cKDTree

        d_obs = cKDTree(obs_xy).query(np.column_stack([px, py]))[0]
    else:
        d_obs = np.full(u.size, np.inf)
    scale = max(min_distance, f * grid.resolution)

    d = d_obs.copy()
    chosen: list[int] = []
    scores: list[float] = []
    alive = np.ones(u.size, dtype=bool)
    for _ in range(int(n)):
        score = np.where(alive, u * -np.expm1(-d / scale), -np.inf)
        best = int(np.argmax(score))
        if not np.isfinite(score[best]) or not alive[best]:
            break
        chosen.append(best)
        scores.append(float(score[best]))  # with distances to observations and earlier sites
        dist = np.hypot(px - px[best], py - py[best])
        d = np.minimum(d, dist)  # a chosen site counts as an observation for the next ones
        alive &= dist >= min_distance if min_distance > 0 else dist > 0
    idx = np.asarray(chosen, dtype=int)
    table = pd.DataFrame(
        {
            "x": px[idx],
            "y": py[idx],
            "uncertainty": u[idx],
            "distance_to_nearest_observation": np.where(
                np.isfinite(d_obs[idx]), d_obs[idx], np.nan
            ),
        }
    )
    table["score"] = np.asarray(scores, dtype="float64")
    lon, lat = _lonlat(table["x"].to_numpy(), table["y"].to_numpy(), grid.crs)
    table.insert(2, "lon", lon)
    table.insert(3, "lat", lat)
    table.attrs.update(crs=grid.crs, block_pixels=f, min_distance=min_distance)
    return table


def _uncertainty(maps: Any) -> xr.DataArray:
    if isinstance(maps, xr.Dataset):
        if "uncertainty" not in maps.data_vars:
            raise InputError(
                f"the maps have no 'uncertainty' variable (they have {', '.join(map(str, maps.data_vars))}); "
                "predict with outputs including 'uncertainty'"
            )
        unc = maps["uncertainty"]
    elif isinstance(maps, xr.DataArray):
        unc = maps
    else:
        raise InputError(f"maps is a {type(maps).__name__}; expected the xr.Dataset from predict()")
    if set(unc.dims) != {"y", "x"}:
        raise InputError(f"uncertainty has dims {unc.dims}; expected (y, x)")
    return unc.transpose("y", "x")


def _observation_xy(observations: Any, crs: str) -> np.ndarray | None:
    if observations is None:
        return None
    if hasattr(observations, "geometry") and hasattr(observations, "to_crs"):
        gdf = observations if observations.crs is None else observations.to_crs(crs)
        return np.column_stack([gdf.geometry.x, gdf.geometry.y])
    if not isinstance(observations, pd.DataFrame) or not {"x", "y"} <= set(observations.columns):
        raise InputError(
            "observations must be a table with x and y columns (miso_xr.read_observations) or a "
            "GeoDataFrame of points"
        )
    x = observations["x"].to_numpy(dtype="float64")
    y = observations["y"].to_numpy(dtype="float64")
    src = observations.attrs.get("crs")
    if src and str(src) != str(crs):
        from pyproj import Transformer

        x, y = Transformer.from_crs(src, crs, always_xy=True).transform(x, y)
    xy = np.column_stack([x, y])
    return xy[np.isfinite(xy).all(axis=1)]


def _lonlat(x: np.ndarray, y: np.ndarray, crs: str) -> tuple[np.ndarray, np.ndarray]:
    from pyproj import Transformer

    if x.size == 0:
        return x, y
    lon, lat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(x, y)
    return np.asarray(lon), np.asarray(lat)
