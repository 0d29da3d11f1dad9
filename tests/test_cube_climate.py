"""The climate modality against real loopback servers: Zarr stores made here, served over HTTP
(range_server, which logs each request), described by STAC collections that ``rustac serve``
serves, modelled on Planetary Computer's ``daymet-monthly-na`` and ``terraclimate`` documents.

Store ``daymet``: Zarr format 2 (what Planetary Computer serves), consolidated, 1 km Lambert
conformal conic (Daymet's projection), monthly ``prcp``/``tmax``/``tmin`` of 2017-2020 and half of
2021; every field is linear in x and y (bilinear reproduces a linear field exactly), with a NaN
"sea" in one corner. Store ``terra``: Zarr format 3, 1/24 degree lon/lat, random fields, checked
by a hand-computed bilinear at a few pixels.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from pyproj import CRS, Transformer

from miso_xr.cube.grid import Grid
from miso_xr.cube.stac import open_stac
from miso_xr.cube.stac.climate import CLIMATE_BANDS
from miso_xr.exceptions import CatalogError, CatalogUnreachableError, InputError, MissingBandError
from tests.servers import free_port, range_server, stac_api

BBOX = (-147.8, 65.0, -147.4, 65.2)  # ~19 x 22 km near Fairbanks
RES = 250.0
YEARS = (2017, 2020)
LCC_CF = {  # Daymet's grid mapping, as in daymet-monthly-na's cube:variables
    "grid_mapping_name": "lambert_conformal_conic",
    "standard_parallel": [25.0, 60.0],
    "latitude_of_projection_origin": 42.5,
    "longitude_of_central_meridian": -100.0,
    "false_easting": 0.0,
    "false_northing": 0.0,
    "semi_major_axis": 6378137.0,
    "inverse_flattening": 298.257223563,
}
LCC = CRS.from_cf(LCC_CF)
BASE_T = np.array([-20, -18, -12, -5, 5, 12, 15, 13, 6, -4, -14, -19], "float64")  # Tmean, °C
BASE_P = np.array([15, 12, 10, 8, 15, 35, 50, 55, 30, 20, 18, 16], "float64")  # mm / month
SLOPE_P, SLOPE_T = (0.8, -0.5), (0.03, -0.02)  # per km along x, y (LCC)
TERRA_STEP = 1 / 24


def _collection(cid: str, assets: dict, dims: dict | None = None) -> dict:
    doc = {
        "type": "Collection",
        "stac_version": "1.0.0",
        "stac_extensions": [
            "https://stac-extensions.github.io/xarray-assets/v1.0.0/schema.json",
            "https://stac-extensions.github.io/datacube/v2.0.0/schema.json",
        ],
        "id": cid,
        "description": f"test {cid}",
        "license": "proprietary",
        "extent": {
            "spatial": {"bbox": [[-180.0, -90.0, 180.0, 90.0]]},
            "temporal": {"interval": [["2017-01-01T00:00:00Z", "2021-06-30T00:00:00Z"]]},
        },
        "links": [],
        "assets": {
            "thumbnail": {"href": "https://example.invalid/t.png", "roles": ["thumbnail"]},
            **assets,
        },
    }
    if dims is not None:
        doc["cube:dimensions"] = dims
    return doc


@dataclass
class Daymet:
    x: np.ndarray
    y: np.ndarray
    xc: float
    yc: float
    sea: tuple[float, float]  # cells with x > sea[0] and y < sea[1] are NaN


def _daymet_store(path: Path, *, variables=("prcp", "tmax", "tmin")) -> Daymet:
    x0, y0, x1, y1 = Transformer.from_crs("EPSG:4326", LCC, always_xy=True).transform_bounds(
        *BBOX, densify_pts=21
    )
    # Daymet's lattice: cell centres at ...250 m, 1 km apart, y decreasing; 6 km margin
    x = np.arange(np.floor(x0 / 1000) * 1000 - 5750, x1 + 6000, 1000.0)
    y = np.arange(np.ceil(y1 / 1000) * 1000 + 6000, y0 - 6000, -1000.0)
    xc, yc = float(x.mean()), float(y.mean())
    sea = (xc + 4000.0, yc - 4000.0)
    time = pd.date_range("2017-01-01", "2021-06-01", freq="MS") + pd.Timedelta("15D12h")
    k = (time.year - 2017).to_numpy(dtype="float64")[:, None, None]
    m = (time.month - 1).to_numpy()
    dx, dy = (x[None, None, :] - xc) / 1000, (y[None, :, None] - yc) / 1000
    tmean = BASE_T[m][:, None, None] + 0.1 * k + SLOPE_T[0] * dx + SLOPE_T[1] * dy
    fields = {
        "prcp": BASE_P[m][:, None, None] + k + SLOPE_P[0] * dx + SLOPE_P[1] * dy,
        "tmax": tmean + 5.0,
        "tmin": tmean - 5.0,
    }
    is_sea = (x[None, :] > sea[0]) & (y[:, None] < sea[1])
    attrs = {
        "prcp": ("mm", "monthly total precipitation"),
        "tmax": ("degrees C", "monthly average of daily maximum temperature"),
        "tmin": ("degrees C", "monthly average of daily minimum temperature"),
    }
    data_vars = {}
    for v in variables:
        a = np.where(is_sea[None], np.nan, fields[v]).astype("float32")
        units, name = attrs[v]
        gm = {"units": units, "long_name": name, "grid_mapping": "lambert_conformal_conic"}
        data_vars[v] = (("time", "y", "x"), a, gm)
    xx, yy = np.meshgrid(x, y)
    lon, lat = Transformer.from_crs(LCC, "EPSG:4326", always_xy=True).transform(xx, yy)
    ds = xr.Dataset(
        data_vars,
        coords={
            "time": time,
            "y": y,
            "x": x,
            "lat": (("y", "x"), lat.astype("float32"), {"units": "degrees_north"}),
            "lon": (("y", "x"), lon.astype("float32"), {"units": "degrees_east"}),
        },
    )
    ds["lambert_conformal_conic"] = xr.DataArray(np.int16(0), attrs=LCC_CF)
    enc = {v: {"chunks": (12, 16, 16)} for v in variables}
    ds.to_zarr(path, zarr_format=2, consolidated=True, mode="w", encoding=enc)
    return Daymet(x, y, xc, yc, sea)


def _daymet_dims(d: Daymet) -> dict:
    ref = LCC.to_json_dict()  # PROJJSON, as daymet-monthly-na's reference_system
    return {
        "x": {"axis": "x", "type": "spatial", "step": 1000.0, "reference_system": ref,
              "extent": [float(d.x.min()), float(d.x.max())]},
        "y": {"axis": "y", "type": "spatial", "step": -1000.0, "reference_system": ref,
              "extent": [float(d.y.min()), float(d.y.max())]},
        "time": {"type": "temporal", "extent": ["2017-01-16T12:00:00Z", "2021-06-16T12:00:00Z"]},
    }  # fmt: skip


def _terra_store(path: Path) -> dict[str, np.ndarray]:
    w, s, e, n = BBOX
    lon = np.arange(np.floor(w * 24) / 24 - 3 * TERRA_STEP, e + 3 * TERRA_STEP, TERRA_STEP)
    lon = lon + TERRA_STEP / 2
    lat = np.arange(np.ceil(n * 24) / 24 + 3 * TERRA_STEP, s - 3 * TERRA_STEP, -TERRA_STEP)
    lat = lat - TERRA_STEP / 2
    time = pd.date_range("2019-01-01", "2020-12-01", freq="MS")
    rng = np.random.default_rng(7)
    shape = (time.size, lat.size, lon.size)
    values = {
        "ppt": rng.uniform(0, 80, shape),
        "tmax": rng.uniform(-25, 25, shape),
        "tmin": rng.uniform(-35, 10, shape),
        "pdsi": rng.uniform(-4, 4, shape),
    }
    ds = xr.Dataset(
        {
            v: (("time", "lat", "lon"), a.astype("float32"), {"units": u, "grid_mapping": "crs"})
            for (v, a), u in zip(values.items(), ("mm", "degC", "degC", "unitless"), strict=True)
        },
        coords={"time": time, "lat": lat, "lon": lon},
    )
    with warnings.catch_warnings():
        # zarr 3 says consolidated metadata is not in the format 3 spec yet: we write it anyway
        warnings.simplefilter("ignore")
        ds.to_zarr(path, zarr_format=3, consolidated=True, mode="w")
    return {
        "lon": lon,
        "lat": lat,
        "time": time,
        **{k: v.astype("float32") for k, v in values.items()},
    }


@dataclass
class Api:
    url: str
    log: Path
    daymet: Daymet
    terra: dict


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    root = tmp_path_factory.mktemp("climate")
    www, log = root / "www", root / "requests.log"
    www.mkdir()
    daymet = _daymet_store(www / "monthly" / "na.zarr")
    _daymet_store(www / "monthly" / "na_no_tmin.zarr", variables=("prcp", "tmax"))
    terra = _terra_store(www / "terraclimate.zarr")
    with range_server(www, log=log) as http:
        zarr_https = {  # as daymet-monthly-na's "zarr-https" asset
            "type": "application/vnd+zarr",
            "roles": ["data", "zarr", "https"],
            "xarray:open_kwargs": {"consolidated": True},
        }
        docs = [
            _collection(
                "daymet-monthly-na",
                {
                    "zarr-abfs": {  # an adlfs root first: the HTTPS one must be chosen
                        "href": "abfs://daymet-zarr/monthly/na.zarr",
                        "type": "application/vnd+zarr",
                        "roles": ["data", "zarr", "abfs"],
                        "xarray:open_kwargs": {"consolidated": True},
                        "xarray:storage_options": {"account_name": "daymeteuwest"},
                    },
                    "zarr-https": {**zarr_https, "href": f"{http.url}/monthly/na.zarr"},
                },
                _daymet_dims(daymet),
            ),
            _collection(
                "daymet-no-tmin",
                {"zarr-https": {**zarr_https, "href": f"{http.url}/monthly/na_no_tmin.zarr"}},
                _daymet_dims(daymet),
            ),
            _collection(
                "terraclimate",
                {  # as terraclimate's asset: storage_options inside xarray:open_kwargs
                    "zarr-https": {
                        "href": f"{http.url}/terraclimate.zarr",
                        "type": "application/vnd+zarr",
                        "roles": ["data", "zarr", "https"],
                        "xarray:open_kwargs": {
                            "chunks": {},
                            "engine": "zarr",
                            "consolidated": True,
                            "storage_options": {},
                        },
                    }
                },
                {
                    "lat": {"axis": "y", "type": "spatial", "reference_system": 4326},
                    "lon": {"axis": "x", "type": "spatial", "reference_system": 4326},
                    "time": {"type": "temporal", "extent": ["2019-01-01T00:00:00Z", None]},
                },
            ),
            _collection("no-zarr", {}),
            _collection(
                "store-gone",
                {"zarr-https": {**zarr_https, "href": f"{http.url}/monthly/gone.zarr"}},
                _daymet_dims(daymet),
            ),
        ]
        hrefs = []
        for d in docs:
            hrefs.append(root / f"{d['id']}.json")
            hrefs[-1].write_text(json.dumps(d))
        with stac_api(hrefs) as stac:
            yield Api(stac.url, log, daymet, terra)


def _requests(api: Api) -> list[str]:
    return api.log.read_text().splitlines() if api.log.exists() else []


def _open(api: Api, **kw):
    args = dict(
        bbox=BBOX,
        catalog=api.url,
        modalities=("climate",),
        resolution=RES,
        chunks=16,
        climate_years=YEARS,
        timeout=10,
    )
    args.update(kw)
    return open_stac(**args)


def _expected_linear(d: Daymet, grid: Grid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The three layers at the cube's pixel centres (fields linear in x, y: bilinear is exact)."""
    xx, yy = np.meshgrid(grid.x, grid.y)
    sx, sy = Transformer.from_crs(grid.crs, LCC, always_xy=True).transform(xx, yy)
    dx, dy = (sx - d.xc) / 1000, (sy - d.yc) / 1000
    mean_k = np.mean(np.arange(YEARS[1] - YEARS[0] + 1))  # years 2017..2020 -> k 0..3
    ppt = BASE_P.sum() + 12 * mean_k + 12 * (SLOPE_P[0] * dx + SLOPE_P[1] * dy)
    warm = BASE_T > 0  # the sign of every month's Tmean is the same over the whole area
    swi = (BASE_T[warm] + 0.1 * mean_k).sum() + warm.sum() * (SLOPE_T[0] * dx + SLOPE_T[1] * dy)
    jan = BASE_T[0] + 0.1 * mean_k - 5 + SLOPE_T[0] * dx + SLOPE_T[1] * dy
    return np.stack([ppt, swi, jan]), sx, sy


