"""Open a MISO cube from local rasters (GeoTIFF / COG), lazily, on one grid.

Each layer is one single-band raster file. Layers already on the target grid are read by windows
as they are (exactly); others are warped onto it chunk by chunk through a GDAL ``WarpedVRT``
(bilinear by default, nearest for categorical layers such as land cover). Nothing is read until
the cube is computed; each dask task opens its file itself, so the graph pickles to a cluster.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ..exceptions import InputError
from .grid import Grid, make_cube, spatial_chunks
from .terrain import TERRAIN_BANDS, terrain

__all__ = ["open_rasters", "raster_grid"]

_CANONICAL = {
    "optical": ("B04", "B03", "B02", "B05", "B06", "B07", "B08", "B11", "B12"),
    "sar": ("vv", "vh"),
    "covariates": TERRAIN_BANDS,
}


def raster_grid(path: str | os.PathLike[str]) -> Grid:
    """The :class:`Grid` of a raster file (north-up, square pixels, with a CRS).

    >>> raster_grid("dem.tif")  # doctest: +SKIP
    Grid(crs='EPSG:32606', left=468399.797, top=7235343.183, resolution=50.0, width=310, height=247)
    """
    import rasterio

    with rasterio.open(path) as src:
        t, crs, (h, w) = src.transform, src.crs, src.shape
    if crs is None:
        raise InputError(f"raster {str(path)!r} has no CRS; write one (e.g. gdal_edit.py -a_srs)")
    if t.b != 0 or t.d != 0 or t.e >= 0 or not math.isclose(t.a, -t.e, rel_tol=1e-9):
        raise InputError(
            f"raster {str(path)!r} is not north-up with square pixels (transform {tuple(t)[:6]}); "
            "give like= a Grid or cube to warp it onto"
        )
    epsg = crs.to_epsg()
    return Grid(f"EPSG:{epsg}" if epsg else crs.to_wkt(), t.c, t.f, t.a, w, h)


def _same_crs(a: str, b: str) -> bool:
    from pyproj import CRS

    return CRS.from_user_input(a) == CRS.from_user_input(b)


def _read_block(
    path: str,
    grid: Grid,
    resampling: str,
    aligned: tuple[int, int] | None,
    block_info: dict | None = None,
) -> np.ndarray:
    """One chunk of a layer on ``grid``: float32, NaN where the raster has no data."""
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.vrt import WarpedVRT
    from rasterio.windows import Window

    (r0, r1), (c0, c1) = block_info[None]["array-location"]
    with rasterio.open(path) as src:
        if aligned is not None:
            # same CRS and lattice: an exact windowed read, NaN outside the raster
            # (clipped by hand: rasterio's boundless reads go through a deprecated Affine `*`)
            dr, dc = aligned
            out = np.full((r1 - r0, c1 - c0), np.nan, dtype="float32")
            sr0, sr1 = max(r0 + dr, 0), min(r1 + dr, src.height)
            sc0, sc1 = max(c0 + dc, 0), min(c1 + dc, src.width)
            if sr0 < sr1 and sc0 < sc1:
                win = Window(sc0, sr0, sc1 - sc0, sr1 - sr0)
                part = src.read(1, window=win, masked=True).astype("float32")
                out[sr0 - r0 - dr : sr1 - r0 - dr, sc0 - c0 - dc : sc1 - c0 - dc] = np.ma.filled(
                    part, np.nan
                )
            return out
        else:
            opts: dict[str, Any] = dict(
                crs=grid.crs,
                transform=grid.transform,
                width=grid.width,
                height=grid.height,
                resampling=Resampling[resampling],
            )
            if src.nodata is None:
                opts["add_alpha"] = True  # without a nodata value, mark outside pixels by alpha
            with WarpedVRT(src, **opts) as vrt:
                data = vrt.read(1, window=Window(c0, r0, c1 - c0, r1 - r0), masked=True)
    return np.ma.filled(data.astype("float32"), np.nan)


def _layer(path: str, grid: Grid, *, chunks: tuple[tuple[int, ...], ...], resampling: str) -> Any:
    import dask.array as da

    src_grid = raster_grid(path)
    aligned = None
    if _same_crs(src_grid.crs, grid.crs) and math.isclose(
        src_grid.resolution, grid.resolution, rel_tol=1e-9
    ):
        dc = (grid.left - src_grid.left) / grid.resolution
        dr = (src_grid.top - grid.top) / grid.resolution
        if abs(dc - round(dc)) < 1e-6 and abs(dr - round(dr)) < 1e-6:
            aligned = (int(round(dr)), int(round(dc)))
    return da.map_blocks(
        _read_block,
        path,
        grid,
        resampling,
        aligned,
        chunks=chunks,
        dtype="float32",
        meta=np.empty((0, 0), dtype="float32"),
        name=f"open-raster-{Path(path).name}-" + da.core.tokenize(path, grid, resampling, aligned),
    )


def _order(modality: str, bands: Iterable[str]) -> list[str]:
    bands = list(bands)
    canon = [b for b in _CANONICAL.get(modality, ()) if b in bands]
    return canon + [b for b in bands if b not in canon]


def open_rasters(
    layers: Mapping[str, Mapping[str, str | os.PathLike[str]]],
    *,
    like: Grid | xr.Dataset | xr.DataArray | None = None,
    chunks: int | str | Mapping[str, Any] | tuple[Any, Any] = 1024,
    resampling: str = "bilinear",
    categorical: Iterable[str] = (),
    derive_terrain: bool = False,
    tpi_radius: float = 300.0,
) -> xr.Dataset:
    """A lazy MISO cube from local single-band rasters.

    Parameters
    ----------
    layers
        ``{modality: {band: path}}``, e.g. ``{"covariates": {"elevation": "dem.tif"}}``. Bands of a
        known modality take the canonical order (optical ``B04 B03 ...``, covariates ``elevation
        slope aspect curvature tpi twi``); other bands follow in the order given.
    like
        The target grid: a :class:`Grid`, or a cube whose grid to match. Default: the grid of the
        first raster.
    chunks
        Dask chunks along ``y`` and ``x``, as ``xarray.Dataset.chunk`` takes them: pixels (an
        int; -1 = one chunk), ``"auto"``, or ``{"y": .., "x": ..}``
        (:func:`~miso_xr.cube.grid.spatial_chunks`).
    resampling
        GDAL resampling for continuous layers warped onto the grid (``"bilinear"``, ``"cubic"``,
        ``"nearest"``...). Layers already on the grid's lattice are read exactly.
    categorical
        Band names of categorical layers (land cover codes...), always resampled with nearest.
    derive_terrain
        With ``covariates.elevation`` given, compute the terrain bands not given as files (slope,
        aspect, curvature, tpi, twi; :func:`miso_xr.cube.terrain.terrain`).
    tpi_radius
        Window half-width (m) of the derived TPI and TWI.

    Returns
    -------
    xr.Dataset
        One float32 ``(<modality>_band, y, x)`` variable per modality, NaN nodata, dask-backed.

    Examples
    --------
    >>> import miso_xr
    >>> cube = miso_xr.open_rasters(
    ...     {"covariates": {"elevation": "dem.tif", "landcover": "nlcd.tif"}},
    ...     categorical=("landcover",), derive_terrain=True)          # doctest: +SKIP
    >>> list(cube.covariates_band.values)                              # doctest: +SKIP
    ['elevation', 'slope', 'aspect', 'curvature', 'tpi', 'twi', 'landcover']
    """
    from rasterio.enums import Resampling

    if not isinstance(layers, Mapping) or not layers:
        raise InputError(
            "layers: expected {modality: {band: path}}, e.g. "
            "{'covariates': {'elevation': 'dem.tif'}}"
        )
    if resampling not in Resampling.__members__:
        raise InputError(
            f"resampling={resampling!r}: expected one of {sorted(Resampling.__members__)}"
        )
    categorical = set(categorical)
    paths: dict[str, dict[str, str]] = {}
    missing = []
    for mod, bands in layers.items():
        if not isinstance(bands, Mapping) or not bands:
            raise InputError(
                f"layers[{mod!r}]: expected a non-empty {{band: path}} mapping, got {bands!r}"
            )
        paths[str(mod)] = {}
        for band, p in bands.items():
            p = os.fspath(p)
            if not Path(p).is_file():
                missing.append(f"{mod}.{band}: {p}")
            paths[str(mod)][str(band)] = p
    if missing:
        raise InputError(f"raster file(s) not found: {'; '.join(missing)}")
    unknown_cat = categorical - {b for bands in paths.values() for b in bands}
    if unknown_cat:
        raise InputError(
            f"categorical={sorted(unknown_cat)} names no layer; layers are "
            f"{sorted(b for bands in paths.values() for b in bands)}"
        )

    first = next(iter(next(iter(paths.values())).values()))
    try:
        if like is None:
            grid = raster_grid(first)
        elif isinstance(like, Grid):
            grid = like
        elif isinstance(like, (xr.Dataset, xr.DataArray)):
            grid = Grid.from_dataset(like)
        else:
            raise InputError(f"like={type(like).__name__}: expected a Grid, a cube or None")
        nb = max(len(b) + (len(TERRAIN_BANDS) if derive_terrain else 0) for b in paths.values())
        yx_chunks = spatial_chunks(chunks, grid.shape, bands=nb)
        arrays: dict[str, tuple[Any, list[str]]] = {}
        for mod, bands in paths.items():
            data = {
                b: _layer(
                    p,
                    grid,
                    chunks=yx_chunks,
                    resampling="nearest" if b in categorical else resampling,
                )
                for b, p in bands.items()
            }
            if derive_terrain and mod == "covariates":
                if "elevation" not in data:
                    raise InputError(
                        "derive_terrain=True needs a 'covariates' layer named 'elevation'; "
                        f"got {sorted(data)}"
                    )
                from pyproj import CRS

                if CRS.from_user_input(grid.crs).is_geographic:
                    raise InputError(
                        f"derive_terrain=True needs a projected grid in metres; {grid.crs} is in "
                        "degrees: give like= a projected Grid"
                    )
                derived = terrain(data["elevation"], grid.resolution, tpi_radius=tpi_radius)
                for k, b in enumerate(TERRAIN_BANDS):
                    data.setdefault(b, derived[k])
            order = _order(mod, data)
            arrays[mod] = (_stack([data[b] for b in order]), order)
    except InputError:
        raise
    except Exception as err:  # rasterio/GDAL: not a raster, unreadable header
        raise InputError(f"cannot read the rasters {paths}: {err}") from None
    cube = make_cube(
        arrays, grid, chunks={"y": yx_chunks[0], "x": yx_chunks[1]}, attrs={"source": "rasters"}
    )
    for mod, bands in paths.items():
        cube[mod].attrs["files"] = [f"{b}={p}" for b, p in bands.items()]
        cube[mod].attrs["categorical"] = [b for b in bands if b in categorical]
    return cube


def _stack(arrays: list[Any]) -> Any:
    import dask.array as da

    return da.stack([a.astype("float32") for a in arrays])
