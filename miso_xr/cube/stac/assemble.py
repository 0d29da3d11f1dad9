"""open_stac: check the request, gather each modality's items, build the layers, assemble a cube."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import xarray as xr

from ...exceptions import InputError
from ..grid import OPTICAL_BANDS, Grid, make_cube, spatial_chunks
from .catalogs import COLLECTIONS, MODALITIES, SCL_MASKED, _catalog_url
from .climate import (
    CLIMATE_BANDS,
    CLIMATE_YEARS,
    check_climate_layers,
    check_climate_years,
    climate_layer,
)
from .loading import gdal_env
from .modalities import build_layer
from .search import (
    _check_datetime,
    _check_season,
    _plain,
    _restore_epsg,
    datetime_text,
    gather_items,
)
from .signing import read_time_signer, sign_items, signing_reader


def _check_bbox(bbox: Any) -> tuple[float, float, float, float]:
    try:
        vals = tuple(float(v) for v in bbox)
    except (TypeError, ValueError):
        vals = ()
    if len(vals) != 4 or not all(math.isfinite(v) for v in vals):
        raise InputError(
            f"bbox={bbox!r}: expected 4 finite numbers (west, south, east, north) in degrees"
        )
    w, s, e, n = vals
    if not (-180 <= w <= 180 and -180 <= e <= 180 and -90 <= s <= 90 and -90 <= n <= 90):
        raise InputError(
            f"bbox={bbox!r}: outside lon/lat range; expected (west, south, east, north) with "
            "longitudes in [-180, 180] and latitudes in [-90, 90] (lon first, then lat)"
        )
    if not (e > w and n > s):
        raise InputError(
            f"bbox={bbox!r}: expected (west, south, east, north) with east > west and "
            "north > south (did you give (lat, lon) or swap the corners?)"
        )
    return vals


def _check_modalities(modalities: Any) -> tuple[str, ...]:
    if isinstance(modalities, str):
        modalities = (modalities,)
    mods = tuple(modalities)
    bad = [m for m in mods if m not in MODALITIES]
    if bad or not mods or len(set(mods)) != len(mods):
        raise InputError(
            f"modalities={modalities!r}: expected distinct names among {list(MODALITIES)}"
        )
    return mods


def _epsg(crs: Any) -> int:
    from pyproj import CRS

    try:
        code = CRS.from_user_input(crs).to_epsg()
    except Exception as err:  # noqa: BLE001 - pyproj raises several types
        raise InputError(f"crs={crs!r} is not a CRS pyproj understands: {err}") from None
    if code is None:
        raise InputError(f"crs={crs!r} has no EPSG code; give one such as 'EPSG:3338'")
    if CRS.from_epsg(code).is_geographic:
        raise InputError(
            f"crs={crs!r} is geographic (degrees); give a projected CRS in metres such as "
            "'EPSG:3338' (Alaska Albers) or a UTM zone"
        )
    return code


def grid_for_bbox(bbox: Sequence[float], *, crs: str = "EPSG:3338", resolution: float = 10) -> Grid:
    """The cube grid for a lon/lat ``bbox``: the bbox projected to ``crs`` (densified edges).

    The grid's top-left corner is exactly the projected bbox's (west, north) corner: no snapping
    and no half-pixel shift; the width and height round up to whole pixels.

    >>> g = grid_for_bbox((-147.6, 65.1, -147.5, 65.15), crs="EPSG:3338", resolution=10)
    >>> g.crs, g.resolution, g.width > 0
    ('EPSG:3338', 10.0, True)
    """
    from pyproj import Transformer

    w, s, e, n = _check_bbox(bbox)
    epsg = _epsg(crs)
    if not (isinstance(resolution, (int, float)) and math.isfinite(resolution) and resolution > 0):
        raise InputError(f"resolution={resolution!r}: must be a positive pixel size in metres")
    tr = Transformer.from_crs("EPSG:4326", f"EPSG:{epsg}", always_xy=True)
    bounds = tr.transform_bounds(w, s, e, n, densify_pts=21)
    return Grid.from_bounds(bounds, resolution, f"EPSG:{epsg}")


def _grid_lonlat_bbox(grid: Grid) -> tuple[float, float, float, float]:
    from pyproj import Transformer

    tr = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True)
    return tuple(float(v) for v in tr.transform_bounds(*grid.bounds, densify_pts=21))


def open_stac(
    *,
    bbox: Sequence[float] | None = None,
    datetime: Any = None,
    catalog: str = "planetary-computer",
    modalities: Sequence[str] = ("optical", "covariates"),
    crs: str = "EPSG:3338",
    resolution: float = 10,
    chunks: int | str | Mapping[str, Any] | tuple[Any, Any] = 1024,
    items: Any = None,
    season: tuple[str, str] | None = None,
    max_cloud: float | None = 50.0,
    timeout: float = 30,
    dem: str = "cop-dem-glo-30",
    collections: Mapping[str, str] | None = None,
    limit: int = 100,
    max_items: int | None = None,
    scl_mask: Iterable[int] = SCL_MASKED,
    resampling: str = "nearest",
    dem_resampling: str = "bilinear",
    sar_units: str = "linear",
    tpi_radius: float = 300.0,
    gdal_options: Mapping[str, Any] | None = None,
    sign: bool | str | Callable[[list[dict]], list[dict]] = True,
    patch_url: Callable[[str], str] | None = None,
    grid: Grid | None = None,
    climate_years: int | tuple[int, int] = CLIMATE_YEARS,
    climate_layers: Sequence[str] = CLIMATE_BANDS,
) -> xr.Dataset:
    """A lazy MISO cube (``xr.Dataset``) from a STAC API.

    Parameters
    ----------
    bbox
        ``(west, south, east, north)`` in degrees (WGS84 lon/lat).
    datetime
        Time range as pystac-client takes it: ``"2019-06-15/2023-08-15"`` (ISO 8601, ``..`` for
        an open end), a ``datetime`` or ``date``, or a ``(start, end)`` pair of those (``None``
        for an open end). Not needed with ``items=`` (then it only filters them).
    catalog
        ``"planetary-computer"``, ``"earth-search"`` or any STAC API URL.
    modalities
        Among ``"optical"``, ``"sar"``, ``"covariates"``, ``"climate"``.
    crs, resolution
        The grid: a projected CRS with an EPSG code and the pixel size in metres. The grid's corner
        is the projected bbox's west/north corner (see :func:`grid_for_bbox`).
    chunks
        Dask chunks along ``y`` and ``x`` as ``xarray.Dataset.chunk`` takes them: pixels (an int;
        -1 = one chunk), ``"auto"``, or ``{"y": .., "x": ..}``
        (:func:`~miso_xr.cube.grid.spatial_chunks`).
    items
        A pystac ``ItemCollection``, a list of Items or item dicts (or a FeatureCollection dict):
        no search; each item is used for the modality its ``collection`` belongs to.
    season
        ``("MM-DD", "MM-DD")``: keep only scenes in that window of each year of ``datetime``
        (searched year by year).
    max_cloud
        Drop optical scenes whose ``eo:cloud_cover`` is above this percentage (``None``: keep all).
    timeout
        Seconds each request to the STAC API (and each GDAL HTTP read) may take.
    dem
        DEM collection for ``covariates`` (asset ``data``): ``"cop-dem-glo-30"``,
        ``"3dep-seamless"`` (Planetary Computer, US only)...
    collections
        Override the collection searched per modality, e.g. ``{"optical": "sentinel-2-c1-l2a"}``
        or ``{"climate": "terraclimate"}`` (the climate collection's Zarr store is read from the
        collection document at ``catalog``, also with ``items=``).
    limit, max_items
        Page size of the search, and a cap on items per collection (``None``: all).
    scl_mask
        SCL classes dropped before the median (default :data:`SCL_MASKED`).
    resampling, dem_resampling
        GDAL resampling onto the grid for optical/SAR bands and for the DEM (SCL is always nearest).
    sar_units
        ``"linear"`` or ``"dB"``.
    tpi_radius
        Window half-width (m) of TPI and the TWI approximation (:mod:`miso_xr.cube.terrain`).
    gdal_options
        Extra GDAL configuration options for the reads.
    climate_years
        The years the climate layers average: ``(first, last)`` inclusive, or one year. Default
        the WMO climate normal 1991-2020; each year must have all twelve months in the store.
    climate_layers
        Which climate layers, in this order (default all of
        :data:`~miso_xr.cube.stac.climate.CLIMATE_BANDS`).
    grid
        An exact grid to load onto (e.g. ``Grid.from_dataset(other_cube)`` to align with an
        existing map, or a tiling scheme's tile); it replaces ``crs`` and ``resolution``, and
        ``bbox`` defaults to its footprint in lon/lat.
    sign
        ``True``: Planetary Computer hrefs are signed **at read time, on the worker**, when the
        ``planetary-computer`` package is installed, so SAS tokens (about an hour) never expire
        during a long job; ``"search"``: signed once after the search (short jobs only); a
        function: applied to the item dicts after the search; ``False``: no signing.
    patch_url
        An ``href -> href`` function applied when each file is opened, on the worker (as
        odc-stac's ``patch_url``), for archives with their own tokens; it must pickle (a
        module-level function or a ``functools.partial``). It replaces ``sign=True``'s.

    Returns
    -------
    xr.Dataset
        Variables ``optical`` ``(optical_band, y, x)``, ``sar`` ``(sar_band, y, x)``,
        ``covariates`` ``(covariates_band, y, x)``, ``climate`` ``(climate_band, y, x)`` as asked; float32, NaN nodata, dask-backed,
        CRS in ``spatial_ref``. Nothing is read until computed.

    Examples
    --------
    >>> import miso_xr
    >>> cube = miso_xr.open_stac(bbox=(-147.6, 65.1, -147.5, 65.15),
    ...                          datetime="2019-06-15/2023-08-15", season=("06-15", "08-15"),
    ...                          catalog="earth-search")               # doctest: +SKIP
    >>> cube["optical"].dims                                           # doctest: +SKIP
    ('optical_band', 'y', 'x')
    """
    mods = _check_modalities(modalities)
    if grid is not None:
        if not isinstance(grid, Grid):
            raise InputError(
                f"grid={grid!r}: expected a miso_xr.Grid (e.g. Grid.from_dataset(cube))"
            )
        _epsg(grid.crs)
        if bbox is None:
            bbox = _grid_lonlat_bbox(grid)
    elif bbox is None:
        raise InputError("bbox=None: give (west, south, east, north) in degrees, or grid=")
    w, s, e, n = _check_bbox(bbox)
    url = _catalog_url(catalog)
    if grid is None:
        grid = grid_for_bbox((w, s, e, n), crs=crs, resolution=resolution)
    window = _check_datetime(datetime)
    season_md = _check_season(season)
    ychunks, xchunks = spatial_chunks(chunks, grid.shape, bands=len(OPTICAL_BANDS))
    if sar_units not in ("linear", "dB"):
        raise InputError(f"sar_units={sar_units!r}: expected 'linear' or 'dB'")
    if max_cloud is not None and not (0 <= float(max_cloud) <= 100):
        raise InputError(f"max_cloud={max_cloud!r}: expected a percentage in [0, 100] or None")
    years = check_climate_years(climate_years) if "climate" in mods else None
    layers = check_climate_layers(climate_layers) if "climate" in mods else ()
    if items is None and datetime is None and set(mods) != {"climate"}:
        raise InputError(
            "datetime=None: give a time range such as '2019-06-15/2023-08-15' (or items=)"
        )
    colls = dict(COLLECTIONS, covariates=dem)
    colls.update(dict(collections or {}))
    if not (isinstance(sign, bool) or sign == "search" or callable(sign)):
        raise InputError(
            f"sign={sign!r}: expected True (read-time signing), 'search', False or a function "
            "of the item dicts"
        )
    if patch_url is not None and not callable(patch_url):
        raise InputError(f"patch_url={patch_url!r}: expected a function href -> href")
    reader = signing_reader(read_time_signer(url, sign=sign, patch_url=patch_url))
    env = gdal_env(timeout=timeout, extra=gdal_options)
    scl_mask = tuple(int(v) for v in scl_mask)

    given = None if items is None else [_restore_epsg(d) for d in _plain(items)]
    per_mod: dict[str, list[dict]] = {}
    for mod in (m for m in mods if m != "climate"):  # climate: a collection's store, no items
        found = gather_items(
            mod,
            colls[mod],
            given=given,
            alone=len([m for m in mods if m != "climate"]) == 1,
            url=url,
            bbox=(w, s, e, n),
            datetime=datetime,
            window=window,
            season=season,
            season_md=season_md,
            max_cloud=max_cloud,
            timeout=timeout,
            limit=limit,
            max_items=max_items,
        )
        per_mod[mod] = sign_items(found, url, sign=sign)

    arrays: dict[str, tuple[Any, Sequence[str]]] = {}
    attrs: dict[str, dict] = {}
    for mod, found in per_mod.items():
        data, bands, at = build_layer(
            mod,
            found,
            grid,
            chunks=(ychunks, xchunks),
            resampling=resampling,
            dem_resampling=dem_resampling,
            scl_mask=scl_mask,
            sar_units=sar_units,
            tpi_radius=tpi_radius,
            env=env,
            reader=reader,
        )
        arrays[mod] = (data, bands)
        attrs[mod] = {**at, "collection": colls[mod], "items": len(found)}
    if "climate" in mods:
        data, bands, at = climate_layer(
            url,
            colls["climate"],
            grid,
            chunks=(ychunks, xchunks),
            years=years,
            layers=layers,
            timeout=timeout,
            # the store's href is signed when the cube is built (a token in the HTTP params)
            patch_url=read_time_signer(
                url, sign=sign is True or sign == "search", patch_url=patch_url
            ),
        )
        arrays["climate"] = (data, bands)
        attrs["climate"] = {**at, "collection": colls["climate"]}
    arrays = {m: arrays[m] for m in mods}  # the order asked
    cube = make_cube(
        arrays,
        grid,
        chunks={"y": ychunks, "x": xchunks},
        attrs={
            "source": "STAC",
            "catalog": url,
            "bbox": [w, s, e, n],
            "datetime": str(datetime_text(datetime)),
            "season": "" if season is None else "/".join(season),
            "resolution": float(grid.resolution),
            "crs": grid.crs,
        },
    )
    for mod, at in attrs.items():
        cube[mod].attrs.update(at)
    return cube