def test_daymet_v2_layers_are_bilinear_of_the_store_and_lazy(api, raise_if_dask_computes):
    before = len(_requests(api))
    with raise_if_dask_computes():
        cube = _open(api)
    opened = _requests(api)[before:]
    data_reads = [r for r in opened if any(f"/{v}/" in r for v in ("prcp", "tmax", "tmin"))]
    assert data_reads == [], data_reads  # metadata and coordinates only
    assert any(r.endswith("/monthly/na.zarr/.zmetadata") for r in opened)
    assert not any("abfs" in r for r in opened)

    grid = Grid.from_dataset(cube)
    assert dict(cube.sizes) == {"climate_band": 3, "y": grid.height, "x": grid.width}
    assert list(cube.climate_band.values) == list(CLIMATE_BANDS)
    assert cube["climate"].dtype == np.float32
    assert cube["climate"].chunks[1][0] == 16
    at = cube["climate"].attrs
    assert at["climate_years"] == "2017-2020" and at["collection"] == "daymet-monthly-na"
    assert at["store"].endswith("/monthly/na.zarr") and at["store_asset"] == "zarr-https"
    assert "bilinear" in at["resampling"]

    got = cube["climate"].values
    after = _requests(api)[before + len(opened) :]
    assert any("/prcp/" in r for r in after) and any("/tmin/" in r for r in after)

    want, sx, sy = _expected_linear(api.daymet, grid)
    d = api.daymet
    # the store cells west and east (north and south) of each pixel centre
    west = d.x[0] + np.floor((sx - d.x[0]) / 1000) * 1000
    north = d.y[0] - np.floor((d.y[0] - sy) / 1000) * 1000
    land = (west + 1000 <= d.sea[0]) | (north - 1000 >= d.sea[1])  # the four cells are land
    sea = (west > d.sea[0]) & (north < d.sea[1])  # the four cells are sea
    assert land.mean() > 0.5 and sea.sum() > 20  # the test exercises both
    np.testing.assert_allclose(got[:, land], want[:, land], rtol=2e-6, atol=2e-4)
    assert np.isnan(got[:, sea]).all()
    assert np.isfinite(got[:, ~sea]).all()  # coast pixels: the land cells' weights alone
    # the fields are not flat: interpolation, not one cell's value, is checked
    assert np.ptp(got[0][land]) > 100


