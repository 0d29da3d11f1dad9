"""Each modality's layer from its items: load, mask, composite (median) or mosaic, derive.

One function per modality returns ``(dask array (band, y, x), attrs)``; :func:`build_layer`
dispatches on the modality. A new modality (climate layers) adds its function and its branch
here, and its collection and asset keys in :mod:`.catalogs`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..composite import median_composite, mosaic_first
from ..grid import OPTICAL_BANDS, SAR_BANDS, Grid
from ..terrain import TERRAIN_BANDS, terrain
from .catalogs import _canonical_assets, _check_projection
from .loading import _physical, _stack


def _optical(items, grid, *, chunks, resampling, scl_mask, env, reader=None) -> tuple[Any, dict]:
    bands = (*OPTICAL_BANDS, "SCL")
    items = _canonical_assets(items, bands, "optical")
    _check_projection(items, bands, "optical")
    refl_stack = _stack(
        items, OPTICAL_BANDS, grid, chunks=chunks, resampling=resampling, env=env, reader=reader
    )
    # the scene classification is categorical: always nearest
    scl = _stack(items, ("SCL",), grid, chunks=chunks, resampling="nearest", env=env, reader=reader)
    scl = scl.sel(band="SCL", drop=True)
    refl = _physical(refl_stack, items, OPTICAL_BANDS, "optical")
    clear = scl.notnull() & ~scl.isin(list(scl_mask))
    masked = refl.where(clear)
    comp = median_composite(masked).transpose("band", "y", "x")
    attrs = {
        "units": "surface reflectance (1)",
        "composite": "median over time of SCL-clear pixels",
        "scl_masked_classes": list(map(int, scl_mask)),
        "scenes": int(refl_stack.sizes["time"]),
    }
    return comp.data, attrs


def _sar(items, grid, *, chunks, resampling, sar_units, env, reader=None) -> tuple[Any, dict]:
    items = _canonical_assets(items, SAR_BANDS, "sar")
    _check_projection(items, SAR_BANDS, "sar")
    stack = _stack(
        items, SAR_BANDS, grid, chunks=chunks, resampling=resampling, env=env, reader=reader
    )
    value = _physical(stack, items, SAR_BANDS, "sar")
    comp = median_composite(value).transpose("band", "y", "x")
    if sar_units == "dB":
        comp = 10 * np.log10(comp.where(comp > 0))
    attrs = {
        "units": sar_units,
        "quantity": "gamma0 (terrain-corrected backscatter)",
        "composite": "median over time",
        "scenes": int(stack.sizes["time"]),
    }
    return comp.astype("float32").data, attrs


def _covariates(
    items, grid, *, chunks, dem_resampling, tpi_radius, env, reader=None
) -> tuple[Any, dict]:
    items = _canonical_assets(items, ("elevation",), "covariates")
    _check_projection(items, ("elevation",), "covariates")
    stack = _stack(
        items,
        ("elevation",),
        grid,
        chunks=chunks,
        resampling=dem_resampling,
        env=env,
        reader=reader,
    )
    dem = mosaic_first(_physical(stack, items, ("elevation",), "covariates"))
    cov = terrain(dem.sel(band="elevation").data, grid.resolution, tpi_radius=tpi_radius)
    attrs = {
        "units": "elevation m, slope deg, aspect deg from N (-1 flat), curvature 1/m, tpi m, twi",
        "tpi_radius_m": float(tpi_radius),
        "dem_tiles": int(stack.sizes["time"]),
    }
    return cov, attrs


def build_layer(
    modality: str,
    items: list[dict],
    grid: Grid,
    *,
    chunks: Any,
    resampling: str,
    dem_resampling: str,
    scl_mask: tuple[int, ...],
    sar_units: str,
    tpi_radius: float,
    env: Any,
    reader: Any = None,
) -> tuple[Any, tuple[str, ...], dict]:
    """``(data, band names, attrs)`` of one modality's layer from its (signed) items."""
    if modality == "optical":
        data, at = _optical(
            items,
            grid,
            chunks=chunks,
            resampling=resampling,
            scl_mask=scl_mask,
            env=env,
            reader=reader,
        )
        return data, OPTICAL_BANDS, at
    if modality == "sar":
        data, at = _sar(
            items,
            grid,
            chunks=chunks,
            resampling=resampling,
            sar_units=sar_units,
            env=env,
            reader=reader,
        )
        return data, SAR_BANDS, at
    data, at = _covariates(
        items,
        grid,
        chunks=chunks,
        dem_resampling=dem_resampling,
        tpi_radius=tpi_radius,
        env=env,
        reader=reader,
    )
    return data, TERRAIN_BANDS, at
