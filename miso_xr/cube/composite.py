"""Temporal reductions of a ``(time, band, y, x)`` stack: NaN-aware median composite and mosaic.

Both are written without NumPy's ``nanmedian``/``nanargmax`` so that an all-NaN pixel (every scene
cloudy there) gives NaN quietly instead of a ``RuntimeWarning`` from every dask task.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

__all__ = ["median_composite", "mosaic_first", "nanmedian"]


def nanmedian(a: np.ndarray, axis: int = -1) -> np.ndarray:
    """Median along ``axis`` ignoring NaN; NaN where every value is NaN (no warning).

    >>> nanmedian(np.array([[1.0, np.nan, 3.0, 10.0], [np.nan, np.nan, np.nan, np.nan]]))
    array([ 3., nan])
    """
    a = np.moveaxis(np.asarray(a), axis, -1)
    s = np.sort(a, axis=-1)  # NaN sorts last
    n = np.sum(~np.isnan(a), axis=-1)
    if a.shape[-1] == 0:
        return np.full(a.shape[:-1], np.nan, dtype=a.dtype)
    lo = np.clip((n - 1) // 2, 0, None)[..., None]
    hi = np.clip(n // 2, 0, None)[..., None]
    vlo = np.take_along_axis(s, lo, axis=-1)[..., 0]
    vhi = np.take_along_axis(s, hi, axis=-1)[..., 0]
    med = vlo + (vhi - vlo) / 2  # equals vlo exactly when the count is odd
    return np.where(n > 0, med, np.nan).astype(a.dtype, copy=False)


def _first_valid(a: np.ndarray, axis: int = -1) -> np.ndarray:
    a = np.moveaxis(np.asarray(a), axis, -1)
    if a.shape[-1] == 0:
        return np.full(a.shape[:-1], np.nan, dtype=a.dtype)
    ok = ~np.isnan(a)
    idx = np.argmax(ok, axis=-1)[..., None]
    return np.take_along_axis(a, idx, axis=-1)[..., 0]


def _reduce_time(stack: xr.DataArray, func) -> xr.DataArray:
    stack = stack.chunk({"time": -1}) if stack.chunks is not None else stack
    return xr.apply_ufunc(
        func,
        stack,
        input_core_dims=[["time"]],
        dask="parallelized",
        output_dtypes=[stack.dtype],
        keep_attrs=True,
    )


def median_composite(stack: xr.DataArray) -> xr.DataArray:
    """Per-pixel median over ``time`` of a (masked) stack, lazily; NaN where nothing is valid."""
    return _reduce_time(stack, nanmedian)


def mosaic_first(stack: xr.DataArray) -> xr.DataArray:
    """Per-pixel first valid value over ``time`` (tiles of a DEM laid onto one grid)."""
    return _reduce_time(stack, _first_valid)
