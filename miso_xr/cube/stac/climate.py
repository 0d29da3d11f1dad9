"""Climate covariates from a gridded climate collection's Zarr store, onto the cube's grid.

The reference MISO uses three climate layers (the ``climate`` modality, in this order):

``annual_precipitation`` (mm / year)
    For each year, the sum of the store's precipitation over the year (twelve monthly totals, or
    the daily totals); then the mean over the years.
``summer_warmth_index`` (°C · month)
    For each year, the sum over the twelve months of ``max(Tmean_m, 0)``, where ``Tmean_m`` is the
    month's mean of ``(tmax + tmin) / 2``: the sum of monthly mean temperatures above freezing;
    then the mean over the years.
``january_tmin`` (°C)
    The mean over the years of January's mean daily minimum temperature (the store's January
    ``tmin``; the mean of January's days for a daily store).

Where a store cell is NaN in any year (the sea) the layer is NaN there.

The store is a collection-level Zarr asset (role ``zarr``, or type ``application/vnd+zarr``) of
the collection, as Planetary Computer's ``daymet-monthly-na`` (1 km, Lambert conformal conic,
``prcp``/``tmax``/``tmin``) and ``terraclimate`` (1/24°, lon/lat, ``ppt``/``tmax``/``tmin``)
describe theirs: the asset's ``xarray:open_kwargs`` and ``xarray:storage_options`` are used, the
store's CRS comes from ``cube:dimensions`` (``reference_system``: EPSG code, PROJJSON or WKT),
else from the variables' CF ``grid_mapping``, else lon/lat dimensions mean EPSG:4326. Zarr format 2
(what Planetary Computer serves) and 3 are read alike.

Reprojection is bilinear (continuous fields): each cube pixel centre is projected into the store's
CRS (exactly at the nodes of a 160 m lattice anchored at the grid's corner, bilinearly between
them) and the layer is interpolated between the four surrounding store cell centres, the weights
of NaN cells left out (NaN when none is valid). The layers of the cells the cube needs (plus a margin
of two cells) are aggregated once, in one small array, and every output chunk interpolates from it
pixel by pixel: the values do not depend on the cube's chunks. Nothing is read until computed
(opening reads the store's metadata and coordinates only).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import numpy as np

from ...exceptions import CatalogError, CatalogUnreachableError, InputError, MissingBandError
from ..grid import Grid

#: the climate modality's bands, in this order (definitions in the module docstring)
CLIMATE_BANDS: tuple[str, ...] = ("annual_precipitation", "summer_warmth_index", "january_tmin")
#: the years averaged by default: the WMO climate normal 1991-2020 (first, last; inclusive)
CLIMATE_YEARS: tuple[int, int] = (1991, 2020)
#: store variable names per quantity: Daymet first, TerraClimate next, CMIP-style last
CLIMATE_VARIABLES: dict[str, tuple[str, ...]] = {
    "precipitation": ("prcp", "ppt", "pr"),
    "tmax": ("tmax", "tasmax"),
    "tmin": ("tmin", "tasmin"),
}
_NEEDS = {
    "annual_precipitation": ("precipitation",),
    "summer_warmth_index": ("tmax", "tmin"),
    "january_tmin": ("tmin",),
}
_UNITS = {
    "annual_precipitation": "mm/year",
    "summer_warmth_index": "degC month",
    "january_tmin": "degC",
}
_PRECIP_UNITS = {"mm", "millimeter", "millimeters", "millimetre", "millimetres", "kg m-2", "kg/m2"}
_CELSIUS = {"degrees c", "degc", "c", "celsius", "degree_celsius", "degrees_celsius", "°c"}
_KELVIN = {"k", "kelvin"}
_ZARR_TYPES = {"application/vnd+zarr", "application/vnd.zarr"}
_EXAMPLES = "such as 'daymet-monthly-na' or 'terraclimate' (Planetary Computer)"


def check_climate_years(years: Any) -> tuple[int, int]:
    """``climate_years=`` as ``(first, last)``, inclusive: an int (one year) or a pair of ints.

    >>> check_climate_years(2019), check_climate_years((1991, 2020))
    ((2019, 2019), (1991, 2020))
    """
    help_ = "expected a year (2019) or a (first, last) pair of years such as (1991, 2020)"
    if isinstance(years, (int, np.integer)) and not isinstance(years, bool):
        return int(years), int(years)
    try:
        first, last = years
        ok = all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in (first, last)
        )
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise InputError(f"climate_years={years!r}: {help_}")
    if last < first:
        raise InputError(f"climate_years={years!r}: the last year is before the first; {help_}")
    return int(first), int(last)


def check_climate_layers(layers: Any) -> tuple[str, ...]:
    """``climate_layers=``: distinct names among :data:`CLIMATE_BANDS` (a subset, in any order)."""
    if isinstance(layers, str):
        layers = (layers,)
    try:
        out = tuple(layers)
    except TypeError:
        out = ()
    bad = [v for v in out if v not in CLIMATE_BANDS]
    if bad or not out or len(set(out)) != len(out):
        raise MissingBandError(
            f"climate_layers={layers!r}: unknown or repeated layer(s) {bad}; expected distinct "
            f"names among {list(CLIMATE_BANDS)}"
        )
    return out


def fetch_collection(url: str, collection: str, *, timeout: float) -> dict:
    """The collection document ``{url}/collections/{collection}`` of a STAC API."""
    import requests

    def get(path: str) -> requests.Response:
        try:
            return requests.get(f"{url}/{path}", timeout=timeout)
        except requests.exceptions.RequestException as err:
            raise CatalogUnreachableError(
                f"the STAC API {url} did not answer within timeout={timeout} s "
                f"(or refused the connection): {str(err)[:300]}"
            ) from None

    r = get(f"collections/{collection}")
    if r.status_code == 404:
        listing = get("collections")
        try:
            have = sorted(c.get("id") for c in listing.json().get("collections", []))
        except ValueError:
            have = []
        raise CatalogError(
            f"the STAC API {url} has no collection {collection!r} for the climate modality; "
            f"give a gridded monthly climate collection with a Zarr asset {_EXAMPLES} with "
            f"collections={{'climate': ...}}. The catalog has {have}"
        )
    if not r.ok:
        raise CatalogError(
            f"the STAC API {url} failed giving collection {collection!r} (HTTP {r.status_code})"
        )
    return r.json()


def zarr_asset(coll: dict) -> tuple[str, dict]:
    """``(key, asset)`` of the collection's Zarr store: HTTP(S) first, then abfs/az."""
    cid = coll.get("id")
    found = {
        k: a
        for k, a in (coll.get("assets") or {}).items()
        if "zarr" in (a.get("roles") or []) or a.get("type") in _ZARR_TYPES
    }
    if not found:
        raise CatalogError(
            f"collection {cid!r} has no Zarr asset (role 'zarr' or type 'application/vnd+zarr'; "
            f"its assets: {sorted(coll.get('assets') or {})}); the climate modality needs a "
            f"gridded climate store {_EXAMPLES}"
        )
    for k, a in found.items():
        if str(a.get("href", "")).startswith(("http://", "https://")):
            return k, a
    return next(iter(found.items()))


