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
"""

from __future__ import annotations

import copy
import math
import re
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from ..exceptions import (
    CatalogError,
    CatalogUnreachableError,
    InputError,
    MisoError,
    MissingBandError,
    NoItemsFoundError,
)
from .composite import median_composite, mosaic_first
from .grid import OPTICAL_BANDS, SAR_BANDS, Grid, make_cube
from .terrain import TERRAIN_BANDS, terrain

__all__ = [
    "CATALOGS",
    "COLLECTIONS",
    "OPTICAL_BANDS",
    "SAR_BANDS",
    "SCL_MASKED",
    "gdal_env",
    "grid_for_bbox",
    "open_stac",
    "search_items",
]

CATALOGS: dict[str, str] = {
    "planetary-computer": "https://planetarycomputer.microsoft.com/api/stac/v1",
    "earth-search": "https://earth-search.aws.element84.com/v1",
}
MODALITIES = ("optical", "sar", "covariates")
#: default collections searched per modality (``covariates`` is the DEM, see ``dem=``)
COLLECTIONS: dict[str, str] = {
    "optical": "sentinel-2-l2a",
    "sar": "sentinel-1-rtc",
    "covariates": "cop-dem-glo-30",
}
#: collections whose items are accepted for a modality when ``items=`` is given
_ACCEPTED = {
    "optical": {"sentinel-2-l2a", "sentinel-2-c1-l2a"},
    "sar": {"sentinel-1-rtc"},
    "covariates": {"cop-dem-glo-30", "cop-dem-glo-90", "3dep-seamless", "nasadem", "alos-dem"},
}
#: canonical band -> asset keys used by the catalogs (Planetary Computer first, Earth Search next)
ASSET_KEYS: dict[str, tuple[str, ...]] = {
    "B04": ("B04", "red"),
    "B03": ("B03", "green"),
    "B02": ("B02", "blue"),
    "B05": ("B05", "rededge1"),
    "B06": ("B06", "rededge2"),
    "B07": ("B07", "rededge3"),
    "B08": ("B08", "nir"),
    "B11": ("B11", "swir16"),
    "B12": ("B12", "swir22"),
    "SCL": ("SCL", "scl"),
    "vv": ("vv", "VV"),
    "vh": ("vh", "VH"),
    "elevation": ("data", "elevation", "dem", "DEM"),
}
#: SCL classes dropped before the composite: 0 no data, 1 saturated/defective, 3 cloud shadow,
#: 8/9 cloud medium/high probability, 10 thin cirrus, 11 snow/ice (the season is summer: snow
#: there is late snow or misclassified cloud). Kept: 2 dark area, 4 vegetation, 5 not vegetated,
#: 6 water, 7 unclassified (much Arctic tundra falls in 2 and 7).
SCL_MASKED: tuple[int, ...] = (0, 1, 3, 8, 9, 10, 11)

_SEASON = re.compile(r"^(\d{2})-(\d{2})$")


# ----------------------------------------------------------------------------- validation


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


def _catalog_url(catalog: str) -> str:
    if not isinstance(catalog, str):
        raise InputError(f"catalog={catalog!r}: expected a name {sorted(CATALOGS)} or a URL")
    if catalog in CATALOGS:
        return CATALOGS[catalog]
    if catalog.startswith(("http://", "https://")):
        return catalog.rstrip("/")
    raise InputError(
        f"catalog={catalog!r} is not known; use one of {sorted(CATALOGS)} or a STAC API URL "
        "(https://...)"
    )


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


def _parse_time(part: str, *, end: bool) -> pd.Timestamp | None:
    part = part.strip()
    if part in ("", ".."):
        return None
    ts = pd.Timestamp(part)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    if end and "T" not in part:
        # a date-only end is inclusive of that whole day (month, year)
        step = {4: pd.DateOffset(years=1), 7: pd.DateOffset(months=1)}.get(
            len(part), pd.DateOffset(days=1)
        )
        ts = ts + step - pd.Timedelta(microseconds=1)
    return ts


def _check_datetime(datetime: Any) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
    if datetime is None:
        return None, None
    if not isinstance(datetime, str):
        raise InputError(
            f"datetime={datetime!r}: expected a string such as '2019-06-15/2023-08-15'"
        )
    parts = datetime.split("/")
    try:
        if len(parts) == 1:
            return _parse_time(parts[0], end=False), _parse_time(parts[0], end=True)
        if len(parts) == 2:
            start, stop = _parse_time(parts[0], end=False), _parse_time(parts[1], end=True)
            if start is not None and stop is not None and stop < start:
                raise InputError(f"datetime={datetime!r}: the end is before the start")
            return start, stop
    except (ValueError, TypeError) as err:
        if isinstance(err, InputError):
            raise
    raise InputError(
        f"datetime={datetime!r}: expected 'YYYY-MM-DD/YYYY-MM-DD' (ISO 8601, '..' for open ends)"
    )


def _check_season(season: Any) -> tuple[tuple[int, int], tuple[int, int]] | None:
    if season is None:
        return None
    try:
        a, b = season
        ma, mb = _SEASON.match(a), _SEASON.match(b)
        start = (int(ma.group(1)), int(ma.group(2)))
        stop = (int(mb.group(1)), int(mb.group(2)))
        for m, d in (start, stop):
            pd.Timestamp(2020, m, d)  # a leap year: 02-29 is valid
    except (TypeError, ValueError, AttributeError):
        raise InputError(
            f"season={season!r}: expected two 'MM-DD' strings, e.g. ('06-15', '08-15')"
        ) from None
    return start, stop


def _in_season(ts: pd.Timestamp, season: tuple[tuple[int, int], tuple[int, int]]) -> bool:
    md = (ts.month, ts.day)
    start, stop = season
    if start <= stop:
        return start <= md <= stop
    return md >= start or md <= stop  # a window across new year, e.g. ('11-01', '02-28')


# ----------------------------------------------------------------------------- items


def _plain(items: Any) -> list[dict]:
    """Items as plain dicts (deep copies), whatever was given."""
    if isinstance(items, Mapping):
        items = items.get("features", [items]) if items.get("type") != "Feature" else [items]
    out = []
    for it in items:
        if isinstance(it, Mapping):
            out.append(copy.deepcopy(dict(it)))
        elif hasattr(it, "to_dict"):
            out.append(it.to_dict(transform_hrefs=False))
        else:
            raise InputError(
                f"items: got {type(it).__name__}; expected STAC item dicts or pystac Items "
                "(or a pystac ItemCollection)"
            )
    return out


def _restore_epsg(d: dict) -> dict:
    """Put ``proj:epsg`` back where pystac 1.15 wrote ``proj:code`` (stackstac reads only epsg)."""
    for holder in (d.get("properties", {}), *d.get("assets", {}).values()):
        if holder.get("proj:epsg") is None and isinstance(holder.get("proj:code"), str):
            m = re.match(r"^EPSG:(\d+)$", holder["proj:code"].strip(), re.IGNORECASE)
            if m:
                holder["proj:epsg"] = int(m.group(1))
    return d


def _item_time(d: dict) -> pd.Timestamp | None:
    props = d.get("properties", {})
    value = props.get("datetime") or props.get("start_datetime")
    if value is None:
        return None
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _filter_items(
    items: list[dict],
    *,
    window: tuple[pd.Timestamp | None, pd.Timestamp | None],
    season: Any,
    max_cloud: float | None,
) -> list[dict]:
    start, stop = window
    out = []
    for d in items:
        ts = _item_time(d)
        if ts is not None:
            if start is not None and ts < start or stop is not None and ts > stop:
                continue
            if season is not None and not _in_season(ts, season):
                continue
        cloud = d.get("properties", {}).get("eo:cloud_cover")
        if max_cloud is not None and cloud is not None and float(cloud) > max_cloud:
            continue
        out.append(d)
    return out


def _search_windows(window, season) -> list[str | None]:
    """Datetime strings to search: one per year's season window when both ends are known."""
    start, stop = window
    iso = "%Y-%m-%dT%H:%M:%SZ"

    def fmt(a, b):
        return f"{a.strftime(iso) if a is not None else '..'}/{b.strftime(iso) if b is not None else '..'}"

    if start is None and stop is None:
        return [None]
    if season is None or start is None or stop is None or season[0] > season[1]:
        return [fmt(start, stop)]
    out = []
    for year in range(start.year, stop.year + 1):
        a = pd.Timestamp(year, *season[0], tz="UTC")
        b = pd.Timestamp(year, *season[1], tz="UTC") + pd.Timedelta(days=1, microseconds=-1)
        a, b = max(a, start), min(b, stop)
        if a <= b:
            out.append(fmt(a, b))
    return out


