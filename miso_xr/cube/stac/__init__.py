"""Open a multimodal MISO cube from a STAC API: search (pystac-client), stack (stackstac), composite.

The cube follows the convention of :mod:`miso_xr.cube.grid`: one regular grid (the bbox projected
to ``crs``, corner exactly at the projected bbox's west/north edge, ``resolution`` pixels), pixel-
centre coordinates, one float32 ``(<modality>_band, y, x)`` variable per modality, NaN nodata,
dask-backed. Nothing is read until the cube is computed.

Modalities
----------
``optical``
    Sentinel-2 L2A (``sentinel-2-l2a``), bands ``B04 B03 B02 B05 B06 B07 B08 B11 B12`` whatever the
    catalog calls its assets (Earth Search: ``red green blue rededge1..3 nir swir16 swir22``), as
    surface reflectance ``DN * scale + offset``: ``raster:bands`` scale/offset when the asset has
    them, else ``1e-4`` and ``-0.1`` for processing baseline >= 04.00 (``s2:processing_baseline``).
    DN 0 is nodata. Pixels whose scene classification (SCL) is in ``scl_mask`` are dropped, then
    the median over the scenes of the season window is taken.
``sar``
    Sentinel-1 RTC (``sentinel-1-rtc``) ``vv``, ``vh``: median over time, linear gamma0 (or dB).
``covariates``
    A DEM (``cop-dem-glo-30`` asset ``data``, or ``dem="3dep-seamless"``...) mosaicked onto the grid
    with bilinear resampling, then :func:`miso_xr.cube.terrain.terrain` derivatives.
``climate``
    ``annual_precipitation``, ``summer_warmth_index``, ``january_tmin`` averaged over
    ``climate_years`` (default 1991-2020) from a monthly climate collection's Zarr store
    (``daymet-monthly-na``, or ``terraclimate``), bilinear onto the grid (:mod:`.climate`).

The package gives each job its module: :mod:`.catalogs` (catalog URLs, collections, asset
keys, value scales), :mod:`.search` (time windows, STAC API searches, items), :mod:`.signing`
(asset hrefs), :mod:`.loading` (stackstac onto the grid, physical values), :mod:`.modalities`
(each modality's composite), :mod:`.climate` (the climate layers from a Zarr store) and
:mod:`.assemble` (:func:`open_stac`).
"""

from __future__ import annotations

from ..grid import OPTICAL_BANDS, SAR_BANDS
from .assemble import grid_for_bbox, open_stac
from .catalogs import ASSET_KEYS as ASSET_KEYS
from .catalogs import CATALOGS, COLLECTIONS, SCL_MASKED
from .catalogs import MODALITIES as MODALITIES
from .climate import CLIMATE_BANDS, CLIMATE_YEARS
from .loading import gdal_env
from .search import search_items

__all__ = [
    "CATALOGS",
    "CLIMATE_BANDS",
    "CLIMATE_YEARS",
    "COLLECTIONS",
    "OPTICAL_BANDS",
    "SAR_BANDS",
    "SCL_MASKED",
    "gdal_env",
    "grid_for_bbox",
    "open_stac",
    "search_items",
]