def _with_params(href: str, options: dict) -> tuple[str, dict]:
    """A query string (a SAS token) moved into the HTTP options: keys are appended to the path."""
    parts = urlsplit(href)
    if not parts.query or not parts.scheme.startswith("http"):
        return href, options
    params = dict(options.get("params") or {})
    params.update(parse_qsl(parts.query, keep_blank_values=True))
    return urlunsplit(parts._replace(query="")), {**options, "params": params}


def open_store(asset: dict, *, patch_url: Callable[[str], str] | None = None) -> tuple[Any, str]:
    """The asset's Zarr store as a lazy ``xr.Dataset`` (format 2 or 3) and its href."""
    import xarray as xr

    href = str(asset.get("href", ""))
    kwargs = dict(asset.get("xarray:open_kwargs") or {})
    options = dict(kwargs.pop("storage_options", None) or {})
    options.update(asset.get("xarray:storage_options") or {})
    kwargs.pop("engine", None)
    kwargs.setdefault("chunks", {})
    if patch_url is not None:
        href = patch_url(href)
    href, options = _with_params(href, options)
    try:
        ds = xr.open_zarr(href, storage_options=options or None, **kwargs)
    except (FileNotFoundError, KeyError) as err:
        raise CatalogError(f"the climate store {href} could not be opened as Zarr: {err}") from None
    except ImportError as err:
        raise InputError(
            f"the climate store {href} needs a package that is missing ({err}); for abfs:// or "
            "az:// stores install adlfs, for http(s):// stores aiohttp"
        ) from None
    return ds, urlunsplit(urlsplit(href)._replace(query=""))