@pytest.mark.parametrize("chunks", [7, -1, {"y": 5, "x": 13}, (40, 9)])
def test_climate_is_chunk_invariant(api, chunks):
    ref = _open(api, chunks=16)["climate"].values
    cube = _open(api, chunks=chunks)
    assert cube["climate"].chunks[1:] != ((16,),) or chunks == -1
    np.testing.assert_array_equal(cube["climate"].values, ref)


def test_terraclimate_v3_lonlat_hand_bilinear(api):
    layers = ("january_tmin", "summer_warmth_index", "annual_precipitation")
    cube = _open(
        api,
        collections={"climate": "terraclimate"},
        climate_years=(2019, 2020),
        climate_layers=layers,
        chunks={"y": 11, "x": 17},
    )
    assert list(cube.climate_band.values) == list(layers)
    got = cube["climate"].values
    t = api.terra
    # the three layers on the store cells, by hand
    ppt = t["ppt"].astype("float64").reshape(2, 12, *t["ppt"].shape[1:])
    tmean = (t["tmax"].astype("float64") + t["tmin"].astype("float64")) / 2
    tmean = tmean.reshape(2, 12, *tmean.shape[1:])
    tmin = t["tmin"].astype("float64").reshape(2, 12, *tmean.shape[2:])
    cells = {
        "annual_precipitation": ppt.sum(axis=1).mean(axis=0),
        "summer_warmth_index": np.maximum(tmean, 0).sum(axis=1).mean(axis=0),
        "january_tmin": tmin[:, 0].mean(axis=0),
    }
    grid = Grid.from_dataset(cube)
    to_ll = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True)
    rng = np.random.default_rng(3)
    for r, c in [(0, 0), (grid.height - 1, grid.width - 1), *rng.integers(0, 60, (4, 2))]:
        lon, lat = to_ll.transform(grid.x[c], grid.y[r])
        # regular 1/24 degree cells, lat decreasing: fractional row/column of the point
        fr = (t["lat"][0] - lat) / TERRA_STEP
        fc = (lon - t["lon"][0]) / TERRA_STEP
        r0, c0 = int(np.floor(fr)), int(np.floor(fc))
        wr, wc = fr - r0, fc - c0
        for b, layer in enumerate(layers):
            f = cells[layer]
            want = (
                f[r0, c0] * (1 - wr) * (1 - wc)
                + f[r0, c0 + 1] * (1 - wr) * wc
                + f[r0 + 1, c0] * wr * (1 - wc)
                + f[r0 + 1, c0 + 1] * wr * wc
            )
            np.testing.assert_allclose(got[b, r, c], want, rtol=1e-5, err_msg=f"{layer} {r},{c}")