def search_items(
    url: str,
    collection: str,
    *,
    bbox: Sequence[float],
    datetime: str | None,
    timeout: float = 30,
    limit: int = 100,
    max_items: int | None = None,
    query: Mapping[str, Any] | None = None,
) -> list[dict]:
    """Items of ``collection`` over ``bbox`` and ``datetime`` from the STAC API at ``url``.

    Searches with POST and follows the pages; returns plain item dicts (``proj:epsg`` kept as the
    API wrote it). Errors: :class:`CatalogUnreachableError` when the API does not answer within
    ``timeout`` seconds (each request), :class:`CatalogError` for other API failures.

    >>> search_items("https://earth-search.aws.element84.com/v1", "cop-dem-glo-30",
    ...              bbox=(-147.6, 65.1, -147.5, 65.15), datetime=None)  # doctest: +SKIP
    """
    import requests
    from pystac_client import Client
    from pystac_client.conformance import ConformanceClasses
    from pystac_client.exceptions import APIError
    from pystac_client.stac_api_io import StacApiIO
    from urllib3.util.retry import Retry

    def fail(err: Exception) -> MisoError:
        status = getattr(err, "status_code", None)
        if isinstance(err, requests.exceptions.RequestException) or (
            isinstance(err, APIError) and status is None
        ):
            return CatalogUnreachableError(
                f"the STAC API {url} did not answer within timeout={timeout} s "
                f"(or refused the connection): {str(err)[:300]}"
            )
        return CatalogError(
            f"the STAC API {url} failed searching {collection!r} (HTTP {status}): {str(err)[:300]}"
        )

    try:
        # a read timeout is not retried, so an API that stalls fails within `timeout`; refused
        # connections are retried once and busy answers (429, 5xx) a few times with back-off
        retry = Retry(
            total=4,
            connect=1,
            read=0,
            status=3,
            backoff_factor=0.5,
            status_forcelist=(429, 502, 503, 504),
            allowed_methods=None,
        )
        io = StacApiIO(timeout=timeout, max_retries=retry)
        client = Client.open(url, stac_io=io, timeout=timeout)
        kwargs: dict[str, Any] = dict(
            collections=[collection], bbox=list(bbox), limit=limit, max_items=max_items
        )
        if datetime is not None:
            kwargs["datetime"] = datetime
        if query and client.conforms_to(ConformanceClasses.QUERY):
            kwargs["query"] = dict(query)
        search = client.search(method="POST", **kwargs)
        return [_restore_epsg(copy.deepcopy(d)) for d in search.items_as_dicts()]
    except (APIError, requests.exceptions.RequestException) as err:
        raise fail(err) from None


