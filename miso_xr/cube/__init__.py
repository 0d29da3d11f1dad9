"""The cube: one regular grid, one ``(<modality>_band, y, x)`` float32 variable per modality.

- :func:`open_stac`: search a STAC API, stack and composite Sentinel-2 / Sentinel-1 / a DEM;
- :func:`open_rasters`: the same convention from local GeoTIFFs;
- :func:`terrain`: terrain covariates from a DEM, lazily and seam-free over dask chunks;
- :class:`Grid`, :func:`make_cube`, :func:`band_dim`, :func:`modality_array`: the convention.

Heavy readers (stackstac, pystac-client, rasterio) are imported only when a cube is opened.
"""

from __future__ import annotations

from .grid import Grid, band_dim, make_cube, modality_array
from .rasters import open_rasters, raster_grid
from .stac import OPTICAL_BANDS, SAR_BANDS, SCL_MASKED, grid_for_bbox, open_stac, search_items
from .terrain import TERRAIN_BANDS, terrain

__all__ = [
    "OPTICAL_BANDS",
    "SAR_BANDS",
    "SCL_MASKED",
    "TERRAIN_BANDS",
    "Grid",
    "band_dim",
    "grid_for_bbox",
    "make_cube",
    "modality_array",
    "open_rasters",
    "open_stac",
    "raster_grid",
    "search_items",
    "terrain",
]