def test_patch_url_token_reaches_every_store_read(api):
    before = len(_requests(api))
    cube = _open(api, patch_url=lambda href: href + "?sv=2021&sig=abc")
    cube["climate"].values  # noqa: B018 - the reads are the point
    reads = [r for r in _requests(api)[before:] if "/monthly/na.zarr/" in r]
    assert reads and all(r.endswith("sv=2021&sig=abc") for r in reads), reads[:3]


def test_climate_beside_other_modalities_keeps_the_order_asked(api, tmp_path):
    import rasterio
    from affine import Affine

    grid = Grid.from_dataset(_open(api))
    dem = np.full((grid.height, grid.width), 250.0, "float32")
    with rasterio.open(
        tmp_path / "dem.tif", "w", driver="GTiff", width=grid.width, height=grid.height,
        count=1, dtype="float32", crs=grid.crs, transform=Affine(*grid.transform[:6]),
    ) as dst:  # fmt: skip
        dst.write(dem, 1)
    item = {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": "DEM",
        "collection": "cop-dem-glo-30",
        "geometry": None,
        "properties": {
            "datetime": "2021-04-22T00:00:00Z",
            "proj:epsg": 3338,
            "proj:shape": [grid.height, grid.width],
            "proj:transform": list(grid.transform)[:6],
        },
        "assets": {"data": {"href": str(tmp_path / "dem.tif"), "roles": ["data"]}},
        "links": [],
    }
    cube = _open(api, items=[item], modalities=("climate", "covariates"), grid=grid)
    assert list(cube.data_vars) == ["climate", "covariates"]
    ref = _open(api, grid=grid)["climate"].values
    np.testing.assert_array_equal(cube["climate"].values, ref)
    np.testing.assert_array_equal(cube["covariates"].sel(covariates_band="elevation"), dem)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(climate_layers=("precipitation",)), MissingBandError,
         r"climate_layers=\('precipitation',\).*annual_precipitation"),
        (dict(climate_years=(2019, 2021)), InputError,
         r"climate_years=\(2019, 2021\).*lacks complete years \[2021\].*2017-2020"),
        (dict(climate_years=None), InputError, r"climate_years=None: expected a year"),
        (dict(climate_years=(2020, 2018)), InputError, "the last year is before the first"),
        (dict(collections={"climate": "nope"}), CatalogError,
         r"no collection 'nope'.*daymet-monthly-na.*terraclimate"),
        (dict(collections={"climate": "no-zarr"}), CatalogError,
         r"'no-zarr' has no Zarr asset.*\['thumbnail'\]"),
        (dict(collections={"climate": "daymet-no-tmin"}), MissingBandError,
         r"na_no_tmin\.zarr.*no tmin variable \(looked for \['tmin', 'tasmin'\]\).*\['prcp', 'tmax'\]"),
        (dict(bbox=(-120.0, 45.0, -119.9, 45.1)), InputError, r"lies outside the climate store"),
        (dict(collections={"climate": "store-gone"}), CatalogError,
         r"climate store http://127\.0\.0\.1:\d+/monthly/gone\.zarr could not be opened as Zarr"),
    ],
)  # fmt: skip
def test_bad_climate_inputs_are_one_clear_error(api, kwargs, error, match):
    with pytest.raises(error, match=match):
        _open(api, **kwargs)