def _sign(items: list[dict], url: str) -> list[dict]:
    """Sign Planetary Computer hrefs (SAS tokens) when the ``planetary-computer`` package is there."""
    if url != CATALOGS["planetary-computer"]:
        return items
    try:
        import planetary_computer
    except ImportError:
        return items
    for d in items:
        for asset in d.get("assets", {}).values():
            if "href" in asset:
                asset["href"] = planetary_computer.sign_url(asset["href"])
    return items


def _canonical_assets(items: list[dict], bands: Sequence[str], modality: str) -> list[dict]:
    """Copy each item's asset for a canonical band under that band's name; check all bands exist."""
    found = sorted({k for d in items for k in d.get("assets", {})})
    for band in bands:
        keys = ASSET_KEYS.get(band, (band,))
        if not any(k in d.get("assets", {}) for d in items for k in keys):
            raise MissingBandError(
                f"band {band!r} of modality {modality!r} is in none of the {len(items)} items "
                f"(looked for asset keys {list(keys)}); the items have assets {found}"
            )
    out = []
    for d in items:
        assets = d.get("assets", {})
        new = {}
        for band in bands:
            for k in ASSET_KEYS.get(band, (band,)):
                if k in assets:
                    new[band] = dict(assets[k])
                    break
        out.append({**d, "assets": new})
    return out


def _check_projection(items: list[dict], bands: Sequence[str], modality: str) -> None:
    bad = []
    for d in items:
        props = d.get("properties", {})
        for band, asset in d["assets"].items():
            if asset.get("proj:epsg", props.get("proj:epsg")) is None:
                bad.append(f"{d.get('id')}:{band}")
    if bad:
        raise InputError(
            f"{len(bad)} {modality} asset(s) have no projection metadata (proj:epsg or an "
            f"'EPSG:' proj:code on the item or asset), e.g. {bad[:3]}; stackstac needs it to "
            "place them. Give items with the projection extension (search the API again)"
        )


