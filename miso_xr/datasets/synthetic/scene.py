"""The scene (inputs and hidden truth) and :func:`make_scene`, which runs the stages in order."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ...cube.grid import Grid
from ...exceptions import InputError
from ...spec import SOIL_ORDERS
from .common import TRUTH_NAMES, _bbox_lonlat
from .fields import make_fields
from .imagery import make_optical, make_sar
from .observations import _sample_observations
from .terrain import make_terrain

if TYPE_CHECKING:  # pragma: no cover - typing only
    import xarray as xr


@dataclass(eq=False)
class Scene:
    """A synthetic scene: inputs a model sees, and the hidden truth it should recover.

    Attributes
    ----------
    grid
        The :class:`~miso_xr.cube.grid.Grid` (EPSG:3338) every array lies on.
    dem
        ``(H, W)`` float32 elevation, metres.
    rivers, roads
        ``(H, W)`` bool masks.
    optical
        ``[(datetime, reflectance, scl), ...]`` in time order: ``reflectance`` ``(9, H, W)``
        float32 surface reflectance in :data:`OPTICAL_BANDS` order (B05-B07, B11, B12 constant over
        2x2 blocks: they are 20 m bands), ``scl`` ``(H, W)`` uint8 Sen2Cor scene classes
        (3 shadow, 4 vegetation, 5 not vegetated, 6 water, 8/9 cloud medium/high), 20 m blocks.
    sar
        ``(2, H, W)`` float32 linear gamma0 power, ``vv`` and ``vh``; ``sar_datetime`` its date.
    vegetation
        ``(H, W)`` float32 NDVI of the cloud-free surface.
    wetness
        ``(H, W)`` float32 soil wetness index in [0, 1].
    permafrost
        ``(H, W)`` uint8 hidden truth, 1 = near-surface permafrost present.
    soil_order
        ``(H, W)`` int8 hidden truth, index into :data:`SOIL_ORDERS`.
    observations
        Field observations: ``x``, ``y`` (EPSG:3338), ``lon``, ``lat``, ``permafrost`` (Int8, 0/1,
        NA when unlabelled), ``soil_order`` (name, None when unlabelled).
    """

    grid: Grid
    dem: np.ndarray
    rivers: np.ndarray
    roads: np.ndarray
    optical: list[tuple[datetime, np.ndarray, np.ndarray]]
    sar: np.ndarray
    sar_datetime: datetime
    vegetation: np.ndarray
    wetness: np.ndarray
    permafrost: np.ndarray
    soil_order: np.ndarray
    observations: pd.DataFrame
    seed: int = 0
    center: tuple[float, float] = (-147.6, 65.15)
    extra: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def dates(self) -> list[datetime]:
        """Acquisition times of the optical images (UTC)."""
        return [d for d, _, _ in self.optical]

    @property
    def bbox_lonlat(self) -> tuple[float, float, float, float]:
        """``(lon_min, lat_min, lon_max, lat_max)`` enclosing the grid (edges densified)."""
        return _bbox_lonlat(self.grid)

    def truth(self, name: str) -> xr.DataArray:
        """A field of the scene as an ``(y, x)`` DataArray on the grid, CRS written (rioxarray).

        ``name`` is one of :data:`TRUTH_NAMES` (``"dem"`` is an alias of ``"elevation"``).

        >>> scene = make_scene(size=64)
        >>> da = scene.truth("permafrost")
        >>> da.dims, da.rio.crs.to_epsg()
        (('y', 'x'), 3338)
        """
        import rioxarray  # noqa: F401 - registers .rio
        import xarray as xr

        key = "elevation" if name == "dem" else name
        arrays = {
            "permafrost": self.permafrost,
            "soil_order": self.soil_order,
            "vegetation": self.vegetation,
            "wetness": self.wetness,
            "elevation": self.dem,
            "rivers": self.rivers,
            "roads": self.roads,
        }
        if key not in arrays:
            raise InputError(
                f"scene.truth({name!r}): unknown field; choose one of {', '.join(TRUTH_NAMES)}"
            )
        attrs: dict[str, Any] = {"long_name": _LONG_NAMES[key]}
        if key == "permafrost":
            attrs.update(flag_values=[0, 1], flag_meanings="absent present")
        elif key == "soil_order":
            attrs.update(
                flag_values=list(range(len(SOIL_ORDERS))), flag_meanings=" ".join(SOIL_ORDERS)
            )
        elif key == "elevation":
            attrs["units"] = "m"
        da = xr.DataArray(
            arrays[key],
            dims=("y", "x"),
            coords={"y": self.grid.y, "x": self.grid.x},
            name=key,
            attrs=attrs,
        )
        return da.rio.write_crs(self.grid.crs).rio.write_transform(self.grid.transform)

    def truth_dataset(self) -> xr.Dataset:
        """Every field of :data:`TRUTH_NAMES` in one Dataset on the grid (CRS written)."""
        import xarray as xr

        ds = xr.Dataset({n: self.truth(n) for n in TRUTH_NAMES})
        return ds.rio.write_crs(self.grid.crs).rio.write_transform(self.grid.transform)

    def optical_composite(self) -> np.ndarray:
        """``(9, H, W)`` float32 median of the clear (SCL 4, 5, 6) observations; NaN if none."""
        stack = np.stack([r for _, r, _ in self.optical])
        clear = np.stack([np.isin(s, (4, 5, 6)) for _, _, s in self.optical])
        stack = np.where(clear[:, None], stack, np.float32(np.nan))
        out = np.full(stack.shape[1:], np.nan, dtype="float32")
        any_clear = clear.any(axis=0)
        # nanmedian warns on all-NaN slices: compute only where some date is clear
        out[:, any_clear] = np.nanmedian(stack[:, :, any_clear], axis=0)
        return out


_LONG_NAMES = {
    "permafrost": "near-surface permafrost (hidden truth)",
    "soil_order": "soil order, index into SOIL_ORDERS (hidden truth)",
    "vegetation": "NDVI of the cloud-free surface",
    "wetness": "soil wetness index (0 dry - 1 saturated)",
    "elevation": "elevation",
    "rivers": "river channels",
    "roads": "roads",
}


# --------------------------------------------------------------------------------------------
# validation


def _check_int(name: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InputError(f"{name}={value!r}: expected an integer between {lo} and {hi}")
    if not lo <= int(value) <= hi:
        raise InputError(f"{name}={value!r}: expected an integer between {lo} and {hi}")
    return int(value)


def _check_args(seed, size, resolution, center, n_dates, n_observations):
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise InputError(f"seed={seed!r}: expected a non-negative integer")
    size = _check_int("size", size, 16, 16384)
    if isinstance(resolution, bool) or not isinstance(resolution, numbers.Real):
        raise InputError(f"resolution={resolution!r}: expected a positive number of metres")
    resolution = float(resolution)
    if not (math.isfinite(resolution) and 0.5 <= resolution <= 1000):
        raise InputError(f"resolution={resolution!r}: expected metres between 0.5 and 1000")
    try:
        lon, lat = (float(v) for v in center)
    except (TypeError, ValueError):
        raise InputError(f"center={center!r}: expected (lon, lat) in degrees") from None
    # EPSG:3338 is meant for Alaska; far outside it the projection distorts badly
    if not (-180 <= lon <= -125 and 50 <= lat <= 75):
        raise InputError(
            f"center={center!r}: expected (lon, lat) inside Alaska Albers' area "
            "(lon -180..-125, lat 50..75), e.g. (-147.6, 65.15)"
        )
    n_dates = _check_int("n_dates", n_dates, 1, 60)
    n_observations = _check_int("n_observations", n_observations, 0, 1_000_000)
    return int(seed), size, resolution, (lon, lat), n_dates, n_observations


def make_scene(
    *,
    seed: int = 0,
    size: int = 512,
    resolution: float = 10.0,
    center: Sequence[float] = (-147.6, 65.15),
    n_dates: int = 3,
    n_observations: int = 800,
) -> Scene:
    """Build the synthetic Alaska-like scene, deterministically from ``seed``.

    Parameters
    ----------
    seed
        Seed of the numpy Generator streams; the same seed gives identical arrays. Terrain,
        images, SAR and observations draw from separate streams, so changing ``n_dates`` or
        ``n_observations`` leaves the terrain and truth unchanged.
    size
        Side of the square scene in pixels (16 to 16384). 512 takes well under 2 s, 4096 under a
        minute (about 6 GB peak with 3 dates).
    resolution
        Pixel size in metres. Feature scales are physical (valleys every few km, rivers tens of
        metres wide), so a coarser resolution shows the same landscape more coarsely.
    center
        ``(lon, lat)`` of the scene centre; the grid's top-left corner is snapped to a multiple of
        ``resolution`` in EPSG:3338.
    n_dates
        Number of Sentinel-2 acquisitions, in the summers (June to August) of 2019 to 2023.
    n_observations
        Number of field observations (about 2 % of them unlabelled).

    Returns
    -------
    Scene

    Examples
    --------
    >>> scene = make_scene(seed=1, size=64, n_dates=2, n_observations=50)
    >>> len(scene.optical), len(scene.observations)
    (2, 50)
    >>> sorted(set(scene.observations["permafrost"].dropna().astype(int))) in ([0, 1], [0], [1])
    True
    """

    seed, size, res, (lon0, lat0), n_dates, n_observations = _check_args(
        seed, size, resolution, center, n_dates, n_observations
    )
    streams = np.random.SeedSequence(seed).spawn(6)
    r_terrain, r_network, r_fields, r_optical, r_sar, r_obs = (
        np.random.default_rng(s) for s in streams
    )

    terrain = make_terrain(r_terrain, r_network, size=size, res=res, center=(lon0, lat0))
    hidden = make_fields(terrain, r_fields)
    # the main river's distance and the TPI served the hidden fields only: free them before the
    # image stack grows (matters at 4096 px)
    del terrain.d_main, terrain.tpi
    optical = make_optical(r_optical, terrain, hidden, n_dates=n_dates)
    sar, sar_when = make_sar(r_sar, terrain, hidden)
    d_river, d_road, rivers, roads = terrain.d_river, terrain.d_road, terrain.rivers, terrain.roads
    grid, permafrost, soil = terrain.grid, hidden.permafrost, hidden.soil

    # ---- field observations: near roads and rivers, partly in clusters (campaign transects)
    observations = _sample_observations(
        r_obs, grid, n_observations, np.minimum(d_road, d_river), rivers | roads, permafrost, soil
    )

    extra = {
        "slope": terrain.slope_deg,
        "aspect": np.degrees(terrain.aspect) % 360,
        "insolation": terrain.insol,
        "spruce": hidden.spruce,
        "d_river": d_river,
        "d_road": d_road,
        "latitude": terrain.lat,
    }
    return Scene(
        grid=grid,
        dem=terrain.dem,
        rivers=rivers,
        roads=roads,
        optical=optical,
        sar=sar,
        sar_datetime=sar_when,
        vegetation=hidden.vegetation,
        wetness=hidden.wetness,
        permafrost=permafrost,
        soil_order=soil,
        observations=observations,
        seed=seed,
        center=(lon0, lat0),
        extra=extra,
    )