def test_default_years_are_1991_2020_and_checked_against_the_store(api):
    with pytest.raises(InputError, match=r"climate_years=\(1991, 2020\).*2017-2020"):
        open_stac(bbox=BBOX, catalog=api.url, modalities=("climate",), resolution=RES)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [(dict(climate_layers=("tmean",)), MissingBandError), (dict(climate_years="2019"), InputError)],
)
def test_climate_options_are_checked_before_any_request(kwargs, error):
    with pytest.raises(error, match="climate_"):
        open_stac(
            bbox=BBOX,
            catalog="http://127.0.0.1:9/never-contacted",
            modalities=("climate",),
            **kwargs,
        )


def test_daily_store_in_kelvin_gives_the_same_definitions():
    """A daily store (temperatures in K) aggregates month by month, as monthly values would."""
    from miso_xr.cube.stac.climate import _aggregate

    time = pd.date_range("2019-01-01", "2020-12-31", freq="D")
    time = time[time != "2020-12-31"]  # Daymet drops 31 December of leap years: 365 days a year
    rng = np.random.default_rng(5)
    shape = (time.size, 3, 4)
    ds = xr.Dataset(
        {
            "prcp": (("time", "y", "x"), rng.uniform(0, 5, shape)),
            "tmax": (("time", "y", "x"), rng.uniform(250, 300, shape), {"units": "K"}),
            "tmin": (("time", "y", "x"), rng.uniform(240, 285, shape), {"units": "K"}),
        },
        coords={"time": time},
    ).chunk({"time": 100})
    ds["prcp"][:, 0, 0] = np.nan  # a sea cell
    names = {"precipitation": "prcp", "tmax": "tmax", "tmin": "tmin"}
    offsets = {"precipitation": 0.0, "tmax": -273.15, "tmin": -273.15}
    got = _aggregate(ds, names, offsets, CLIMATE_BANDS, (2019, 2020)).values

    year, month = ds.time.dt.year.values, ds.time.dt.month.values
    p, tx, tn = (ds[v].values for v in ("prcp", "tmax", "tmin"))
    ppt = np.mean([p[year == y].sum(axis=0) for y in (2019, 2020)], axis=0)
    swi = np.mean(
        [
            sum(
                np.maximum(
                    (
                        tx[(year == y) & (month == m)].mean(0)
                        + tn[(year == y) & (month == m)].mean(0)
                    )
                    / 2
                    - 273.15,
                    0,
                )
                for m in range(1, 13)
            )
            for y in (2019, 2020)
        ],
        axis=0,
    )
    jan = np.mean([tn[(year == y) & (month == 1)].mean(0) - 273.15 for y in (2019, 2020)], axis=0)
    np.testing.assert_allclose(got, np.stack([ppt, swi, jan]), rtol=1e-9, atol=1e-9)
    assert np.isnan(got[0, 0, 0]) and np.isfinite(got[0]).sum() == 11