def _spatial_dims(coll: dict, ds: Any) -> tuple[str, str, Any]:
    """``(x_dim, y_dim, reference_system or None)`` from ``cube:dimensions``, else the store."""
    dims = coll.get("cube:dimensions") or {}
    xs = [k for k, d in dims.items() if d.get("type") == "spatial" and d.get("axis") == "x"]
    ys = [k for k, d in dims.items() if d.get("type") == "spatial" and d.get("axis") == "y"]
    if xs and ys and xs[0] in ds.dims and ys[0] in ds.dims:
        return xs[0], ys[0], dims[xs[0]].get("reference_system")
    for x, y in (("x", "y"), ("lon", "lat"), ("longitude", "latitude")):
        if x in ds.dims and y in ds.dims:
            return x, y, None
    raise InputError(
        f"collection {coll.get('id')!r}: cannot tell the store's spatial dimensions (dims "
        f"{sorted(map(str, ds.dims))}); its cube:dimensions should give axis 'x' and 'y'"
    )


def _store_crs(coll: dict, ds: Any, xdim: str, ydim: str, ref: Any, variables: Sequence[str]):
    from pyproj import CRS

    cid = coll.get("id")
    try:
        if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
            return CRS.from_epsg(int(ref))
        if isinstance(ref, dict):
            return CRS.from_json_dict(ref)
        if isinstance(ref, str):
            return CRS.from_user_input(ref)
        for v in variables:
            gm = ds[v].attrs.get("grid_mapping") or ds[v].encoding.get("grid_mapping")
            if gm and gm in ds.variables:
                return CRS.from_cf(dict(ds[gm].attrs))
    except Exception as err:  # noqa: BLE001 - pyproj raises several types
        raise InputError(
            f"collection {cid!r}: the store's CRS ({ref!r}) is not one pyproj reads: {err}"
        ) from None
    if xdim in ("lon", "longitude") and ydim in ("lat", "latitude"):
        return CRS.from_epsg(4326)
    raise InputError(
        f"collection {cid!r}: the store's CRS is unknown; give cube:dimensions a "
        "reference_system (EPSG code, PROJJSON or WKT) or the variables a CF grid_mapping"
    )


def _variables(ds: Any, href: str, cid: str, layers: Sequence[str]) -> dict[str, str]:
    """Quantity -> the store's variable name, for what ``layers`` need."""
    need = sorted({q for layer in layers for q in _NEEDS[layer]})
    timed = sorted(str(v) for v in ds.data_vars if "time" in ds[v].dims)
    out: dict[str, str] = {}
    for q in need:
        name = next((v for v in CLIMATE_VARIABLES[q] if v in ds.data_vars), None)
        if name is None:
            raise MissingBandError(
                f"the climate store {href} (collection {cid!r}) has no {q} variable (looked for "
                f"{list(CLIMATE_VARIABLES[q])}) needed by {[x for x in layers if q in _NEEDS[x]]}; "
                f"its time-varying variables are {timed}. Give a monthly store with precipitation, "
                f"tmax and tmin {_EXAMPLES}"
            )
        if "time" not in ds[name].dims:
            raise MissingBandError(
                f"the climate store {href}: variable {name!r} has no 'time' dimension "
                f"(dims {ds[name].dims}); the climate layers need monthly or daily values"
            )
        out[q] = name
    return out


def _units(da: Any, quantity: str, href: str) -> float:
    """Offset to add to reach mm (precipitation) or °C (temperatures)."""
    units = str(da.attrs.get("units", "")).strip().lower()
    if quantity == "precipitation":
        if units in _PRECIP_UNITS or not units:
            return 0.0
        want = "mm per time step"
    else:
        if units in _CELSIUS or not units:
            return 0.0
        if units in _KELVIN:
            return -273.15
        want = "degrees C or K"
    raise InputError(
        f"the climate store {href}: variable {da.name!r} has units {units!r}; expected {want}"
    )