def _scale_offset(d: dict, band: str, modality: str) -> tuple[float, float, float | None]:
    """(scale, offset, nodata) to turn an asset's stored values into physical ones."""
    asset = d["assets"].get(band, {})
    rb = asset.get("raster:bands") or [{}]
    rb = rb[0] if isinstance(rb, list) and rb else {}
    nodata = rb.get("nodata")
    if "scale" in rb or "offset" in rb:
        scale, offset = float(rb.get("scale", 1.0)), float(rb.get("offset", 0.0))
    elif modality == "optical" and band != "SCL":
        baseline = str(d.get("properties", {}).get("s2:processing_baseline", "0"))
        try:
            new = float(baseline) >= 4.0
        except ValueError:
            new = False
        # baseline 04.00 (Jan 2022) added 1000 to every DN: BOA_ADD_OFFSET = -1000
        scale, offset = 1e-4, (-0.1 if new else 0.0)
    else:
        scale, offset = 1.0, 0.0
    if nodata is None and modality == "optical":
        nodata = 0.0  # Sentinel-2 L2A DN 0 is "no data"
    return scale, offset, (None if nodata is None else float(nodata))


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
    chunks: int,
    resampling: str,
    env,
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


def _optical(items, grid, *, chunks, resampling, scl_mask, env) -> tuple[Any, dict]:
    bands = (*OPTICAL_BANDS, "SCL")
    items = _canonical_assets(items, bands, "optical")
    _check_projection(items, bands, "optical")
    refl_stack = _stack(items, OPTICAL_BANDS, grid, chunks=chunks, resampling=resampling, env=env)
    # the scene classification is categorical: always nearest
    scl = _stack(items, ("SCL",), grid, chunks=chunks, resampling="nearest", env=env)
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


def _sar(items, grid, *, chunks, resampling, sar_units, env) -> tuple[Any, dict]:
    items = _canonical_assets(items, SAR_BANDS, "sar")
    _check_projection(items, SAR_BANDS, "sar")
    stack = _stack(items, SAR_BANDS, grid, chunks=chunks, resampling=resampling, env=env)
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


def _covariates(items, grid, *, chunks, dem_resampling, tpi_radius, env) -> tuple[Any, dict]:
    items = _canonical_assets(items, ("elevation",), "covariates")
    _check_projection(items, ("elevation",), "covariates")
    stack = _stack(items, ("elevation",), grid, chunks=chunks, resampling=dem_resampling, env=env)
    dem = mosaic_first(_physical(stack, items, ("elevation",), "covariates"))
    cov = terrain(dem.sel(band="elevation").data, grid.resolution, tpi_radius=tpi_radius)
    attrs = {
        "units": "elevation m, slope deg, aspect deg from N (-1 flat), curvature 1/m, tpi m, twi",
        "tpi_radius_m": float(tpi_radius),
        "dem_tiles": int(stack.sizes["time"]),
    }
    return cov, attrs


