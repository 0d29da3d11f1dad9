"""The synthetic Alaska-like scene: the project's embedded default (demo, tests, benchmarks).

:func:`make_scene` builds, deterministically from a seed, a square scene in EPSG:3338 (Alaska
Albers) around a lon/lat centre in the interior Alaska uplands: a DEM with ridges, slopes and a
carved river-valley network; rivers and roads; Sentinel-2 L2A-like reflectance and SCL for summer
dates of several years (with clouds and their shadows); one Sentinel-1 RTC-like VV/VH image; and
the hidden truth: near-surface ``permafrost`` and ``soil_order``, which depend non-linearly on
aspect, elevation, wetness, vegetation and latitude, with noise at several scales. Field
``observations`` are sampled the way real ones are: near roads and rivers.

:func:`write_scene` writes it as Cloud-Optimized GeoTIFFs laid out like the real archives (uint16
DN with the 2022 radiometric offset, 20 m bands at 20 m) plus truth rasters and observation files;
:func:`write_stac` writes STAC collections and items (Planetary-Computer-like ids) pointing at
those files through a base URL, for ``rustac serve`` and a range-capable file server.
See ``docs/synthetic.md`` for the rules behind the hidden fields.

>>> scene = make_scene(seed=0, size=128)
>>> scene.optical[0][1].shape, scene.permafrost.dtype
((9, 128, 128), dtype('uint8'))
"""

from __future__ import annotations

import functools
import json
import math
import numbers
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..cube.grid import OPTICAL_BANDS, SAR_BANDS, Grid
from ..exceptions import InputError
from ..spec import SOIL_ORDERS

if TYPE_CHECKING:  # pragma: no cover - typing only
    import xarray as xr

__all__ = [
    "OPTICAL_BANDS",
    "SAR_BANDS",
    "SCENE_CRS",
    "SOIL_ORDERS",
    "TRUTH_NAMES",
    "Scene",
    "SceneFiles",
    "make_scene",
    "write_scene",
    "write_stac",
]

SCENE_CRS = "EPSG:3338"
TRUTH_NAMES: tuple[str, ...] = (
    "permafrost",
    "soil_order",
    "vegetation",
    "wetness",
    "elevation",
    "rivers",
    "roads",
)
# bands Sentinel-2 delivers at 20 m (the rest of the nine are 10 m); SCL is 20 m too
_BANDS_20M = ("B05", "B06", "B07", "B11", "B12")
_MANIFEST = "scene.json"
_FORMAT = "miso_xr synthetic scene 1"

# Land-cover endmember reflectances in OPTICAL_BANDS order (B04 B03 B02 B05 B06 B07 B08 B11 B12),
# typical interior-Alaska summer values: black spruce is dark with a low NIR plateau, birch/aspen
# bright in NIR, wet sedge/moss low in SWIR, gravel bright in SWIR, water dark everywhere.
_ENDMEMBERS = np.array(
    [
        [0.030, 0.040, 0.022, 0.058, 0.118, 0.135, 0.145, 0.105, 0.052],  # black spruce
        [0.030, 0.062, 0.030, 0.095, 0.260, 0.330, 0.360, 0.185, 0.082],  # birch / aspen
        [0.052, 0.068, 0.036, 0.088, 0.170, 0.200, 0.215, 0.120, 0.058],  # wet sedge / moss
        [0.085, 0.090, 0.050, 0.125, 0.200, 0.225, 0.240, 0.300, 0.185],  # steppe grass (bluffs)
        [0.060, 0.072, 0.042, 0.105, 0.190, 0.220, 0.235, 0.225, 0.125],  # alpine shrub tundra
        [0.030, 0.042, 0.045, 0.025, 0.018, 0.014, 0.013, 0.005, 0.003],  # water
        [0.160, 0.140, 0.110, 0.175, 0.195, 0.205, 0.215, 0.290, 0.230],  # gravel road
    ],
    dtype="float32",
).T  # (9 bands, 7 covers)
_CLOUD = np.array([0.52, 0.53, 0.57, 0.53, 0.52, 0.51, 0.50, 0.36, 0.26], dtype="float32")

_S2_BAND_INFO = {  # name: (common_name, description, centre wavelength um, FWHM um, gsd m)
    "B02": ("blue", "Band 2 - Blue", 0.49, 0.098, 10),
    "B03": ("green", "Band 3 - Green", 0.56, 0.045, 10),
    "B04": ("red", "Band 4 - Red", 0.665, 0.038, 10),
    "B05": ("rededge", "Band 5 - Vegetation red edge 1", 0.704, 0.019, 20),
    "B06": ("rededge", "Band 6 - Vegetation red edge 2", 0.74, 0.018, 20),
    "B07": ("rededge", "Band 7 - Vegetation red edge 3", 0.783, 0.028, 20),
    "B08": ("nir", "Band 8 - NIR", 0.842, 0.145, 10),
    "B11": ("swir16", "Band 11 - SWIR (1.6)", 1.61, 0.143, 20),
    "B12": ("swir22", "Band 12 - SWIR (2.2)", 2.19, 0.242, 20),
}
_S2_ASSET_ORDER = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B11", "B12")


# --------------------------------------------------------------------------------------------
# the scene


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


# --------------------------------------------------------------------------------------------
# building blocks