def _check_years(ds: Any, years: tuple[int, int], href: str, cid: str) -> None:
    if "time" not in ds.coords:
        raise MissingBandError(f"the climate store {href} (collection {cid!r}) has no time axis")
    # .dt works for numpy and cftime calendars alike (a daily store may be 365-day)
    year, month = ds["time"].dt.year.values, ds["time"].dt.month.values
    complete = sorted(int(y) for y in np.unique(year) if np.unique(month[year == y]).size == 12)
    missing = [y for y in range(years[0], years[1] + 1) if y not in complete]
    if missing:
        have = f"{complete[0]}-{complete[-1]}" if complete else "none"
        hint = f", e.g. climate_years=({complete[0]}, {complete[-1]})" if complete else ""
        raise InputError(
            f"climate_years={years}: the climate store {href} (collection {cid!r}) lacks "
            f"complete years {missing[:5]}{'...' if len(missing) > 5 else ''}; it has all "
            f"twelve months of years {have}. Give years within them{hint}"
        )


def _window(coords: np.ndarray, lo: float, hi: float, cid: str, dim: str) -> slice:
    """Index slice of ``coords`` covering [lo, hi] with two cells to spare on each side."""
    inside = np.nonzero((coords >= lo) & (coords <= hi))[0]
    if coords.size < 2:
        raise InputError(f"collection {cid!r}: the store's {dim} axis has fewer than 2 cells")
    if inside.size == 0:
        # the cube may sit between two cell centres: take the cells around it
        near = int(np.argmin(np.abs(coords - (lo + hi) / 2)))
        inside = np.array([near])
    a, b = max(int(inside.min()) - 2, 0), min(int(inside.max()) + 3, coords.size)
    return slice(a, b)


def _by_month(da: Any, how: str) -> Any:
    """``(time, y, x)`` of whole years -> ``(year, month, y, x)``: monthly totals or means."""
    t = da["time"]
    if np.unique(t.dt.year.values * 12 + t.dt.month.values).size != t.size:
        # daily (or finer) values: the month's total (precipitation) or mean (temperatures)
        r = da.resample(time="MS")
        da = r.sum(skipna=False) if how == "sum" else r.mean(skipna=False)
    return da.coarsen(time=12).construct(time=("year", "month"))


def _aggregate(ds: Any, names: dict[str, str], offsets: dict[str, float], layers, years):
    """The layers on the store cells, ``(layer, y, x)`` float64 (dask), from whole years."""
    import xarray as xr

    sel = ds.sel(time=slice(f"{years[0]}-01-01", f"{years[1]}-12-31"))
    if not sel.indexes["time"].is_monotonic_increasing:
        sel = sel.sortby("time")

    def value(q: str, how: str) -> Any:
        return _by_month(sel[names[q]].astype("float64") + offsets[q], how)

    out = []
    for layer in layers:
        if layer == "annual_precipitation":
            v = value("precipitation", "sum").sum("month", skipna=False)
        elif layer == "summer_warmth_index":
            tmean = (value("tmax", "mean") + value("tmin", "mean")) / 2
            warm = tmean.where((tmean > 0) | tmean.isnull(), 0.0)  # NaN (the sea) stays NaN
            v = warm.sum("month", skipna=False)
        else:
            v = value("tmin", "mean").isel(month=0)
        v = v.mean("year", skipna=False)
        out.append(v.drop_vars([c for c in v.coords if c not in v.dims]))
    return xr.concat(out, dim="layer")


@functools.lru_cache(maxsize=16)
def _transformer(src: str, dst: str):
    from pyproj import Transformer

    return Transformer.from_crs(src, dst, always_xy=True)