def test_ten_metre_cube_is_chunk_invariant_and_projected_to_the_millimetre(api):
    """At 10 m pixel centres are projected exactly every 16 pixels (a lattice of the grid, not of
    the chunks) and bilinearly between: identical values for any chunking, positions within mm."""
    from miso_xr.cube.stac.climate import project_pixels

    coarse = Grid.from_dataset(_open(api))
    # 10 m, 150 x 130 pixels, its corner off the 16-pixel lattice of any chunk start
    grid = Grid("EPSG:3338", coarse.left + 5003.0, coarse.top - 7001.0, 10.0, 130, 150)
    ref = _open(api, grid=grid, chunks=-1)["climate"].values
    for chunks in (7, {"y": 33, "x": 50}):
        np.testing.assert_array_equal(_open(api, grid=grid, chunks=chunks)["climate"].values, ref)
    want, _, _ = _expected_linear(api.daymet, grid)
    np.testing.assert_allclose(ref, want, rtol=2e-6, atol=2e-4)  # inland: the fields are linear
    assert np.ptp(ref[0]) > 1.0

    lcc = LCC.to_wkt()
    origin = (grid.left, grid.top, grid.resolution)
    px, py = project_pixels(grid.x, grid.y, origin=origin, src_crs=lcc, dst_crs=grid.crs)
    ex, ey = Transformer.from_crs(grid.crs, LCC, always_xy=True).transform(
        *np.meshgrid(grid.x, grid.y)
    )
    assert np.abs(px - ex).max() < 1e-3 and np.abs(py - ey).max() < 1e-3
    assert np.abs(px - ex).max() > 0  # the lattice is used (not every pixel projected)
    # a block of it gets the very same coordinates
    bx, by = project_pixels(grid.x[37:90], grid.y[11:70], origin=origin, src_crs=lcc,
                            dst_crs=grid.crs)  # fmt: skip
    np.testing.assert_array_equal(bx, px[11:70, 37:90])
    np.testing.assert_array_equal(by, py[11:70, 37:90])


def test_unreachable_catalog_is_one_clear_error():
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(CatalogUnreachableError, match=f"the STAC API {url} did not answer"):
        open_stac(bbox=BBOX, catalog=url, modalities=("climate",), climate_years=2019, timeout=2)