def _field(
    rng: np.random.Generator,
    shape: tuple[int, int],
    res: float,
    lmin: float,
    lmax: float,
    beta: float = 3.0,
    *,
    order: int = 1,
) -> np.ndarray:
    """Gaussian noise with a power-law spectrum between wavelengths ``lmin`` and ``lmax`` (m).

    Spectral synthesis (one FFT pair) on a grid padded by a quarter so the result does not wrap
    around visibly; zero mean, unit standard deviation, float32. A field with nothing finer than
    ``lmin`` is synthesised on a coarser lattice (six cells per ``lmin``) and interpolated
    (``order`` 1 linear, 3 cubic): the same field for a fraction of the FFT cost at 4096 px.
    """
    h, w = shape
    f = int(lmin // (6 * res))
    if f < 2:
        return _spectral(rng, shape, res, lmin, lmax, beta)
    from scipy import ndimage

    coarse = _spectral(rng, (-(-h // f) + 2, -(-w // f) + 2), res * f, lmin, lmax, beta)
    out = ndimage.zoom(coarse, f, order=order, grid_mode=True, mode="nearest", output=np.float32)
    return np.ascontiguousarray(out[f // 2 : f // 2 + h, f // 2 : f // 2 + w])


def _spectral(rng, shape, res, lmin, lmax, beta) -> np.ndarray:
    import scipy.fft as sfft

    h, w = shape
    ph = sfft.next_fast_len(h + max(8, h // 4), real=True)
    pw = sfft.next_fast_len(w + max(8, w // 4), real=True)
    white = rng.standard_normal((ph, pw), dtype=np.float32)
    spec = sfft.rfft2(white)
    del white
    ky = sfft.fftfreq(ph, d=res).astype("float32")[:, None]
    kx = sfft.rfftfreq(pw, d=res).astype("float32")[None, :]
    k = np.sqrt(ky * ky + kx * kx)
    k[0, 0] = 1.0 / (4 * max(ph, pw) * res)
    # power-law amplitude, low-pass at lmin and high-pass at lmax (both smooth, no ringing)
    filt = k ** np.float32(-beta / 2)
    filt *= np.exp(-((k * np.float32(lmin)) ** 2))
    filt *= 1 - np.exp(-((k * np.float32(lmax)) ** 2))
    filt[0, 0] = 0.0
    spec *= filt
    del filt, k
    out = sfft.irfft2(spec, s=(ph, pw))[:h, :w].astype("float32", copy=False)
    out -= np.float32(out.mean(dtype="float64"))
    sd = float(out.std(dtype="float64"))
    if sd > 0:
        out /= np.float32(sd)
    return np.ascontiguousarray(out)


def _sigmoid(v: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-v))).astype("float32", copy=False)


def _meander(
    rng: np.random.Generator,
    start: tuple[float, float],
    heading: float,
    length_px: float,
    res: float,
    *,
    amplitude: float = 0.35,
    wavelengths_m: tuple[float, float] = (500.0, 3000.0),
) -> np.ndarray:
    """A wandering line from ``start`` (row, col): heading plus a few sinusoids of arc length.

    Returns ``(N, 2)`` float row/col points every half pixel.
    """
    n = max(2, int(length_px * 2))
    s = np.arange(n, dtype="float64") * 0.5 * res  # arc length, metres
    theta = np.full(n, heading, dtype="float64")
    for _ in range(3):
        lam = rng.uniform(*wavelengths_m)
        theta += (
            rng.uniform(0.3, 1.0)
            * amplitude
            * np.sin(2 * np.pi * s / lam + rng.uniform(0, 2 * np.pi))
        )
    # heading measured from +col (east), counter-clockwise; rows grow southward
    drow = -np.sin(theta) * 0.5
    dcol = np.cos(theta) * 0.5
    pts = np.empty((n, 2))
    pts[:, 0] = start[0] + np.concatenate([[0.0], np.cumsum(drow[:-1])])
    pts[:, 1] = start[1] + np.concatenate([[0.0], np.cumsum(dcol[:-1])])
    return pts


def _draw(mask: np.ndarray, pts: np.ndarray, width: float = 1.0) -> None:
    """Burn a polyline of half-pixel-spaced points into ``mask`` with about ``width`` pixels."""
    if len(pts) < 2:
        return
    h, w = mask.shape
    d = np.gradient(pts, axis=0)
    norm = np.hypot(d[:, 0], d[:, 1])
    norm[norm == 0] = 1.0
    nrm = np.stack([-d[:, 1] / norm, d[:, 0] / norm], axis=1)  # unit normal
    offsets = np.arange(-(width - 1) / 2, (width - 1) / 2 + 1e-9, 0.5) if width > 1 else [0.0]
    for off in offsets:
        p = pts + nrm * off
        r = np.floor(p[:, 0]).astype("int64")
        c = np.floor(p[:, 1]).astype("int64")
        ok = (r >= 0) & (r < h) & (c >= 0) & (c < w)
        mask[r[ok], c[ok]] = True


def _smooth_line(pts: np.ndarray, window: int) -> np.ndarray:
    """Moving average of a polyline (edge-padded) over ``window`` points."""
    if window < 3 or len(pts) < window:
        return pts
    pad = window // 2
    p = np.pad(pts, ((pad, pad), (0, 0)), mode="edge")
    kernel = np.ones(window) / window
    return np.stack([np.convolve(p[:, i], kernel, mode="valid")[: len(pts)] for i in (0, 1)], 1)


def _offset_line(pts: np.ndarray, offset_px: np.ndarray) -> np.ndarray:
    d = np.gradient(pts, axis=0)
    norm = np.hypot(d[:, 0], d[:, 1])
    norm[norm == 0] = 1.0
    nrm = np.stack([-d[:, 1] / norm, d[:, 0] / norm], axis=1)
    return pts + nrm * offset_px[:, None]


def _crossing(rng, size: int, heading: float, res: float, amplitude: float, wl) -> np.ndarray:
    """A line through a point near the centre that runs out of the grid at both ends."""
    p0 = (size / 2 + rng.uniform(-0.2, 0.2) * size, size / 2 + rng.uniform(-0.2, 0.2) * size)
    length = 1.6 * size
    fwd = _meander(rng, p0, heading, length, res, amplitude=amplitude, wavelengths_m=wl)
    bwd = _meander(rng, p0, heading + np.pi, length, res, amplitude=amplitude, wavelengths_m=wl)
    return np.concatenate([bwd[::-1], fwd[1:]])


@functools.lru_cache(maxsize=8)
def _transformer(src: str, dst: str):
    """A cached pyproj Transformer (building one costs tens of milliseconds)."""
    from pyproj import Transformer

    return Transformer.from_crs(src, dst, always_xy=True)


def _bbox_lonlat(grid: Grid) -> tuple[float, float, float, float]:
    left, bottom, right, top = grid.bounds
    t = np.linspace(0.0, 1.0, 21)
    xs = np.concatenate(
        [
            left + (right - left) * t,
            np.full(21, right),
            right - (right - left) * t,
            np.full(21, left),
        ]
    )
    ys = np.concatenate(
        [
            np.full(21, top),
            top - (top - bottom) * t,
            np.full(21, bottom),
            bottom + (top - bottom) * t,
        ]
    )
    lon, lat = _transformer(grid.crs, "EPSG:4326").transform(xs, ys)
    return (float(np.min(lon)), float(np.min(lat)), float(np.max(lon)), float(np.max(lat)))


def _to20(a: np.ndarray) -> np.ndarray:
    """2x2 block means of the last two axes (edge-padded to even size): 10 m -> 20 m."""
    h, w = a.shape[-2:]
    pad = [(0, 0)] * (a.ndim - 2) + [(0, h % 2), (0, w % 2)]
    if h % 2 or w % 2:
        a = np.pad(a, pad, mode="edge")
    h2, w2 = a.shape[-2] // 2, a.shape[-1] // 2
    return a.reshape(*a.shape[:-2], h2, 2, w2, 2).mean(axis=(-3, -1), dtype="float32")


def _to10(a: np.ndarray, h: int, w: int) -> np.ndarray:
    """Repeat 20 m pixels 2x2 and crop to ``(h, w)``: the nearest-neighbour 10 m view."""
    return np.repeat(np.repeat(a, 2, axis=-2), 2, axis=-1)[..., :h, :w]


# --------------------------------------------------------------------------------------------
# make_scene


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
    from scipy import ndimage

    seed, size, res, (lon0, lat0), n_dates, n_observations = _check_args(
        seed, size, resolution, center, n_dates, n_observations
    )
    streams = np.random.SeedSequence(seed).spawn(6)
    r_terrain, r_network, r_fields, r_optical, r_sar, r_obs = (
        np.random.default_rng(s) for s in streams
    )
    shape = (size, size)

    # ---- grid: centre projected to Alaska Albers, corner snapped to the resolution
    cx, cy = _transformer("EPSG:4326", SCENE_CRS).transform(lon0, lat0)
    left = round((cx - size * res / 2) / res) * res
    top = round((cy + size * res / 2) / res) * res
    grid = Grid(SCENE_CRS, float(left), float(top), res, size, size)
    rows_m = (np.arange(size, dtype="float32") + 0.5) * np.float32(res)  # metres from the top

    # ---- terrain before valleys: regional swell, rolling hills, sharp ridge lines, roughness
    regional = 110 * _field(r_terrain, shape, res, 8000, 80000, 3.0, order=3)
    tilt_dir = r_terrain.uniform(0, 2 * np.pi)
    u = (
        np.cos(tilt_dir) * (rows_m[None, :] - size * res / 2)
        + np.sin(tilt_dir) * (rows_m[:, None] - size * res / 2)
    ).astype("float32")
    regional += 140 * np.tanh(u / 15000).astype("float32")
    del u
    hills = _field(r_terrain, shape, res, 600, 6000, 3.0, order=3)
    ridge_n = _field(r_terrain, shape, res, 1400, 6000, 2.5, order=3)
    ridge = (1 - np.minimum(np.abs(ridge_n), 2.0) / 2) ** 2  # sharp crests where noise crosses 0
    del ridge_n
    rough = _field(r_terrain, shape, res, 30, 300, 2.0)
    dem0 = 470 + regional + 110 * hills + 170 * (ridge - 0.45) + 3 * rough
    del hills, ridge

    # ---- river network: a main river crossing the scene, meandering tributaries off it
    rivers = np.zeros(shape, dtype=bool)
    main_heading = r_network.uniform(0, np.pi)
    main = _crossing(r_network, size, main_heading, res, 0.45, (600.0, 3000.0))
    main_mask = np.zeros(shape, dtype=bool)
    _draw(main_mask, main, width=max(1.0, 30.0 / res))
    rivers |= main_mask
    inside = np.flatnonzero(
        (main[:, 0] >= 0) & (main[:, 0] < size) & (main[:, 1] >= 0) & (main[:, 1] < size)
    )
    n_trib = max(2, int(round(size * res / 1400)))
    tribs = []
    if inside.size:
        for _ in range(n_trib):
            i = int(r_network.choice(inside))
            d = main[min(i + 1, len(main) - 1)] - main[max(i - 1, 0)]
            h_here = math.atan2(-d[0], d[1])
            side = 1 if r_network.random() < 0.5 else -1
            heading = h_here + side * (np.pi / 2 + r_network.uniform(-0.6, 0.6))
            length = r_network.uniform(1500, 4500) / res
            t = _meander(
                r_network,
                tuple(main[i]),
                heading,
                length,
                res,
                amplitude=0.5,
                wavelengths_m=(300.0, 1500.0),
            )
            tribs.append(t)
            if r_network.random() < 0.5 and len(t) > 10:  # a second-order branch
                j = int(r_network.integers(len(t) // 3, len(t)))
                bh = heading + r_network.choice([-1, 1]) * r_network.uniform(0.6, 1.2)
                tribs.append(
                    _meander(
                        r_network,
                        tuple(t[j]),
                        bh,
                        r_network.uniform(800, 2500) / res,
                        res,
                        amplitude=0.5,
                        wavelengths_m=(300.0, 1500.0),
                    )
                )
    for t in tribs:
        _draw(rivers, t, width=max(1.0, 10.0 / res))
    d_river = (ndimage.distance_transform_edt(~rivers) * res).astype("float32")
    d_main = (ndimage.distance_transform_edt(~main_mask) * res).astype("float32")
    del main_mask

    # ---- carve valleys: the ground eases down to a valley floor near every channel
    floor = 230 + 0.5 * regional
    v = 1 - np.exp(-((d_river / 380) ** 1.5))
    v *= 1 - 0.45 * np.exp(-((d_main / 1400) ** 2))
    dem = floor + (dem0 - floor) * v + 1.5 * rough
    del v, floor, dem0, rough, regional
    # soft clip into the interior-Alaska range 150-900 m (monotone, nearly linear mid-range)
    dem = (525 + 375 * np.tanh((dem - 525) / 375)).astype("float32")

    # ---- roads: one along the main valley (offset from the river), one crossing the scene
    roads = np.zeros(shape, dtype=bool)
    valley = _smooth_line(main, max(3, int(1200 / res)))
    side = 1 if r_network.random() < 0.5 else -1
    s = np.arange(len(valley)) * 0.5 * res
    off = side * (170 + 70 * np.sin(2 * np.pi * s / r_network.uniform(2500, 6000))) / res
    road_a = _offset_line(valley, off)
    _draw(roads, road_a, width=1.0)
    road_b = _crossing(
        r_network,
        size,
        main_heading + np.pi / 2 + r_network.uniform(-0.4, 0.4),
        res,
        0.15,
        (2000.0, 6000.0),
    )
    _draw(roads, road_b, width=1.0)
    roads &= ~rivers  # bridges: the channel wins
    d_road = (ndimage.distance_transform_edt(~roads) * res).astype("float32")

    # ---- terrain derivatives
    g_row, g_col = np.gradient(dem, res)
    g_north = -g_row
    slope = np.arctan(np.hypot(g_col, g_north)).astype("float32")  # radians
    aspect = np.arctan2(-g_col, -g_north).astype("float32")  # downslope, clockwise from north
    del g_row, g_col, g_north
    slope_deg = np.degrees(slope)
    # scalars as Python floats: numpy float64 scalars would promote the float32 arrays (NEP 50)
    cos_s, sin_s = np.cos(slope), np.sin(slope)
    zen = math.radians(48.0)
    # insolation relative to flat ground, sun due south: > 1 south-facing, < 1 north-facing
    insol = cos_s + math.tan(zen) * sin_s * np.cos(np.pi - aspect)
    tpi = dem - ndimage.uniform_filter(dem, size=max(3, int(round(500 / res)) | 1), mode="nearest")
    # latitude of each pixel: a plane fitted on a coarse lattice (exact to metres here)
    to_ll = _transformer(SCENE_CRS, "EPSG:4326")
    q = np.linspace(0, size - 1, 5)
    qq_r, qq_c = np.meshgrid(q, q, indexing="ij")
    _, lat_q = to_ll.transform(left + (qq_c.ravel() + 0.5) * res, top - (qq_r.ravel() + 0.5) * res)
    A = np.column_stack([np.ones(qq_r.size), qq_r.ravel(), qq_c.ravel()])
    coef = np.linalg.lstsq(A, np.asarray(lat_q), rcond=None)[0]
    lat = (
        np.float32(coef[0])
        + np.float32(coef[1]) * np.arange(size, dtype="float32")[:, None]
        + np.float32(coef[2]) * np.arange(size, dtype="float32")[None, :]
    )

    # ---- hidden drivers (multi-scale noise the DEM does not show)
    n_wet = _field(r_fields, shape, res, 50, 1500, 2.2)
    n_org = _field(r_fields, shape, res, 80, 2000, 2.5)
    n_veg = _field(r_fields, shape, res, 20, 600, 2.0)
    n_pf_big = _field(r_fields, shape, res, 800, 5000, 3.0)
    n_pf_small = _field(r_fields, shape, res, 60, 400, 2.0)
    n_soil = _field(r_fields, shape, res, 300, 3000, 2.5)
    n_tephra = _field(r_fields, shape, res, 1500, 10000, 3.0)

    wetness = _sigmoid(2.2 * np.exp(-d_river / 150) - tpi / 22 - slope_deg / 7 + 0.8 * n_wet + 0.9)
    # organic mat (moss/peat): thick in wet, shaded ground; it is what keeps permafrost, and what
    # black spruce grows on, but no DEM shows it directly
    organic = 1.4 * wetness + 1.6 * (1 - insol) + 0.7 * n_org
    treeline = 760 + 35 * n_pf_big
    tundra = _sigmoid((dem - treeline) / 25)
    w_spruce = _sigmoid(2.5 * (organic - 0.55)) * (1 - tundra)
    w_decid = _sigmoid(6 * (insol - 1.02) - 2.0 * wetness + 0.6 * n_veg + 0.8) * (1 - tundra)
    w_sedge = _sigmoid(9 * (wetness - 0.78)) * (1 - tundra)
    w_grass = _sigmoid(10 * (insol - 1.32) + 0.5 * n_veg) * (1 - tundra)
    w_tundra = 2.0 * tundra
    total = w_spruce + w_decid + w_sedge + w_grass + w_tundra + 1e-6
    frac = np.stack([w_spruce, w_decid, w_sedge, w_grass, w_tundra]) / total
    del w_decid, w_sedge, w_tundra, total, w_spruce, w_grass, treeline, tundra
    spruce = frac[0].copy()
    grass = frac[3].copy()
    h, w = shape
    covers = np.zeros((7, h, w), dtype="float32")
    covers[:5] = frac
    del frac
    road_zone = roads & ~rivers
    covers[:, rivers] = 0
    covers[5, rivers] = 1
    covers[:, road_zone] = 0
    covers[6, road_zone] = 0.8
    covers[3, road_zone] = 0.2
    # surface reflectance of the cloud-free scene: linear mixture of the cover endmembers
    base = np.tensordot(_ENDMEMBERS, covers, axes=1).astype("float32")  # (9, H, W)
    del covers
    base[7:] *= 1 - 0.3 * wetness  # water in soil and leaves lowers SWIR reflectance
    base *= 1 + 0.04 * n_veg  # within-stand variation
    np.clip(base, 0.001, None, out=base)
    vegetation = ((base[6] - base[0]) / (base[6] + base[0])).astype("float32")

    # ---- hidden truth: permafrost
    logit = (
        -3.2 * (insol - 1)  # north-facing (shaded) slopes keep it, south-facing lose it
        + 2.6 * (spruce - 0.3)  # black spruce on a thick moss mat
        + 1.8 * wetness * spruce  # wet AND shaded by spruce: strongest
        + 1.0 * _sigmoid((330 - dem) / 35)  # cold-air pooling in low valley bottoms
        + 1.3 * _sigmoid((dem - 720) / 40)  # alpine cold
        - 4.5 * np.exp(-d_river / 40)  # taliks under and beside running water
        - 1.5 * np.exp(-d_road / 35)  # thaw along roads (disturbed moss)
        - 0.8 * grass  # dry steppe bluffs
        + 6.0 * (lat - 65.15)  # colder northward (+0.6 per 0.1 degree)
        + 0.9 * n_pf_big
        + 0.55 * n_pf_small
        + 0.35 * n_org
        - 0.55
    )
    permafrost = (logit > 0).astype("uint8")
    del logit, n_pf_big, n_pf_small, n_org, n_wet

    # ---- hidden truth: soil order (Soil Taxonomy keys Gelisols first)
    soil = np.full(shape, SOIL_ORDERS.index("Inceptisols"), dtype="int8")
    steep = slope_deg + 4 * n_soil
    spod = (dem > 520 + 60 * n_soil) & (insol < 1.1) & (wetness < 0.55) & (steep < 24)
    soil[spod] = SOIL_ORDERS.index("Spodosols")
    moll = (grass > 0.25) | ((insol > 1.22 + 0.05 * n_soil) & (wetness < 0.35) & (dem < 650))
    soil[moll] = SOIL_ORDERS.index("Mollisols")
    andi = (n_tephra > 1.0) & (steep < 20) & (wetness < 0.6)
    soil[andi] = SOIL_ORDERS.index("Andisols")
    soil[(steep > 27) | (dem > 860)] = SOIL_ORDERS.index("Entisols")  # thin colluvium, rock
    hist = (wetness > 0.8 + 0.05 * n_soil) & (organic > 2.0)
    soil[hist] = SOIL_ORDERS.index("Histosols")
    soil[(d_main < 90 + 40 * n_soil) | rivers] = SOIL_ORDERS.index("Entisols")  # young alluvium
    soil[permafrost == 1] = SOIL_ORDERS.index("Gelisols")
    # free the working fields before the image stack grows (matters at 4096 px)
    del steep, spod, moll, andi, hist, organic, n_soil, n_tephra, n_veg, d_main, tpi

    # ---- Sentinel-2 L2A-like images: illumination, phenology, haze, clouds, shadows, noise
    years = [2019 + int(round(i * 4 / max(n_dates - 1, 1))) for i in range(n_dates)]
    if n_dates == 1:
        years = [2021]
    doys = np.sort(r_optical.choice(np.arange(160, 236), size=n_dates, replace=n_dates > 76))
    dates = sorted(
        datetime(y, 1, 1, 21, 0, 0, tzinfo=timezone.utc)
        + timedelta(
            days=int(d) - 1,
            minutes=int(r_optical.integers(0, 60)),
            seconds=int(r_optical.integers(0, 60)),
        )
        for y, d in zip(years, doys)
    )
    optical = []
    i20 = [OPTICAL_BANDS.index(b) for b in _BANDS_20M]
    is_water = rivers
    for when in dates:
        doy = when.timetuple().tm_yday
        sz = math.radians(42 + 0.12 * abs(doy - 172) + r_optical.uniform(-1, 1))
        sa = math.radians(r_optical.uniform(165, 185))
        illum = math.sin(sz) * sin_s * np.cos(sa - aspect)
        illum += math.cos(sz) * cos_s
        np.maximum(illum, 0, out=illum)
        illum += 0.45
        illum /= math.cos(sz) + 0.45
        pheno = 1 + r_optical.uniform(-0.06, 0.06) * np.linspace(-1, 1, 9, dtype="float32")
        haze = np.array(
            [0.002, 0.003, 0.005, 0.002, 0.001, 0.001, 0.001, 0.0, 0.0], dtype="float32"
        )
        refl = base * illum[None]
        del illum
        refl *= pheno[:, None, None]
        refl += (haze * r_optical.uniform(0, 1.5))[:, None, None]
        noise = r_optical.standard_normal(refl.shape, dtype=np.float32)
        noise *= np.float32(0.002)
        refl += noise
        del noise
        # clouds: thresholded smooth noise, cover 3-35 %; shadows cast away from the sun
        cover = r_optical.uniform(0.03, 0.35)
        reach = r_optical.uniform(900, 1800) * math.tan(sz) / res  # cloud height x tan(zenith), px
        dr, dc = int(round(-reach * math.cos(sa - np.pi))), int(round(reach * math.sin(sa - np.pi)))
        # clouds over a margin around the scene too: their shadows (km away) fall inside it
        pad = abs(dr) + abs(dc) + 1
        cfield = _field(r_optical, (h + 2 * pad, w + 2 * pad), res, 120, 4000, 3.2)
        thr = float(np.quantile(cfield.ravel()[:: max(1, cfield.size // 200_000)], 1 - cover))
        # shadows of the thicker clouds (optical thickness > 0.5), displaced away from the sun
        shadow = cfield[pad - dr : pad - dr + h, pad - dc : pad - dc + w] > thr + 0.9 * 0.5 ** (
            1 / 0.6
        )
        tau = np.clip((cfield[pad : pad + h, pad : pad + w] - thr) / 0.9, 0, 1) ** 0.6
        del cfield
        cloudy = tau > 0
        shadow &= ~cloudy
        clear = 1 - tau
        for b in range(refl.shape[0]):  # band by band: no (9, H, W) temporaries
            refl[b][shadow] *= np.float32(0.35)
            refl[b] *= clear
            refl[b] += _CLOUD[b] * tau
        del clear
        # 20 m bands are 20 m: block means, then quantised to DN like the archive (1e-4 steps)
        refl20 = _to20(refl[i20])
        np.clip(refl, 1e-4, 6.5, out=refl)
        np.clip(refl20, 1e-4, 6.5, out=refl20)
        for a in (refl, refl20):
            a *= 10000
            np.round(a, out=a)
            a /= np.float32(10000)
        refl[i20] = _to10(refl20, h, w)
        del refl20
        ndvi = (refl[6] - refl[0]) / (refl[6] + refl[0])
        scl = np.where(ndvi > 0.35, 4, 5).astype("uint8")
        scl[is_water] = 6
        scl[shadow] = 3
        scl[cloudy] = 8
        scl[tau > 0.55] = 9
        scl = _to10(scl[::2, ::2], h, w).copy()  # Sen2Cor delivers SCL at 20 m
        optical.append((when, refl.astype("float32", copy=False), scl))
        del tau, shadow, ndvi

    # ---- Sentinel-1 RTC-like gamma0 (linear power), one ascending pass in mid-summer 2021
    sar_when = datetime(2021, 7, 10, 4, 12, 33, tzinfo=timezone.utc) + timedelta(
        days=int(r_sar.integers(0, 20))
    )
    theta = math.radians(38.0)
    look = math.radians(80.0)  # right-looking ascending pass: the beam points ENE
    cos_loc = math.sin(theta) * sin_s * np.cos(aspect - (look + np.pi)) + math.cos(theta) * cos_s
    terr = np.sqrt(np.maximum(cos_loc, 0.05) / math.cos(theta))  # what RTC leaves uncorrected
    del cos_loc, cos_s, sin_s
    forest = spruce + (1 - spruce - grass) * np.clip(vegetation, 0, 1)
    vv = 0.045 * (1 + 1.6 * wetness) * (0.8 + 0.5 * forest) * terr
    vh = 0.008 * (0.45 + 1.8 * forest) * (1 + 0.5 * wetness) * terr
    vv[rivers], vh[rivers] = 0.004, 0.0008
    vv[road_zone], vh[road_zone] = 0.08, 0.006
    looks = 4.4  # equivalent number of looks: multiplicative gamma speckle
    vv *= r_sar.standard_gamma(looks, shape, dtype=np.float32) / np.float32(looks)
    vh *= r_sar.standard_gamma(looks, shape, dtype=np.float32) / np.float32(looks)
    sar = np.stack([vv, vh]).astype("float32")
    del vv, vh, terr, forest

    # ---- field observations: near roads and rivers, partly in clusters (campaign transects)
    observations = _sample_observations(
        r_obs, grid, n_observations, np.minimum(d_road, d_river), rivers | roads, permafrost, soil
    )

    extra = {
        "slope": slope_deg,
        "aspect": np.degrees(aspect) % 360,
        "insolation": insol,
        "spruce": spruce,
        "d_river": d_river,
        "d_road": d_road,
        "latitude": lat,
    }
    return Scene(
        grid=grid,
        dem=dem,
        rivers=rivers,
        roads=roads,
        optical=optical,
        sar=sar,
        sar_datetime=sar_when,
        vegetation=vegetation,
        wetness=wetness,
        permafrost=permafrost,
        soil_order=soil,
        observations=observations,
        seed=seed,
        center=(lon0, lat0),
        extra=extra,
    )


def _sample_observations(
    rng: np.random.Generator,
    grid: Grid,
    n: int,
    d_access: np.ndarray,
    blocked: np.ndarray,
    permafrost: np.ndarray,
    soil: np.ndarray,
) -> pd.DataFrame:
    h, w = d_access.shape
    # access cost: most sites within a few hundred metres of a road or river, none beyond 2 km
    weight = np.exp(-d_access.astype("float64") / 220.0)
    weight[d_access > 2000] = 0
    weight[blocked] = 0  # nobody digs a pit in the channel or on the road
    flat = weight.ravel()
    if flat.sum() <= 0:
        flat = np.ones_like(flat)
    cdf = np.cumsum(flat)
    cdf /= cdf[-1]
    n_cluster = int(round(0.3 * n))
    n_single = n - n_cluster
    idx = np.searchsorted(cdf, rng.random(n_single), side="right").clip(0, flat.size - 1)
    rows, cols = (idx // w).astype("float64"), (idx % w).astype("float64")
    if n_cluster:
        n_centres = max(1, n_cluster // 12)
        cidx = np.searchsorted(cdf, rng.random(n_centres), side="right").clip(0, flat.size - 1)
        which = rng.integers(0, n_centres, n_cluster)
        spread = 120.0 / grid.resolution  # transects a few hundred metres long
        cr = (cidx[which] // w) + rng.normal(0, spread, n_cluster)
        cc = (cidx[which] % w) + rng.normal(0, spread, n_cluster)
        rows = np.concatenate([rows, np.clip(np.floor(cr), 0, h - 1)])
        cols = np.concatenate([cols, np.clip(np.floor(cc), 0, w - 1)])
    # a point anywhere inside its pixel
    x = grid.left + (cols + rng.random(cols.size)) * grid.resolution
    y = grid.top - (rows + rng.random(rows.size)) * grid.resolution
    r_i, c_i = rows.astype("int64"), cols.astype("int64")
    pf = pd.array(permafrost[r_i, c_i].astype("int8"), dtype="Int8")
    so = np.array([SOIL_ORDERS[k] for k in soil[r_i, c_i]], dtype=object)
    unlabelled = rng.random(rows.size) < 0.02
    pf[unlabelled] = pd.NA
    so[unlabelled] = None
    lon, lat = _transformer(grid.crs, "EPSG:4326").transform(x, y)
    df = pd.DataFrame(
        {
            "x": x,
            "y": y,
            "lon": np.asarray(lon, dtype="float64"),
            "lat": np.asarray(lat, dtype="float64"),
            "permafrost": pf,
            "soil_order": so,
        }
    )
    order = rng.permutation(len(df))  # clusters not all at the end
    df = df.iloc[order].reset_index(drop=True)
    df.attrs["crs"] = grid.crs
    return df


# --------------------------------------------------------------------------------------------
# files: COGs, truth rasters, observations, and a manifest write_stac reads


@dataclass(frozen=True)
class SceneFiles:
    """Where :func:`write_scene` put things (absolute paths).

    Attributes
    ----------
    root
        The scene directory (serve it with ``range_server(root)``).
    manifest
        ``root/scene.json``: grid, items and assets, read by :func:`write_stac`.
    items
        ``{item id: {asset key: path}}`` for every Sentinel-2, Sentinel-1 and DEM item.
    truth
        ``{name: path}`` GeoTIFFs of :data:`TRUTH_NAMES`.
    observations_csv, observations_geojson
        The field observations.
    """

    root: Path
    manifest: Path
    items: dict[str, dict[str, Path]]
    truth: dict[str, Path]
    observations_csv: Path
    observations_geojson: Path


def _write_cog(
    path: Path,
    data: np.ndarray,
    transform,
    crs: str,
    *,
    nodata=None,
    resampling="average",
    descriptions: Sequence[str] | None = None,
) -> None:
    """One Cloud-Optimized GeoTIFF (GDAL's COG driver: tiled, overviews, deflate)."""
    import rasterio

    arr = data if data.ndim == 3 else data[None]
    predictor = "3" if arr.dtype.kind == "f" else "2"
    profile = {
        "driver": "COG",
        "width": arr.shape[2],
        "height": arr.shape[1],
        "count": arr.shape[0],
        "dtype": arr.dtype.name,
        "crs": crs,
        "transform": transform,
        "nodata": nodata,
        "compress": "DEFLATE",
        "predictor": predictor,
        # tiles large enough for HTTP reads, small enough that small scenes still get overviews
        "blocksize": 512
        if min(arr.shape[1:]) >= 2048
        else 256
        if min(arr.shape[1:]) >= 512
        else 128,
        "overview_resampling": resampling,
        "bigtiff": "IF_SAFER",
    }
    with rasterio.Env(GDAL_NUM_THREADS="ALL_CPUS"):
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(arr)
            if descriptions:
                for i, d in enumerate(descriptions, start=1):
                    dst.set_band_description(i, d)


def _baseline(when: datetime) -> tuple[str, int]:
    """Sentinel-2 processing baseline and DN offset: from 2022 (baseline 04.00+) DN carry +1000."""
    return ("05.00", 1000) if when.year >= 2022 else ("02.14", 0)


def _s2_item_id(when: datetime, i: int) -> str:
    sat = "S2A" if i % 2 == 0 else "S2B"
    produced = (when + timedelta(days=2)).strftime("%Y%m%dT%H%M%S")
    return f"{sat}_MSIL2A_{when:%Y%m%dT%H%M%S}_R029_T06WVS_{produced}"


def write_scene(scene: Scene, directory: str | os.PathLike[str]) -> SceneFiles:
    """Write the scene as COGs laid out like the real archives, plus truth and observations.

    Layout under ``directory``::

        assets/sentinel-2-l2a/<item id>/B02.tif ... B12.tif, SCL.tif   uint16 DN / uint8
        assets/sentinel-1-rtc/<item id>/vv.tif, vh.tif                 float32 linear gamma0
        assets/cop-dem-glo-30/<item id>/data.tif                       float32 metres
        truth/<name>.tif                                               TRUTH_NAMES
        observations.csv, observations.geojson, scene.json

    Sentinel-2 DN are ``round(reflectance * 10000) + offset`` with ``offset = 1000`` for dates from
    2022 (processing baseline ``05.00``) and ``0`` before (``02.14``), like the real archive; DN 0 is
    nodata. B05-B07, B11, B12 and SCL are written at 20 m, the rest at 10 m. Everything is written
    to a temporary folder first and moved into place, so a failure leaves nothing behind; a
    directory that already holds a scene (``scene.json``) is replaced, any other non-empty one is
    refused.

    Examples
    --------
    >>> files = write_scene(make_scene(size=64), "scene")  # doctest: +SKIP
    >>> sorted(files.truth)  # doctest: +SKIP
    ['elevation', 'permafrost', 'rivers', 'roads', 'soil_order', 'vegetation', 'wetness']
    """
    from affine import Affine

    if not isinstance(scene, Scene):
        raise InputError(f"scene: expected a Scene from make_scene(), got {type(scene).__name__}")
    root = Path(directory).absolute()
    if root.exists() and not root.is_dir():
        raise InputError(f"directory={str(directory)!r} is a file; give a folder for the scene")
    if root.is_dir() and any(root.iterdir()) and not (root / _MANIFEST).is_file():
        raise InputError(
            f"directory={str(directory)!r} is not empty and holds no scene ({_MANIFEST}); "
            "give a new or empty folder so nothing of yours is overwritten"
        )
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; the scene is meant to be served
        items, truth, manifest = _write_scene_files(scene, tmp, Affine)
        (tmp / _MANIFEST).write_text(json.dumps(manifest, indent=1))
        if root.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{root.name}.old-", dir=root.parent))
            os.replace(root, old / "scene")
            os.replace(tmp, root)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

    def rebase(p: Path) -> Path:
        return root / p.relative_to(tmp)

    return SceneFiles(
        root=root,
        manifest=root / _MANIFEST,
        items={k: {a: rebase(p) for a, p in v.items()} for k, v in items.items()},
        truth={k: rebase(p) for k, p in truth.items()},
        observations_csv=root / "observations.csv",
        observations_geojson=root / "observations.geojson",
    )


def _write_scene_files(scene: Scene, out: Path, Affine) -> tuple[dict, dict, dict]:  # noqa: N803
    g = scene.grid
    h, w = g.shape
    t10 = g.transform
    t20 = Affine(2 * g.resolution, 0.0, g.left, 0.0, -2 * g.resolution, g.top)
    shape20 = ((h + 1) // 2, (w + 1) // 2)
    bbox = list(_bbox_lonlat(g))
    epsg = int(g.crs.split(":")[1])
    items: dict[str, dict[str, Path]] = {}
    records: list[dict[str, Any]] = []

    def asset(path: Path, transform, shp, gsd, dtype, nodata, **more) -> dict[str, Any]:
        return {
            "path": path.relative_to(out).as_posix(),
            "proj:shape": [int(shp[0]), int(shp[1])],
            "proj:transform": [
                transform.a,
                transform.b,
                transform.c,
                transform.d,
                transform.e,
                transform.f,
            ],
            "proj:epsg": epsg,
            "gsd": gsd,
            "data_type": dtype,
            "nodata": nodata,
            **more,
        }

    for i, (when, refl, scl) in enumerate(scene.optical):
        baseline, offset = _baseline(when)
        iid = _s2_item_id(when, i)
        folder = out / "assets" / "sentinel-2-l2a" / iid
        folder.mkdir(parents=True)
        paths, assets = {}, {}
        for band in _S2_ASSET_ORDER:
            b = OPTICAL_BANDS.index(band)
            if band in _BANDS_20M:
                src, transform, shp, gsd = refl[b, ::2, ::2], t20, shape20, 20
            else:
                src, transform, shp, gsd = refl[b], t10, (h, w), 10
            dn = np.rint(src * np.float32(10000)).astype("int32") + offset
            dn = np.clip(dn, 1, 65535).astype("uint16")  # 0 is nodata
            p = folder / f"{band}.tif"
            _write_cog(p, dn, transform, g.crs, nodata=0, descriptions=[band])
            paths[band], assets[band] = p, asset(p, transform, shp, gsd, "uint16", 0)
        p = folder / "SCL.tif"
        _write_cog(
            p, scl[::2, ::2], t20, g.crs, nodata=0, resampling="nearest", descriptions=["SCL"]
        )
        paths["SCL"], assets["SCL"] = p, asset(p, t20, shape20, 20, "uint8", 0)
        items[iid] = paths
        scl20 = scl[::2, ::2]
        pct = {
            k: float(np.isin(scl20, v).mean() * 100)
            for k, v in {
                "cloud": (8, 9, 10),
                "shadow": (3,),
                "high": (9,),
                "medium": (8,),
                "veg": (4,),
                "notveg": (5,),
                "water": (6,),
            }.items()
        }
        records.append(
            {
                "collection": "sentinel-2-l2a",
                "id": iid,
                "datetime": when.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "bbox": bbox,
                "properties": {
                    "platform": "Sentinel-2A" if iid.startswith("S2A") else "Sentinel-2B",
                    "constellation": "Sentinel 2",
                    "instruments": ["msi"],
                    "proj:epsg": epsg,
                    "eo:cloud_cover": round(pct["cloud"], 6),
                    "s2:processing_baseline": baseline,
                    "s2:mgrs_tile": "06WVS",
                    "s2:product_type": "S2MSI2A",
                    "s2:high_proba_clouds_percentage": round(pct["high"], 6),
                    "s2:medium_proba_clouds_percentage": round(pct["medium"], 6),
                    "s2:cloud_shadow_percentage": round(pct["shadow"], 6),
                    "s2:vegetation_percentage": round(pct["veg"], 6),
                    "s2:not_vegetated_percentage": round(pct["notveg"], 6),
                    "s2:water_percentage": round(pct["water"], 6),
                    "sat:orbit_state": "descending",
                    "sat:relative_orbit": 29,
                },
                "assets": assets,
            }
        )

    # Sentinel-1 RTC: float32 linear gamma0, nodata -32768 like the Planetary Computer's
    when = scene.sar_datetime
    iid = f"S1A_IW_GRDH_1SDV_{when:%Y%m%dT%H%M%S}_{when + timedelta(seconds=25):%Y%m%dT%H%M%S}_039210_04A0F3_rtc"
    folder = out / "assets" / "sentinel-1-rtc" / iid
    folder.mkdir(parents=True)
    paths, assets = {}, {}
    for k, pol in enumerate(SAR_BANDS):
        p = folder / f"{pol}.tif"
        _write_cog(p, scene.sar[k], t10, g.crs, nodata=-32768.0, descriptions=[pol])
        paths[pol], assets[pol] = p, asset(p, t10, (h, w), 10, "float32", -32768)
    items[iid] = paths
    records.append(
        {
            "collection": "sentinel-1-rtc",
            "id": iid,
            "datetime": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "bbox": bbox,
            "properties": {
                "platform": "SENTINEL-1A",
                "constellation": "Sentinel-1",
                "proj:epsg": epsg,
                "sar:instrument_mode": "IW",
                "sar:frequency_band": "C",
                "sar:center_frequency": 5.405,
                "sar:polarizations": ["VV", "VH"],
                "sar:product_type": "GRD",
                "sar:observation_direction": "right",
                "sat:orbit_state": "ascending",
                "sat:relative_orbit": 94,
                "s1:processing_level": "1",
            },
            "assets": assets,
        }
    )

    # Copernicus DEM GLO-30 (here on the scene's grid)
    iid = "Copernicus_DSM_COG_10_N65_00_W148_00_DEM"
    folder = out / "assets" / "cop-dem-glo-30" / iid
    folder.mkdir(parents=True)
    p = folder / "data.tif"
    _write_cog(p, scene.dem, t10, g.crs, nodata=-32767.0, descriptions=["elevation"])
    items[iid] = {"data": p}
    records.append(
        {
            "collection": "cop-dem-glo-30",
            "id": iid,
            "datetime": "2021-04-22T00:00:00Z",
            "bbox": bbox,
            "properties": {"platform": "tandem-x", "gsd": 30, "proj:epsg": epsg},
            "assets": {"data": asset(p, t10, (h, w), 30, "float32", -32767)},
        }
    )

    # the hidden truth, for scoring
    truth: dict[str, Path] = {}
    (out / "truth").mkdir()
    for name in TRUTH_NAMES:
        arr = {
            "permafrost": scene.permafrost,
            "soil_order": scene.soil_order,
            "vegetation": scene.vegetation,
            "wetness": scene.wetness,
            "elevation": scene.dem,
            "rivers": scene.rivers,
            "roads": scene.roads,
        }[name]
        if arr.dtype == bool:
            arr = arr.astype("uint8")
        p = out / "truth" / f"{name}.tif"
        categorical = arr.dtype.kind in "iu"
        _write_cog(
            p,
            arr,
            t10,
            g.crs,
            nodata=None,
            resampling="nearest" if categorical else "average",
            descriptions=[name],
        )
        truth[name] = p

    obs = scene.observations
    obs.to_csv(out / "observations.csv", index=False)
    (out / "observations.geojson").write_text(json.dumps(_geojson(obs)))

    manifest = {
        "format": _FORMAT,
        "seed": scene.seed,
        "center": list(scene.center),
        "grid": {
            "crs": g.crs,
            "left": g.left,
            "top": g.top,
            "resolution": g.resolution,
            "width": g.width,
            "height": g.height,
        },
        "bbox": bbox,
        "items": records,
    }
    return items, truth, manifest


def _geojson(obs: pd.DataFrame) -> dict[str, Any]:
    feats = []
    for row in obs.itertuples(index=False):
        pf = None if pd.isna(row.permafrost) else int(row.permafrost)
        so = None if row.soil_order is None or pd.isna(row.soil_order) else str(row.soil_order)
        feats.append(
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [float(row.lon), float(row.lat)]},
                "properties": {
                    "x": float(row.x),
                    "y": float(row.y),
                    "permafrost": pf,
                    "soil_order": so,
                },
            }
        )
    return {"type": "FeatureCollection", "features": feats}


# --------------------------------------------------------------------------------------------
# STAC: collections and items for rustac serve (Planetary-Computer-like ids and fields)

_COG_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
_ITEM_EXTENSIONS = [
    "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
    "https://stac-extensions.github.io/projection/v1.1.0/schema.json",
    "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
    "https://stac-extensions.github.io/sat/v1.0.0/schema.json",
]
_COLLECTIONS = {
    "sentinel-2-l2a": {
        "title": "Sentinel-2 Level-2A (synthetic)",
        "description": "Synthetic Sentinel-2 L2A surface reflectance of the miso_xr Alaska-like "
        "scene, as uint16 DN COGs laid out like the Planetary Computer's sentinel-2-l2a: "
        "reflectance = (DN - offset) / 10000, offset 1000 from processing baseline 04.00 (2022).",
        "license": "proprietary",
        "keywords": ["Sentinel", "Copernicus", "Satellite", "Reflectance", "synthetic"],
        "summaries": {
            "gsd": [10, 20],
            "platform": ["Sentinel-2A", "Sentinel-2B"],
            "instruments": ["msi"],
            "constellation": ["Sentinel 2"],
        },
    },
    "sentinel-1-rtc": {
        "title": "Sentinel 1 Radiometrically Terrain Corrected (RTC) (synthetic)",
        "description": "Synthetic Sentinel-1 RTC gamma0 of the miso_xr Alaska-like scene: VV and "
        "VH linear power as float32 COGs, laid out like the Planetary Computer's sentinel-1-rtc.",
        "license": "CC-BY-4.0",
        "keywords": ["Sentinel", "Copernicus", "SAR", "RTC", "synthetic"],
        "summaries": {
            "platform": ["SENTINEL-1A"],
            "constellation": ["Sentinel-1"],
            "sar:polarizations": [["VV", "VH"]],
            "sar:instrument_mode": ["IW"],
            "sar:frequency_band": ["C"],
            "sar:product_type": ["GRD"],
        },
    },
    "cop-dem-glo-30": {
        "title": "Copernicus DEM GLO-30 (synthetic)",
        "description": "Synthetic elevation of the miso_xr Alaska-like scene (metres, float32 "
        "COG), laid out like the Planetary Computer's cop-dem-glo-30.",
        "license": "proprietary",
        "keywords": ["Copernicus", "DEM", "Elevation", "synthetic"],
        "summaries": {"gsd": [30], "platform": ["tandem-x"]},
    },
}


def _eo_band(name: str) -> dict[str, Any]:
    common, desc, cw, fwhm, _ = _S2_BAND_INFO[name]
    return {
        "name": name,
        "common_name": common,
        "description": desc,
        "center_wavelength": cw,
        "full_width_half_max": fwhm,
    }


def _asset_doc(collection: str, key: str, a: dict[str, Any], href: str) -> dict[str, Any]:
    t = a["proj:transform"]
    shp = a["proj:shape"]
    doc: dict[str, Any] = {"href": href, "type": _COG_TYPE, "roles": ["data"]}
    raster = {"nodata": a["nodata"], "data_type": a["data_type"], "spatial_resolution": a["gsd"]}
    if collection == "sentinel-2-l2a" and key != "SCL":
        doc["title"] = f"{_S2_BAND_INFO[key][1]} - {a['gsd']}m"
        doc["gsd"] = a["gsd"]
        doc["eo:bands"] = [_eo_band(key)]
    elif key == "SCL":
        doc["title"] = "Scene classfication map (SCL)"  # sic: the Planetary Computer's spelling
        doc["gsd"] = a["gsd"]
    elif collection == "sentinel-1-rtc":
        doc["title"] = (
            f"{key.upper()}: {'vertical' if key[0] == 'v' else 'horizontal'} transmit, "
            f"{'vertical' if key[1] == 'v' else 'horizontal'} receive"
        )
        doc["description"] = "Terrain-corrected gamma naught values (linear power)."
    else:
        doc["title"] = "Data"
        raster.update(sampling="point", unit="metre")
    doc["proj:epsg"] = a["proj:epsg"]
    doc["proj:shape"] = shp
    doc["proj:transform"] = t
    doc["proj:bbox"] = [t[2], t[5] + t[4] * shp[0], t[2] + t[0] * shp[1], t[5]]
    doc["raster:bands"] = [raster]
    return doc


def write_stac(directory: str | os.PathLike[str], base_url: str) -> list[Path]:
    """Write STAC collections and items for a scene written by :func:`write_scene`.

    Each collection (``sentinel-2-l2a``, ``sentinel-1-rtc``, ``cop-dem-glo-30``) becomes
    ``directory/stac/<id>.collection.json`` and its items ``directory/stac/<id>.items.ndjson``,
    with asset hrefs ``base_url/assets/...``: serve ``directory`` at ``base_url`` (e.g.
    ``range_server(directory)``) and the files with ``rustac serve`` (``stac_api(paths)``).
    Items carry ``datetime``, lon/lat ``bbox`` and ``geometry``, ``proj:epsg``/``proj:shape``/
    ``proj:transform`` on every asset, ``eo:bands`` and ``raster:bands``, ``eo:cloud_cover`` and
    ``s2:processing_baseline`` as the Planetary Computer's do. Rewriting (another ``base_url``)
    replaces the previous files.

    Returns
    -------
    list of Path
        Collection files first, then item files: the order ``rustac serve`` needs.

    Examples
    --------
    >>> paths = write_stac("scene", "http://127.0.0.1:8000")  # doctest: +SKIP
    >>> [p.name for p in paths][:1]  # doctest: +SKIP
    ['sentinel-2-l2a.collection.json']
    """
    from urllib.parse import urlparse

    root = Path(directory).absolute()
    manifest_path = root / _MANIFEST
    if not manifest_path.is_file():
        raise InputError(
            f"directory={str(directory)!r} holds no {_MANIFEST}; write the scene there first with "
            "write_scene(scene, directory)"
        )
    try:
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("format") != _FORMAT:
            raise ValueError(manifest.get("format"))
        records = manifest["items"]
    except (ValueError, KeyError, TypeError):
        raise InputError(
            f"{manifest_path} is not a manifest written by this version of write_scene; "
            "write the scene again with write_scene(scene, directory)"
        ) from None
    if (
        not isinstance(base_url, str)
        or urlparse(base_url).scheme not in ("http", "https", "file")
        or not urlparse(base_url).netloc
        and urlparse(base_url).scheme != "file"
    ):
        raise InputError(
            f"base_url={base_url!r}: expected the URL the scene folder is served at, "
            "e.g. 'http://127.0.0.1:8000' (range_server(directory).url)"
        )
    base = base_url.rstrip("/")
    bbox = manifest["bbox"]
    w0, s0, e0, n0 = bbox
    geometry = {
        "type": "Polygon",
        "coordinates": [[[w0, s0], [e0, s0], [e0, n0], [w0, n0], [w0, s0]]],
    }

    by_coll: dict[str, list[dict[str, Any]]] = {c: [] for c in _COLLECTIONS}
    for rec in records:
        coll = rec["collection"]
        assets = {
            k: _asset_doc(coll, k, a, f"{base}/{a['path']}") for k, a in rec["assets"].items()
        }
        props = {"datetime": rec["datetime"], **rec["properties"]}
        by_coll[coll].append(
            {
                "type": "Feature",
                "stac_version": "1.0.0",
                "stac_extensions": _ITEM_EXTENSIONS,
                "id": rec["id"],
                "collection": coll,
                "bbox": bbox,
                "geometry": geometry,
                "properties": props,
                "links": [],
                "assets": assets,
            }
        )

    tmp = Path(tempfile.mkdtemp(prefix=".stac.tmp-", dir=root))
    try:
        tmp.chmod(0o755)
        written: list[str] = []
        for coll, items in by_coll.items():
            times = sorted(i["properties"]["datetime"] for i in items)
            meta = _COLLECTIONS[coll]
            doc = {
                "type": "Collection",
                "stac_version": "1.0.0",
                "stac_extensions": [
                    "https://stac-extensions.github.io/item-assets/v1.0.0/schema.json"
                ],
                "id": coll,
                "title": meta["title"],
                "description": meta["description"],
                "license": meta["license"],
                "keywords": meta["keywords"],
                "providers": [{"name": "miso_xr synthetic scene", "roles": ["producer", "host"]}],
                "extent": {
                    "spatial": {"bbox": [bbox]},
                    "temporal": {"interval": [[times[0], times[-1]] if times else [None, None]]},
                },
                "summaries": meta["summaries"],
                "item_assets": {
                    k: {
                        kk: vv
                        for kk, vv in v.items()
                        if kk in ("type", "roles", "title", "gsd", "eo:bands")
                    }
                    for k, v in (items[0]["assets"].items() if items else [])
                },
                "links": [],
            }
            (tmp / f"{coll}.collection.json").write_text(json.dumps(doc, indent=1))
            with open(tmp / f"{coll}.items.ndjson", "w") as f:
                for item in items:
                    f.write(json.dumps(item) + "\n")
            written.append(coll)
        final = root / "stac"
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=".stac.old-", dir=root))
            os.replace(final, old / "stac")
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return [final / f"{c}.collection.json" for c in written] + [
        final / f"{c}.items.ndjson" for c in written
    ]
