"""Reading items onto the grid: the GDAL environment, stackstac, physical values per item."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from ...exceptions import InputError, MisoError, NoItemsFoundError
from ..grid import Grid
from .catalogs import _scale_offset


def gdal_env(*, timeout: float = 30, extra: Mapping[str, Any] | None = None):
    """stackstac's GDAL environment with settings for reading COGs over HTTP.

    ``GDAL_DISABLE_READDIR_ON_OPEN=EMPTY_DIR`` (no directory listing per file),
    ``CPL_VSIL_CURL_ALLOWED_EXTENSIONS`` (no probing of side-car files), HTTP timeout and retries.
    """
    from stackstac.rio_reader import DEFAULT_GDAL_ENV

    always = {
        "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
        "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.TIF,.tiff,.TIFF,.jp2",
        "GDAL_HTTP_TIMEOUT": str(int(max(1, math.ceil(timeout)))),
        "GDAL_HTTP_CONNECTTIMEOUT": str(int(max(1, math.ceil(min(timeout, 10))))),
        "GDAL_HTTP_MAX_RETRY": "3",
        "GDAL_HTTP_RETRY_DELAY": "1",
        "GDAL_HTTP_MULTIPLEX": "YES",
        "GDAL_HTTP_VERSION": "2",
        "VSI_CURL_CACHE_SIZE": str(64 * 1024 * 1024),
    }
    always.update({k: str(v) for k, v in (extra or {}).items()})
    return DEFAULT_GDAL_ENV.updated(always=always)


def _stack(
    items: list[dict],
    bands: Sequence[str],
    grid: Grid,
    *,
    chunks: Any,
    resampling: str,
    env,
    reader: Any = None,
) -> xr.DataArray:
    """stackstac onto exactly ``grid``: raw values as float32, NaN fill, pixel-centre coords."""
    import stackstac
    from rasterio.enums import Resampling

    try:
        method = Resampling[resampling]
    except KeyError:
        raise InputError(
            f"resampling={resampling!r}: expected one of {[r.name for r in Resampling]}"
        ) from None
    epsg = int(grid.crs.split(":")[1])
    with warnings.catch_warnings():
        # stackstac 0.5.1 multiplies Affine with `*`, which affine >= 3.1 flags as pending
        # deprecation; nothing a user can act on (reported upstream behaviour, not ours)
        warnings.filterwarnings(
            "ignore", message=r"Use `@` matmul", category=PendingDeprecationWarning
        )
        stack = stackstac.stack(
            items,
            assets=list(bands),
            epsg=epsg,
            resolution=grid.resolution,
            bounds=grid.bounds,
            snap_bounds=False,  # snapping moves the grid: we give exact bounds instead
            xy_coords="center",
            chunksize=chunks,
            dtype=np.dtype("float32"),
            fill_value=np.float32(np.nan),
            rescale=False,  # scale/offset applied per item below (Planetary Computer has none)
            resampling=method,
            properties=False,
            band_coords=False,
            gdal_env=env,
            # a reader that signs each href when it opens it, on the worker (read-time signing)
            **({"reader": reader} if reader is not None else {}),
        )
    if stack.shape[-2:] != grid.shape or not (
        np.allclose(stack["x"].values, grid.x, rtol=0, atol=grid.resolution * 1e-6)
        and np.allclose(stack["y"].values, grid.y, rtol=0, atol=grid.resolution * 1e-6)
    ):
        raise MisoError(
            f"stackstac gave a {stack.shape[-2:]} grid from x={float(stack.x[0])}, "
            f"y={float(stack.y[0])}; expected {grid.shape} from x={grid.x[0]}, y={grid.y[0]}"
        )
    if stack.sizes["time"] == 0:
        raise NoItemsFoundError(
            f"none of the {len(items)} items with assets {list(bands)} overlaps the grid "
            f"{grid.bounds} ({grid.crs}); check bbox against the items' footprints"
        )
    stack = stack.assign_coords(x=grid.x, y=grid.y)
    # stackstac drops a band that no item covers; keep the full band list (NaN)
    return stack.reindex(band=list(bands))


def _per_item(items_kept: Sequence[str], items: list[dict], bands, modality) -> tuple:
    by_id = {d["id"]: d for d in items}
    table = np.array(
        [[_scale_offset(by_id[i], b, modality) for b in bands] for i in items_kept], dtype=object
    )
    scale = np.array([[v[0] for v in row] for row in table], dtype="float32")
    offset = np.array([[v[1] for v in row] for row in table], dtype="float32")
    nodata = np.array(
        [[np.nan if v[2] is None else v[2] for v in row] for row in table], dtype="float32"
    )
    dims = ("time", "band")
    coords = {"band": list(bands)}
    return (
        xr.DataArray(scale, dims=dims, coords=coords),
        xr.DataArray(offset, dims=dims, coords=coords),
        xr.DataArray(nodata, dims=dims, coords=coords),
    )


def _physical(stack: xr.DataArray, items: list[dict], bands, modality) -> xr.DataArray:
    scale, offset, nodata = _per_item(list(stack["id"].values), items, bands, modality)
    raw = stack.sel(band=list(bands))
    value = raw * scale.values[:, :, None, None] + offset.values[:, :, None, None]
    return value.where(raw != nodata.values[:, :, None, None]).astype("float32")