def _fractional(coords: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Fractional index of ``values`` along monotonic ``coords`` (NaN outside)."""
    idx = np.arange(coords.size, dtype="float64")
    if coords[0] > coords[-1]:
        coords, idx = coords[::-1], idx[::-1]
    return np.interp(values, coords, idx, left=np.nan, right=np.nan)


#: metres between the exactly projected nodes of the cube's lattice (see :func:`project_pixels`)
LATTICE_M = 160.0


def project_pixels(
    x: np.ndarray,
    y: np.ndarray,
    *,
    origin: tuple[float, float, float],
    src_crs: str,
    dst_crs: str,
    lattice: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Pixel centres ``x`` (columns) and ``y`` (rows) of the cube -> the store's CRS, 2-D.

    Projecting every 10 m pixel costs about a second per megapixel; a projection is smooth, so
    only the nodes of a lattice anchored at the grid's corner (``origin`` = left, top,
    resolution; a node every ``lattice`` pixels, default :data:`LATTICE_M` metres: 16 pixels at
    10 m, every pixel at 160 m or coarser) are projected exactly and the pixels between are
    interpolated bilinearly: from EPSG:3338 at 10 m the error is below 0.3 mm into Daymet's
    Lambert conformal conic and below 3 mm into lon/lat, across Alaska. The nodes belong to the
    grid, not to a chunk: a pixel gets the same coordinates whatever chunk it is in.
    """
    left, top, res = origin
    k = int(lattice) if lattice is not None else max(1, int(LATTICE_M // res))
    col = np.rint((x - left) / res - 0.5).astype("int64")
    row = np.rint((top - y) / res - 0.5).astype("int64")
    rows = np.arange(row.min() // k * k, row.max() // k * k + k + 1, k)
    cols = np.arange(col.min() // k * k, col.max() // k * k + k + 1, k)
    nx_, ny_ = np.meshgrid(left + (cols + 0.5) * res, top - (rows + 0.5) * res)
    node_x, node_y = _transformer(dst_crs, src_crs).transform(nx_, ny_)
    node_x = np.where(np.isfinite(node_x), node_x, np.nan)
    node_y = np.where(np.isfinite(node_y), node_y, np.nan)
    a, b = (row - rows[0]) // k, (col - cols[0]) // k
    wr, wc = ((row % k) / k)[:, None], (col % k) / k

    def interp(n: np.ndarray) -> np.ndarray:
        # along the columns on the node rows first (small), then along the rows
        across = n[:, b] * (1 - wc) + n[:, b + 1] * wc
        return across[a] * (1 - wr) + across[a + 1] * wr

    return interp(node_x), interp(node_y)


def bilinear_block(
    field: np.ndarray,
    *,
    src_x: np.ndarray,
    src_y: np.ndarray,
    sx: np.ndarray,
    sy: np.ndarray,
) -> np.ndarray:
    """``field`` ``(L, ny, nx)`` on store cell centres ``src_y`` x ``src_x``, bilinear at the
    points ``sx``, ``sy`` (2-D, in the store's CRS) -> ``(L, *sx.shape)`` float32.

    Pointwise: a pixel's value depends only on its point, so any chunking gives the same values.
    NaN cells get no weight (coast pixels take the land cells'); NaN where no neighbour is valid
    and outside the store.
    """
    fi = _fractional(src_y, np.asarray(sy, dtype="float64"))
    fj = _fractional(src_x, np.asarray(sx, dtype="float64"))
    ok = np.isfinite(fi) & np.isfinite(fj)
    fi, fj = np.where(ok, fi, 0.0), np.where(ok, fj, 0.0)
    i0 = np.minimum(np.floor(fi).astype("int64"), src_y.size - 2)
    j0 = np.minimum(np.floor(fj).astype("int64"), src_x.size - 2)
    wi, wj = fi - i0, fj - j0
    flat = field.reshape(field.shape[0], -1)
    at = i0 * src_x.size + j0
    corners = (
        (at, (1 - wi) * (1 - wj)),
        (at + 1, (1 - wi) * wj),
        (at + src_x.size, wi * (1 - wj)),
        (at + src_x.size + 1, wi * wj),
    )
    if not np.isnan(field).any():  # the same for every chunk: the whole field decides
        out = sum(flat[:, idx] * w for idx, w in corners)
    else:
        num = np.zeros((field.shape[0], *sx.shape))
        den = np.zeros((field.shape[0], *sx.shape))
        for idx, w in corners:
            v = flat[:, idx]
            good = np.isfinite(v)
            num += np.where(good, v, 0.0) * w
            den += np.where(good, w, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            out = np.where(den > 0, num / den, np.nan)
    return np.where(ok, out, np.nan).astype("float32")


def _block(field, y, x, *, src_x, src_y, src_crs, dst_crs, origin):
    sx, sy = project_pixels(x, y, origin=origin, src_crs=src_crs, dst_crs=dst_crs)
    return bilinear_block(field, src_x=src_x, src_y=src_y, sx=sx, sy=sy)


def climate_layer(
    url: str,
    collection: str,
    grid: Grid,
    *,
    chunks: tuple[tuple[int, ...], tuple[int, ...]],
    years: tuple[int, int] = CLIMATE_YEARS,
    layers: Sequence[str] = CLIMATE_BANDS,
    timeout: float = 30,
    patch_url: Callable[[str], str] | None = None,
) -> tuple[Any, tuple[str, ...], dict]:
    """``(dask array (layer, y, x) float32, band names, attrs)`` of the climate modality.

    Reads the collection document, opens its Zarr store lazily, checks variables and years,
    aggregates the layers on the store cells around the grid and interpolates them bilinearly
    onto ``grid`` chunk by chunk (``chunks``: the cube's ``(y chunks, x chunks)``).
    """
    import dask.array as da

    layers = check_climate_layers(layers)
    years = check_climate_years(years)
    coll = fetch_collection(url, collection, timeout=timeout)
    key, asset = zarr_asset(coll)
    ds, href = open_store(asset, patch_url=patch_url)
    names = _variables(ds, href, collection, layers)
    xdim, ydim, ref = _spatial_dims(coll, ds)
    crs = _store_crs(coll, ds, xdim, ydim, ref, list(names.values()))
    _check_years(ds, years, href, collection)
    offsets = {q: _units(ds[v], q, href) for q, v in names.items()}

    # the store cells around the grid: its bounds projected (densified edges), two cells spare
    bx0, by0, bx1, by1 = _transformer(grid.crs, crs.to_wkt()).transform_bounds(
        *grid.bounds, densify_pts=21
    )
    src_x = np.asarray(ds[xdim].values, dtype="float64")
    src_y = np.asarray(ds[ydim].values, dtype="float64")
    if bx1 < src_x.min() or bx0 > src_x.max() or by1 < src_y.min() or by0 > src_y.max():
        raise InputError(
            f"the grid {grid.bounds} ({grid.crs}) lies outside the climate store {href} "
            f"(collection {collection!r}: {xdim} {src_x.min():.6g}..{src_x.max():.6g}, "
            f"{ydim} {src_y.min():.6g}..{src_y.max():.6g} in its CRS); give a bbox it covers"
        )
    wx = _window(src_x, bx0, bx1, collection, xdim)
    wy = _window(src_y, by0, by1, collection, ydim)
    sub = ds[list(names.values())].isel({xdim: wx, ydim: wy}).transpose("time", ydim, xdim)
    field = _aggregate(sub, names, offsets, layers, years).transpose("layer", ydim, xdim)
    # one chunk: every output chunk reads the same small array (chunk-invariant values)
    field_data = field.data.rechunk(-1)
    ychunks, xchunks = chunks
    # the whole field (indices "abc", contracted) goes to every output block; the block's pixel
    # centres come from the grid's coordinates chunked as the cube
    data = da.blockwise(
        _block,
        "lyx",
        field_data,
        "abc",
        da.from_array(grid.y, chunks=(tuple(ychunks),)),
        "y",
        da.from_array(grid.x, chunks=(tuple(xchunks),)),
        "x",
        new_axes={"l": len(layers)},
        concatenate=True,
        align_arrays=False,  # chunks already match: no unification (nor its warning)
        dtype="float32",
        meta=np.empty((0, 0, 0), dtype="float32"),
        src_x=src_x[wx].copy(),
        src_y=src_y[wy].copy(),
        src_crs=crs.to_wkt(),
        dst_crs=grid.crs,
        origin=(grid.left, grid.top, grid.resolution),
    )
    attrs = {
        "units": ", ".join(f"{b} {_UNITS[b]}" for b in layers),
        "climate_years": f"{years[0]}-{years[1]}",
        "definitions": (
            "annual_precipitation: mean over the years of the yearly sum of precipitation (mm); "
            "summer_warmth_index: mean over the years of the sum over months of max(monthly mean "
            "of (tmax + tmin) / 2, 0) (degC month); january_tmin: mean over the years of "
            "January's mean daily minimum temperature (degC)"
        ),
        "resampling": "bilinear (store cell centres, NaN cells without weight)",
        "store": href,
        "store_asset": key,
        "store_variables": ", ".join(f"{q}={v}" for q, v in names.items()),
    }
    return data, tuple(layers), attrs
