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
    a = np.asarray(a)
    axis = axis % a.ndim if a.ndim else 0
    t = a.shape[axis] if a.ndim else 0
    if t == 0:
        return np.full(a.shape[:axis] + a.shape[axis + 1 :], np.nan, dtype=a.dtype)
    n = np.sum(~np.isnan(a), axis=axis)
    if t <= _NETWORK_MAX:
        layers = _sorted_layers(a, axis)
        lo = np.clip((n - 1) // 2, 0, None)
        hi = np.clip(n // 2, 0, None)
        vlo = np.choose(lo, layers)
        vhi = np.choose(hi, layers)
    else:
        s = np.sort(np.moveaxis(a, axis, -1), axis=-1)  # NaN sorts last
        lo = np.clip((n - 1) // 2, 0, None)[..., None]
        hi = np.clip(n // 2, 0, None)[..., None]
        vlo = np.take_along_axis(s, lo, axis=-1)[..., 0]
        vhi = np.take_along_axis(s, hi, axis=-1)[..., 0]
    with np.errstate(invalid="ignore"):  # inf - inf: taken from vlo or masked below
        # vlo when the two middle values agree (odd counts, and infinite values: inf - inf is NaN)
        med = np.where(vlo == vhi, vlo, vlo + (vhi - vlo) / 2)
    return np.where(n > 0, med, np.nan).astype(a.dtype, copy=False)


# A composite has few scenes per pixel (a season over a few years): sorting that many values with
# elementwise min/max over whole layers (an odd-even transposition network, t rounds) is several
# times faster than np.sort over millions of 3-long slices. Beyond this count np.sort wins.
_NETWORK_MAX = 8


def _sorted_layers(a: np.ndarray, axis: int) -> list[np.ndarray]:
    """The layers of ``a`` along ``axis`` sorted elementwise, NaN last (as +inf)."""
    layers = [np.take(a, i, axis=axis) for i in range(a.shape[axis])]  # copies
    for layer in layers:
        np.copyto(layer, np.inf, where=np.isnan(layer))
    t = len(layers)
    for r in range(t):
        for i in range(r % 2, t - 1, 2):
            low = np.minimum(layers[i], layers[i + 1])
            np.maximum(layers[i], layers[i + 1], out=layers[i + 1])
            layers[i] = low
    return layers


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
