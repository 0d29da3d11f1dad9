"""Terrain covariates from a DEM, computed lazily and seam-free over dask chunks.

:func:`terrain` turns an elevation grid into the six covariate bands of the cube convention:
``elevation slope aspect curvature tpi twi``. With a dask array it works chunk by chunk with an
overlap (a halo) of ``tpi radius + 1`` pixels, and each pixel's value depends only on the DEM in
that neighbourhood, computed in the same order whatever the chunk: the result is bit-for-bit the
same for any chunking (``tests/test_cube_terrain.py`` checks this).

What each band is (``r`` = DEM resolution in CRS units, metres for a projected CRS):

- ``elevation``: the DEM, metres.
- ``slope``: degrees, Horn (1981) 3x3 finite differences.
- ``aspect``: degrees clockwise from north (0 = N, 90 = E) of the downslope direction; flat cells
  (zero gradient) get ``-1`` (the ArcGIS convention) rather than NaN, since NaN means nodata.
- ``curvature``: maximal curvature (Wood 1996) of the 3x3 quadratic surface, ``1/m``, positive on
  convex forms (ridges) and negative on concave ones (valleys); slope terms are neglected.
- ``tpi``: topographic position index, metres: elevation minus the mean elevation of the square
  window of half-width ``round(tpi_radius / r)`` pixels around the cell (default 300 m).
- ``twi``: a documented LOCAL approximation of the topographic wetness index ``ln(a / tan b)``.
  A true ``a`` (specific catchment area) needs flow accumulation over the whole basin, which no
  chunked computation with a finite halo can give. Here ``a = r * (1 + (n - 1) * P)`` where ``n`` is
  the number of valid cells of the TPI window and ``P = Phi(-tpi / sd)`` is the fraction of that
  window expected to lie above the cell if the window's elevations were normally distributed
  (``sd`` their standard deviation; ``Phi`` the normal CDF): valleys (negative TPI) get most of the
  window as "upslope area", ridges almost none. ``tan b`` is floored at 0.001. It ranks wet
  hollows and dry crests like a TWI, but its values are not comparable with a flow-routed TWI.

Edges and holes: a NaN neighbour in a 3x3 stencil is extrapolated linearly (through the centre
from the opposite neighbour, or for a corner from its two edge neighbours; the centre value when
neither exists), so slopes at edges are one-sided differences, exact on planes; window means use valid cells only, and a NaN centre gives NaN in every band. The
grid's outer edge is treated as NaN, so edge pixels are computed, not dropped.

Window sums are exact: elevations are rounded to millimetres as int64 and summed with integral
images (wrap-around int64 arithmetic is exact for the window differences), so they do not depend on
where a chunk starts, as floating-point running sums would.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..exceptions import InputError

__all__ = ["TERRAIN_BANDS", "terrain", "terrain_depth"]

TERRAIN_BANDS: tuple[str, ...] = ("elevation", "slope", "aspect", "curvature", "tpi", "twi")
_UNITS = {
    "elevation": "m",
    "slope": "degree",
    "aspect": "degree clockwise from north (-1 = flat)",
    "curvature": "1/m (positive convex)",
    "tpi": "m",
    "twi": "ln(m) (local approximation, see miso_xr.cube.terrain)",
}


def _radius_px(resolution: float, tpi_radius: float) -> int:
    return max(1, int(round(tpi_radius / resolution)))


def terrain_depth(resolution: float, *, tpi_radius: float = 300.0) -> int:
    """Halo, in pixels, that :func:`terrain` needs around each chunk (TPI radius + 1)."""
    return _radius_px(resolution, tpi_radius) + 1


def _box_sum(integral: np.ndarray, r: int, h: int, w: int, d: int) -> np.ndarray:
    """Sums over (2r+1)^2 windows centred on the cells ``[d:d+h, d:d+w]`` from an integral image."""
    top, bottom = d - r, d + r + 1
    left, right = d - r, d + r + 1
    return (
        integral[bottom : bottom + h, right : right + w]
        - integral[top : top + h, right : right + w]
        - integral[bottom : bottom + h, left : left + w]
        + integral[top : top + h, left : left + w]
    )


def _integral(v: np.ndarray) -> np.ndarray:
    out = np.zeros((v.shape[0] + 1, v.shape[1] + 1), dtype=v.dtype)
    # int64 may wrap on big blocks; window differences stay exact modulo 2**64
    np.cumsum(np.cumsum(v, axis=0), axis=1, out=out[1:, 1:])
    return out


def _terrain_padded(z: np.ndarray, resolution: float, r: int, d: int) -> np.ndarray:
    """All bands for the centre of a block padded by ``d`` cells (NaN outside the grid)."""
    from scipy.special import ndtr

    z = np.asarray(z, dtype="float64")
    h, w = z.shape[0] - 2 * d, z.shape[1] - 2 * d
    out = np.full((len(TERRAIN_BANDS), h, w), np.nan, dtype="float32")
    if h <= 0 or w <= 0:
        return out
    valid = np.isfinite(z)
    zc = z[d : d + h, d : d + w]
    centre_ok = valid[d : d + h, d : d + w]

    def raw(dy: int, dx: int) -> np.ndarray:
        return z[d + dy : d + dy + h, d + dx : d + dx + w]

    # a missing neighbour is extrapolated linearly through the centre from the opposite one,
    # then (corners of the grid) from the plane through its two edge-adjacent neighbours, else
    # it is the centre: exact on planes, so edges keep their true slope
    nbr = {}
    for dy, dx in ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)):
        v, o = raw(dy, dx), raw(-dy, -dx)
        nbr[dy, dx] = np.where(np.isfinite(v), v, 2 * zc - o)
    for dy, dx in ((-1, -1), (-1, 1), (1, -1), (1, 1)):
        v = nbr[dy, dx]
        nbr[dy, dx] = np.where(np.isfinite(v), v, nbr[dy, 0] + nbr[0, dx] - zc)
    for key, v in nbr.items():
        nbr[key] = np.where(np.isfinite(v), v, zc)
    a, b, c = nbr[-1, -1], nbr[-1, 0], nbr[-1, 1]
    dd, f = nbr[0, -1], nbr[0, 1]
    g, hh, i = nbr[1, -1], nbr[1, 0], nbr[1, 1]
    res = float(resolution)
    # Horn (1981); rows go south, so north-positive dz/dy is (upper row - lower row)
    dzdx = ((c + 2 * f + i) - (a + 2 * dd + g)) / (8 * res)
    dzdy = ((a + 2 * b + c) - (g + 2 * hh + i)) / (8 * res)
    grad = np.hypot(dzdx, dzdy)
    slope = np.degrees(np.arctan(grad))
    aspect = np.degrees(np.arctan2(-dzdx, -dzdy)) % 360.0
    aspect = np.where(grad == 0, -1.0, aspect)
    zxx = (dd - 2 * zc + f) / res**2
    zyy = (b - 2 * zc + hh) / res**2
    zxy = (c + g - a - i) / (4 * res**2)
    curvature = -(zxx + zyy) / 2 + np.sqrt(((zxx - zyy) / 2) ** 2 + zxy**2)

    zi = np.where(valid, np.rint(np.where(valid, z, 0.0) * 1000.0), 0).astype("int64")
    n = _box_sum(_integral(valid.astype("int64")), r, h, w, d)
    s1 = _box_sum(_integral(zi), r, h, w, d)
    s2 = _box_sum(_integral(zi * zi), r, h, w, d)
    nf = np.maximum(n, 1).astype("float64")
    mean_mm = s1 / nf
    var_mm2 = np.maximum(s2 / nf - mean_mm**2, 0.0)
    tpi = zc - mean_mm / 1000.0
    sd = np.sqrt(var_mm2) / 1000.0
    with np.errstate(divide="ignore", invalid="ignore"):
        zscore = np.where(sd > 0, -tpi / np.where(sd > 0, sd, 1.0), 0.0)
    upslope = ndtr(zscore)
    sca = res * (1.0 + (nf - 1.0) * upslope)
    twi = np.log(sca / np.maximum(grad, 1e-3))

    for k, band in enumerate((zc, slope, aspect, curvature, tpi, twi)):
        out[k] = np.where(centre_ok, band, np.nan)
    return out


def terrain(
    dem: Any,
    resolution: float,
    *,
    tpi_radius: float = 300.0,
    band_dim: str = "covariates_band",
) -> Any:
    """Terrain covariates ``elevation slope aspect curvature tpi twi`` from a DEM.

    Parameters
    ----------
    dem
        Elevation in metres, 2-D ``(y, x)`` (a leading axis of size 1 is dropped): an
        ``xr.DataArray``, a dask array or a numpy array, on a projected grid, north up.
    resolution
        Pixel size in the DEM's CRS units (metres).
    tpi_radius
        Half-width, in CRS units, of the square window of TPI and of the TWI approximation.
    band_dim
        Name of the band dimension of a DataArray result.

    Returns
    -------
    The same kind as ``dem``, float32, bands first: a DataArray ``(band_dim, y, x)`` with band
    names and units in ``attrs["units"]``; a dask array (lazy, computed with a halo of
    :func:`terrain_depth` pixels, identical for any chunking) or a numpy array ``(6, y, x)``.

    Examples
    --------
    >>> import numpy as np
    >>> yy, xx = np.mgrid[0:8, 0:8]
    >>> stack = terrain(10.0 * xx, 10.0, tpi_radius=20)      # rises 1 m per metre eastwards
    >>> round(float(stack[1, 4, 4]), 3), float(stack[2, 4, 4])  # slope 45 deg, facing west
    (45.0, 270.0)
    """
    import dask.array as da

    if not (np.isfinite(resolution) and resolution > 0):
        raise InputError(f"resolution={resolution!r}: must be a positive pixel size in metres")
    if not (np.isfinite(tpi_radius) and tpi_radius > 0):
        raise InputError(f"tpi_radius={tpi_radius!r}: must be a positive distance in metres")
    r = _radius_px(resolution, tpi_radius)
    depth = r + 1

    try:
        import xarray as xr
    except ImportError:  # pragma: no cover - xarray is a dependency
        xr = None
    if xr is not None and isinstance(dem, xr.DataArray):
        da_in = dem.squeeze(drop=True) if dem.ndim == 3 and dem.shape[0] == 1 else dem
        if da_in.ndim != 2:
            raise InputError(
                f"dem has dims {dem.dims} (shape {dem.shape}); terrain needs a 2-D (y, x) DEM"
            )
        data = terrain(da_in.data, resolution, tpi_radius=tpi_radius)
        ydim, xdim = da_in.dims
        coords = {k: v for k, v in da_in.coords.items() if set(v.dims) <= {ydim, xdim}}
        coords[band_dim] = (band_dim, np.array(TERRAIN_BANDS))
        out = xr.DataArray(data, dims=(band_dim, ydim, xdim), coords=coords, name="covariates")
        out.attrs.update(
            units=[_UNITS[b] for b in TERRAIN_BANDS],
            tpi_radius=float(tpi_radius),
            nodata=np.nan,
        )
        return out

    arr = dem
    if getattr(arr, "ndim", None) == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if getattr(arr, "ndim", None) != 2:
        raise InputError(
            f"dem has shape {getattr(dem, 'shape', None)}; terrain needs a 2-D (y, x) DEM"
        )
    if isinstance(arr, da.Array):
        from dask.array.overlap import ensure_minimum_chunksize

        arr = arr.astype("float64")
        if min(arr.shape) <= depth:
            # smaller than one halo: a single chunk, padded like the numpy path
            return arr.rechunk(-1).map_blocks(
                _terrain_numpy,
                resolution,
                r,
                depth,
                new_axis=0,
                chunks=((len(TERRAIN_BANDS),), *((n,) for n in arr.shape)),
                dtype="float32",
                meta=np.empty((0, 0, 0), dtype="float32"),
            )
        # every chunk must be at least as big as the halo so neighbours come from one chunk away
        arr = arr.rechunk(
            tuple(ensure_minimum_chunksize(min(depth, n), c) for n, c in zip(arr.shape, arr.chunks))
        )
        padded = da.overlap.overlap(
            arr, depth={0: depth, 1: depth}, boundary={0: np.nan, 1: np.nan}
        )
        return da.map_blocks(
            _terrain_padded,
            padded,
            resolution,
            r,
            depth,
            new_axis=0,
            chunks=((len(TERRAIN_BANDS),), *arr.chunks),
            dtype="float32",
            meta=np.empty((0, 0, 0), dtype="float32"),
        )
    return _terrain_numpy(arr, resolution, r, depth)


def _terrain_numpy(arr: np.ndarray, resolution: float, r: int, depth: int) -> np.ndarray:
    z = np.pad(np.asarray(arr, dtype="float64"), depth, constant_values=np.nan)
    return _terrain_padded(z, resolution, r, depth)