def open_stac(
    *,
    bbox: Sequence[float] | None = None,
    datetime: str | None,
    catalog: str = "planetary-computer",
    modalities: Sequence[str] = ("optical", "covariates"),
    crs: str = "EPSG:3338",
    resolution: float = 10,
    chunks: int = 1024,
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
    sign: bool | Callable[[list[dict]], list[dict]] = True,
    grid: Grid | None = None,
) -> xr.Dataset:
    """A lazy MISO cube (``xr.Dataset``) from a STAC API.

    Parameters
    ----------
    bbox
        ``(west, south, east, north)`` in degrees (WGS84 lon/lat).
    datetime
        Time range, ``"2019-06-15/2023-08-15"`` (ISO 8601, ``..`` for an open end). ``None`` only
        with ``items=``.
    catalog
        ``"planetary-computer"``, ``"earth-search"`` or any STAC API URL.
    modalities
        Among ``"optical"``, ``"sar"``, ``"covariates"``.
    crs, resolution
        The grid: a projected CRS with an EPSG code and the pixel size in metres. The grid's corner
        is the projected bbox's west/north corner (see :func:`grid_for_bbox`).
    chunks
        Dask chunk size in pixels along ``y`` and ``x``.
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
        Override the collection searched per modality, e.g. ``{"optical": "sentinel-2-c1-l2a"}``.
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
    grid
        An exact grid to load onto (e.g. ``Grid.from_dataset(other_cube)`` to align with an
        existing map, or a tiling scheme's tile); it replaces ``crs`` and ``resolution``, and
        ``bbox`` defaults to its footprint in lon/lat.
    sign
        Sign Planetary Computer asset hrefs with ``planetary_computer.sign_url`` when that package
        is installed (``True``), or a function applied to the item dicts.

    Returns
    -------
    xr.Dataset
        Variables ``optical`` ``(optical_band, y, x)``, ``sar`` ``(sar_band, y, x)``,
        ``covariates`` ``(covariates_band, y, x)`` as asked; float32, NaN nodata, dask-backed,
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
    if not (isinstance(chunks, int) and chunks > 0):
        raise InputError(f"chunks={chunks!r}: expected a positive number of pixels")
    if sar_units not in ("linear", "dB"):
        raise InputError(f"sar_units={sar_units!r}: expected 'linear' or 'dB'")
    if max_cloud is not None and not (0 <= float(max_cloud) <= 100):
        raise InputError(f"max_cloud={max_cloud!r}: expected a percentage in [0, 100] or None")
    if items is None and datetime is None:
        raise InputError("datetime=None: give a time range such as '2019-06-15/2023-08-15'")
    colls = dict(COLLECTIONS, covariates=dem)
    colls.update(dict(collections or {}))
    env = gdal_env(timeout=timeout, extra=gdal_options)
    scl_mask = tuple(int(v) for v in scl_mask)

    given = None if items is None else [_restore_epsg(d) for d in _plain(items)]
    per_mod: dict[str, list[dict]] = {}
    for mod in mods:
        coll = colls[mod]
        if given is not None:
            accepted = _ACCEPTED[mod] | {coll}
            found = [
                d
                for d in given
                if d.get("collection") in accepted or d.get("collection") is None and len(mods) == 1
            ]
        else:
            found = []
            seen: set[str] = set()
            for dt in _search_windows(window, season_md):
                query = (
                    {"eo:cloud_cover": {"lte": max_cloud}}
                    if mod == "optical" and max_cloud is not None
                    else None
                )
                for d in search_items(
                    url,
                    coll,
                    bbox=(w, s, e, n),
                    datetime=dt if mod != "covariates" else None,
                    timeout=timeout,
                    limit=limit,
                    max_items=max_items,
                    query=query,
                ):
                    if d.get("id") not in seen:
                        seen.add(d.get("id"))
                        found.append(d)
                if mod == "covariates":
                    break  # a DEM has no season: one search over all time
        if mod != "covariates":
            found = _filter_items(
                found,
                window=window,
                season=season_md,
                max_cloud=max_cloud if mod == "optical" else None,
            )
        if not found:
            where = "in the given items" if given is not None else f"at {url}"
            extra = f", season={season!r}" if season is not None and mod != "covariates" else ""
            cloud = f", max_cloud={max_cloud}" if mod == "optical" and max_cloud is not None else ""
            raise NoItemsFoundError(
                f"no {mod} items of collection {coll!r} {where} for bbox={(w, s, e, n)}, "
                f"datetime={datetime!r}{extra}{cloud}"
            )
        if callable(sign):
            found = sign(found)
        elif sign:
            found = _sign(found, url)
        per_mod[mod] = found

    arrays: dict[str, tuple[Any, Sequence[str]]] = {}
    attrs: dict[str, dict] = {}
    for mod, found in per_mod.items():
        if mod == "optical":
            data, at = _optical(
                found, grid, chunks=chunks, resampling=resampling, scl_mask=scl_mask, env=env
            )
            arrays[mod] = (data, OPTICAL_BANDS)
        elif mod == "sar":
            data, at = _sar(
                found, grid, chunks=chunks, resampling=resampling, sar_units=sar_units, env=env
            )
            arrays[mod] = (data, SAR_BANDS)
        else:
            data, at = _covariates(
                found,
                grid,
                chunks=chunks,
                dem_resampling=dem_resampling,
                tpi_radius=tpi_radius,
                env=env,
            )
            arrays[mod] = (data, TERRAIN_BANDS)
        attrs[mod] = {**at, "collection": colls[mod], "items": len(found)}
    cube = make_cube(
        arrays,
        grid,
        chunks=chunks,
        attrs={
            "source": "STAC",
            "catalog": url,
            "bbox": [w, s, e, n],
            "datetime": str(datetime),
            "season": "" if season is None else "/".join(season),
            "resolution": float(grid.resolution),
            "crs": grid.crs,
        },
    )
    for mod, at in attrs.items():
        cube[mod].attrs.update(at)
    return cube
