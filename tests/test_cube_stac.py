"""open_stac against real loopback servers: COGs over HTTP ranges, a STAC API (rustac serve)."""

from __future__ import annotations

import datetime as dt
import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from pyproj import Transformer

from miso_xr.cube.grid import Grid
from miso_xr.cube.stac import OPTICAL_BANDS, grid_for_bbox, open_stac, search_items
from miso_xr.cube.terrain import terrain
from miso_xr.exceptions import (
    CatalogUnreachableError,
    InputError,
    MissingBandError,
    NoItemsFoundError,
)
from tests.servers import free_port, range_server, stac_api

BBOX = (-147.600, 65.100, -147.594, 65.103)
RES = 10.0
MARGIN = 4  # pixels of 10 m written around the grid, so edges are covered
TPI_RADIUS = 40.0
TWENTY_M = {"B05", "B06", "B07", "B11", "B12", "SCL"}
CLEAR = [2, 4, 5, 6, 7]
CLOUDY = [0, 1, 3, 8, 9, 10, 11]
# date, processing baseline, cloud cover; season 06-15..08-15, max_cloud 50 keep the "in" ones
SCENES = [
    ("2021-06-20", "03.00", 5.0, "in"),
    ("2021-07-10", "03.00", 10.0, "in"),
    ("2021-07-30", "03.00", 20.0, "in"),
    ("2021-05-01", "03.00", 0.0, "out-of-season"),
    ("2022-06-25", "04.00", 5.0, "in"),
    ("2022-07-15", "04.00", 90.0, "cloudy"),
    ("2022-08-05", "04.00", 1.0, "in"),
    ("2022-09-20", "04.00", 0.0, "out-of-season"),
]
SAR = [
    ("2021-07-01", 3338, 0.1, 0.02),
    ("2022-07-01", 32606, 0.3, 0.05),
    ("2022-07-20", 32606, 0.2, 0.01),
]
PROJ_EXT = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"


def write_tif(path: Path, data: np.ndarray, transform: Affine, epsg: int, nodata=None) -> None:
    """A tiled GeoTIFF with an overview (what a COG reader expects)."""
    profile = dict(
        driver="GTiff",
        width=data.shape[1],
        height=data.shape[0],
        count=1,
        dtype=data.dtype,
        crs=f"EPSG:{epsg}",
        transform=transform,
        tiled=True,
        blockxsize=16,
        blockysize=16,
        compress="deflate",
    )
    if nodata is not None:
        profile["nodata"] = nodata
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)


def footprint(transform: Affine, shape: tuple[int, int], epsg: int) -> tuple[dict, list]:
    h, w = shape
    x0, y0 = transform.c, transform.f
    x1, y1 = x0 + w * transform.a, y0 + h * transform.e
    tr = Transformer.from_crs(f"EPSG:{epsg}", "EPSG:4326", always_xy=True)
    lon0, lat0, lon1, lat1 = tr.transform_bounds(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
    ring = [[lon0, lat0], [lon1, lat0], [lon1, lat1], [lon0, lat1], [lon0, lat0]]
    return {"type": "Polygon", "coordinates": [ring]}, [lon0, lat0, lon1, lat1]


def collection(cid: str) -> dict:
    return {
        "type": "Collection",
        "stac_version": "1.0.0",
        "id": cid,
        "description": f"test {cid}",
        "license": "proprietary",
        "extent": {
            "spatial": {"bbox": [[-180.0, -90.0, 180.0, 90.0]]},
            "temporal": {"interval": [[None, None]]},
        },
        "links": [],
    }


@dataclass
class Scene:
    root: Path
    base_url: str
    grid: Grid
    items: list[dict] = field(default_factory=list)
    dn: dict = field(default_factory=dict)  # (scene, band) -> DN on the grid (float64)
    dem: np.ndarray | None = None
    api_url: str = ""


def build_scene(root: Path, base_url: str) -> Scene:
    grid = grid_for_bbox(BBOX, crs="EPSG:3338", resolution=RES)
    rng = np.random.default_rng(42)
    scene = Scene(root, base_url, grid)
    h, w = grid.height + 2 * MARGIN, grid.width + 2 * MARGIN
    left, top = grid.left - MARGIN * RES, grid.top + MARGIN * RES
    crop = (slice(MARGIN, MARGIN + grid.height), slice(MARGIN, MARGIN + grid.width))
    for k, (date, baseline, cloud, _) in enumerate(SCENES):
        sid = f"S2_TEST_{date.replace('-', '')}"
        assets = {}
        for band in (*OPTICAL_BANDS, "SCL", "B8A"):
            f = 2 if band in TWENTY_M else 1
            shape = (-(-h // f), -(-w // f))
            if band == "SCL":
                data = rng.choice(CLEAR * 3 + CLOUDY, size=shape).astype("uint8")
            else:
                data = rng.integers(1000, 5000, size=shape).astype("uint16")
                data[rng.random(shape) < 0.03] = 0  # nodata holes
            tf = Affine(RES * f, 0, left, 0, -RES * f, top)
            write_tif(root / f"{sid}_{band}.tif", data, tf, 3338, nodata=0)
            full = np.repeat(np.repeat(data, f, 0), f, 1)[:h, :w]
            scene.dn[(k, band)] = full[crop].astype("float64")
            assets[band] = {
                "href": f"{base_url}/{sid}_{band}.tif",
                "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                "roles": ["data"],
                "proj:shape": list(shape),
                "proj:transform": list(tf)[:6],
            }
        geom, bb = footprint(Affine(RES, 0, left, 0, -RES, top), (h, w), 3338)
        scene.items.append(
            {
                "type": "Feature",
                "stac_version": "1.0.0",
                "stac_extensions": [PROJ_EXT],
                "id": sid,
                "collection": "sentinel-2-l2a",
                "geometry": geom,
                "bbox": bb,
                # proj:code only, as pystac >= 1.12 writes it: open_stac must restore proj:epsg
                "properties": {
                    "datetime": f"{date}T21:00:00Z",
                    "proj:code": "EPSG:3338",
                    "eo:cloud_cover": cloud,
                    "s2:processing_baseline": baseline,
                },
                "assets": assets,
                "links": [],
            }
        )
    # SAR: one scene on the grid's CRS, two in UTM 6N (reprojected), each constant
    tr = Transformer.from_crs("EPSG:3338", "EPSG:32606", always_xy=True)
    ux0, uy0, ux1, uy1 = tr.transform_bounds(*grid.bounds)
    for k, (date, epsg, vv, vh) in enumerate(SAR):
        sid = f"S1_TEST_{k}"
        if epsg == 3338:
            tf, shape = Affine(RES, 0, left, 0, -RES, top), (h, w)
        else:
            tf = Affine(RES, 0, np.floor(ux0) - 200, 0, -RES, np.ceil(uy1) + 200)
            shape = (int((uy1 - uy0 + 400) / RES) + 1, int((ux1 - ux0 + 400) / RES) + 1)
        assets = {}
        for band, value in (("vv", vv), ("vh", vh)):
            write_tif(root / f"{sid}_{band}.tif", np.full(shape, value, "float32"), tf, epsg)
            assets[band] = {
                "href": f"{base_url}/{sid}_{band}.tif",
                "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                "roles": ["data"],
            }
        geom, bb = footprint(tf, shape, epsg)
        scene.items.append(
            {
                "type": "Feature",
                "stac_version": "1.0.0",
                "stac_extensions": [PROJ_EXT],
                "id": sid,
                "collection": "sentinel-1-rtc",
                "geometry": geom,
                "bbox": bb,
                "properties": {
                    "datetime": f"{date}T04:00:00Z",
                    "proj:epsg": epsg,
                    "proj:shape": list(shape),
                    "proj:transform": list(tf)[:6],
                },
                "assets": assets,
                "links": [],
            }
        )
    # DEM: two overlapping tiles of one smooth surface, on the grid's lattice
    yy, xx = np.mgrid[0:h, 0:w].astype("float64")
    dem = (300 + 2.0 * xx - 1.5 * yy + 15 * np.sin(xx / 5.0) * np.cos(yy / 7.0)).astype("float32")
    scene.dem = dem[crop].astype("float64")
    half = w // 2
    for k, cols in enumerate((slice(0, half + 3), slice(half - 3, w))):
        sid = f"DEM_TEST_{k}"
        tf = Affine(RES, 0, left + cols.start * RES, 0, -RES, top)
        tile = dem[:, cols]
        write_tif(root / f"{sid}.tif", tile, tf, 3338, nodata=-32767.0)
        geom, bb = footprint(tf, tile.shape, 3338)
        scene.items.append(
            {
                "type": "Feature",
                "stac_version": "1.0.0",
                "stac_extensions": [PROJ_EXT],
                "id": sid,
                "collection": "cop-dem-glo-30",
                "geometry": geom,
                "bbox": bb,
                "properties": {
                    "datetime": "2021-04-22T00:00:00Z",
                    "proj:epsg": 3338,
                    "proj:shape": list(tile.shape),
                    "proj:transform": list(tf)[:6],
                },
                "assets": {
                    "data": {
                        "href": f"{base_url}/{sid}.tif",
                        "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                        "roles": ["data"],
                    }
                },
                "links": [],
            }
        )
    return scene


def expected_optical(scene: Scene) -> np.ndarray:
    """The composite from the written pixels, computed independently with numpy."""
    keep = [k for k, s in enumerate(SCENES) if s[3] == "in"]
    out = []
    for band in OPTICAL_BANDS:
        layers = []
        for k in keep:
            dn = scene.dn[(k, band)]
            offset = -0.1 if SCENES[k][1] >= "04.00" else 0.0
            refl = dn.astype("float32") * np.float32(1e-4) + np.float32(offset)
            ok = np.isin(scene.dn[(k, "SCL")], CLEAR) & (dn != 0)
            layers.append(np.where(ok, refl, np.nan))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels: NaN is expected
            out.append(np.nanmedian(np.stack(layers), axis=0))
    return np.stack(out)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    root = tmp_path_factory.mktemp("stac_scene")
    cogs = root / "cogs"
    cogs.mkdir()
    with range_server(cogs) as http:
        sc = build_scene(cogs, http.url)
        for cid in ("sentinel-2-l2a", "sentinel-1-rtc", "cop-dem-glo-30"):
            (root / f"{cid}.json").write_text(json.dumps(collection(cid)))
        with open(root / "items.ndjson", "w") as f:
            for it in sc.items:
                f.write(json.dumps(it) + "\n")
        hrefs = [root / f"{c}.json" for c in ("sentinel-2-l2a", "sentinel-1-rtc", "cop-dem-glo-30")]
        with stac_api([*hrefs, root / "items.ndjson"]) as api:
            sc.api_url = api.url
            yield sc


def open_scene(scene: Scene, **kw):
    args = dict(
        bbox=BBOX,
        datetime="2021-01-01/2022-12-31",
        catalog=scene.api_url,
        crs="EPSG:3338",
        resolution=RES,
        chunks=16,
        season=("06-15", "08-15"),
        max_cloud=50,
        limit=3,  # small pages: the search must follow "next" links
        tpi_radius=TPI_RADIUS,
        timeout=10,
    )
    args.update(kw)
    return open_stac(**args)


def test_search_follows_pages(scene):
    found = search_items(
        scene.api_url, "sentinel-2-l2a", bbox=BBOX, datetime="2021-01-01/2022-12-31", limit=2
    )
    assert sorted(d["id"] for d in found) == sorted(
        d["id"] for d in scene.items if d["collection"] == "sentinel-2-l2a"
    )
    assert all(d["properties"]["proj:epsg"] == 3338 for d in found)  # restored from proj:code


def test_all_modalities_values_equal_written_pixels(scene, raise_if_dask_computes):
    with raise_if_dask_computes():  # search + stack + composite graph: nothing computes
        cube = open_scene(scene, modalities=("optical", "sar", "covariates"))
    g = scene.grid
    assert dict(cube.sizes) == {
        "optical_band": 9,
        "sar_band": 2,
        "covariates_band": 6,
        "y": g.height,
        "x": g.width,
    }
    np.testing.assert_array_equal(cube.x.values, g.x)
    np.testing.assert_array_equal(cube.y.values, g.y)
    assert Grid.from_dataset(cube) == g
    assert cube.rio.crs.to_epsg() == 3338
    assert list(cube.optical_band.values) == list(OPTICAL_BANDS)
    assert all(cube[v].dtype == np.float32 for v in cube.data_vars)
    assert cube["optical"].chunks[1][0] == 16
    assert cube["optical"].attrs["scenes"] == 5  # season and max_cloud filters

    got = cube.compute()
    want = expected_optical(scene)
    assert np.isnan(want).any() and np.isfinite(want).mean() > 0.5  # the data exercise the mask
    np.testing.assert_allclose(got["optical"].values, want, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(np.isnan(got["optical"].values), np.isnan(want))
    # SAR: median of the three constant scenes, two of them reprojected from UTM
    np.testing.assert_array_equal(got["sar"].sel(sar_band="vv").values, np.float32(0.2))
    np.testing.assert_array_equal(got["sar"].sel(sar_band="vh").values, np.float32(0.02))
    assert got["sar"].attrs["units"] == "linear"
    # covariates: the two DEM tiles mosaicked exactly, terrain as from the DEM itself
    np.testing.assert_array_equal(got["covariates"].sel(covariates_band="elevation"), scene.dem)
    np.testing.assert_array_equal(
        got["covariates"].values, terrain(scene.dem, RES, tpi_radius=TPI_RADIUS)
    )


def test_explicit_grid_loads_a_sub_grid_pixel_for_pixel(scene):
    g = scene.grid
    sub = Grid(g.crs, g.left + 3 * RES, g.top - 2 * RES, RES, g.width - 5, g.height - 4)
    full = open_scene(scene, modalities=("optical",))
    part = open_scene(scene, modalities=("optical",), bbox=None, grid=sub, resolution=999)
    assert Grid.from_dataset(part) == sub  # the grid wins over crs/resolution; bbox from it
    np.testing.assert_array_equal(
        part["optical"].values, full["optical"].isel(y=slice(2, -2), x=slice(3, -2)).values
    )
    with pytest.raises(InputError, match="grid=.*expected a miso_xr.Grid"):
        open_scene(scene, grid=(0, 0, 1, 1))
    with pytest.raises(InputError, match="bbox=None"):
        open_scene(scene, bbox=None)


def test_items_given_with_earth_search_names_and_raster_offsets(scene):
    rename = dict(
        zip(
            OPTICAL_BANDS,
            ["red", "green", "blue", "rededge1", "rededge2", "rededge3", "nir", "swir16", "swir22"],
        ),
        SCL="scl",
    )
    items = []
    for d in scene.items:
        if d["collection"] != "sentinel-2-l2a":
            continue
        d = json.loads(json.dumps(d))
        baseline = d["properties"].pop("s2:processing_baseline")
        d["assets"] = {rename.get(k, k): v for k, v in d["assets"].items()}
        for k, v in d["assets"].items():
            if k != "scl":
                off = -0.1 if baseline >= "04.00" else 0.0
                v["raster:bands"] = [{"nodata": 0, "scale": 0.0001, "offset": off}]
        items.append(d)
    cube = open_stac(
        bbox=BBOX,
        datetime="2021-01-01/2022-12-31",
        items=items,
        modalities=("optical",),
        resolution=RES,
        chunks=16,
        season=("06-15", "08-15"),
        max_cloud=50,
    )
    np.testing.assert_allclose(
        cube["optical"].values, expected_optical(scene), rtol=1e-6, atol=1e-7
    )


def test_datetime_as_pystac_client_takes_it(scene):
    text = open_scene(scene, modalities=("optical",))
    for when in [
        (dt.date(2021, 1, 1), dt.date(2022, 12, 31)),
        (dt.datetime(2021, 1, 1), dt.datetime(2022, 12, 31, 23, 59, 59, 999999)),
        ["2021-01-01", "2022-12-31"],
    ]:
        cube = open_scene(scene, modalities=("optical",), datetime=when)
        assert cube["optical"].attrs["scenes"] == text["optical"].attrs["scenes"] == 5
        assert cube.attrs["datetime"].startswith("2021-01-01")
    np.testing.assert_array_equal(cube["optical"].values, text["optical"].values)
    # an open end (None), as in pystac-client: the same scenes here
    open_end = open_scene(scene, modalities=("optical",), datetime=(dt.date(2021, 1, 1), None))
    assert open_end.attrs["datetime"] == "2021-01-01/.."
    assert open_end["optical"].attrs["scenes"] == 5


def test_items_need_no_datetime(scene):
    items = [d for d in scene.items if d["collection"] == "cop-dem-glo-30"]
    cube = open_stac(bbox=BBOX, items=items, modalities=("covariates",), resolution=RES, chunks=16)
    np.testing.assert_array_equal(cube["covariates"].sel(covariates_band="elevation"), scene.dem)
    with pytest.raises(InputError, match=r"datetime=None: .*\(or items=\)"):
        open_stac(bbox=BBOX, catalog=scene.api_url, modalities=("covariates",))


@pytest.mark.parametrize("chunks", [-1, "auto", {"y": 16, "x": 24}, {"x": 16}, (8, 16)])
def test_chunks_as_xarray_takes_them(scene, chunks):
    from miso_xr.cube.grid import spatial_chunks

    items = [d for d in scene.items if d["collection"] == "cop-dem-glo-30"]
    cube = open_stac(
        bbox=BBOX, items=items, modalities=("covariates",), resolution=RES, chunks=chunks
    )
    yc, xc = spatial_chunks(chunks, scene.grid.shape, bands=9)
    assert cube["covariates"].chunks == ((6,), yc, xc)
    np.testing.assert_array_equal(cube["covariates"].sel(covariates_band="elevation"), scene.dem)


def test_dB_units(scene):
    cube = open_scene(scene, modalities=("sar",), sar_units="dB")
    assert cube["sar"].attrs["units"] == "dB"
    np.testing.assert_allclose(cube["sar"].sel(sar_band="vv").values, 10 * np.log10(0.2), rtol=1e-5)


def test_nothing_found_names_collection_bbox_datetime(scene):
    with pytest.raises(NoItemsFoundError, match=r"sentinel-2-l2a.*bbox.*datetime='2015"):
        open_scene(scene, modalities=("optical",), datetime="2015-01-01/2015-12-31")


def test_missing_band_names_band_modality_and_assets(scene):
    items = [json.loads(json.dumps(d)) for d in scene.items if d["collection"] == "sentinel-2-l2a"]
    for d in items:
        del d["assets"]["B11"]
    with pytest.raises(MissingBandError, match=r"'B11'.*'optical'.*swir16.*'B12'"):
        open_stac(bbox=BBOX, datetime=None, items=items, modalities=("optical",), resolution=RES)


def test_items_without_projection_is_one_input_error(scene):
    items = [json.loads(json.dumps(d)) for d in scene.items if d["collection"] == "cop-dem-glo-30"]
    for d in items:
        d["properties"].pop("proj:epsg")
    with pytest.raises(InputError, match="no projection metadata"):
        open_stac(bbox=BBOX, datetime=None, items=items, modalities=("covariates",), resolution=RES)


def test_unreachable_api_fails_fast():
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    t0 = time.monotonic()
    with pytest.raises(CatalogUnreachableError, match="did not answer"):
        open_stac(bbox=BBOX, datetime="2021", catalog=url, timeout=2)
    assert time.monotonic() - t0 < 10


def test_stalled_api_times_out(tmp_path):
    with range_server(tmp_path, faults=True) as http:  # /stall/ answers nothing for 60 s
        t0 = time.monotonic()
        with pytest.raises(CatalogUnreachableError):
            open_stac(bbox=BBOX, datetime="2021", catalog=f"{http.url}/stall/api", timeout=1)
        assert time.monotonic() - t0 < 5  # one request of 1 s, not retried


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(bbox=(65.1, -147.6, 65.2, -147.5)), "lon/lat range"),
        (dict(bbox=(-147.5, 65.1, -147.6, 65.2)), "east > west"),
        (dict(bbox=(1, 2, 3)), "4 finite numbers"),
        (dict(catalog="planetary"), "earth-search.*planetary-computer"),
        (dict(modalities=("optical", "lidar")), "modalities"),
        (dict(crs="EPSG:4326"), "geographic"),
        (dict(resolution=0), "resolution"),
        (dict(season=("6-15", "08-15")), "MM-DD"),
        (dict(datetime="2022-08-01/2021-01-01"), "end is before"),
        (dict(datetime="last summer"), "ISO 8601"),
        (dict(datetime=("2021-01-01", "2021-06-01", "2021-09-01")), r"a \(start, end\) pair"),
        (dict(datetime=2021), "datetime or date"),
        (dict(datetime=(dt.date(2022, 1, 1), dt.date(2021, 1, 1))), "end is before"),
        (dict(chunks=0), r"chunks=0: .*expected an int"),
        (dict(chunks={"time": 4}), r"unknown dimension\(s\) \['time'\]"),
        (dict(sar_units="decibel"), "sar_units"),
    ],
)
def test_bad_inputs(kwargs, match):
    args = dict(
        bbox=(-147.6, 65.1, -147.5, 65.2),
        datetime="2021-06-01/2021-08-31",
        catalog="http://127.0.0.1:9/never-contacted",
    )
    args.update(kwargs)
    with pytest.raises(InputError, match=match):
        open_stac(**args)


@pytest.mark.slow
def test_synthetic_scene_end_to_end(tmp_path):
    """The project's synthetic scene, served as COGs + a STAC API, comes back as written."""
    from miso_xr.datasets import synthetic

    sc = synthetic.make_scene(seed=0, size=64, n_dates=3, n_observations=20)
    synthetic.write_scene(sc, tmp_path)
    g = sc.grid
    inner = Transformer.from_crs("EPSG:3338", "EPSG:4326", always_xy=True).transform_bounds(
        g.bounds[0] + 80, g.bounds[1] + 80, g.bounds[2] - 80, g.bounds[3] - 80
    )
    with range_server(tmp_path) as http, stac_api(synthetic.write_stac(tmp_path, http.url)) as api:
        cube = open_stac(
            bbox=inner,
            datetime="2019-01-01/2023-12-31",
            catalog=api.url,
            modalities=("optical", "sar", "covariates"),
            max_cloud=None,
            chunks=32,
            tpi_radius=50,
        ).compute()
    # the cube's grid starts at the projected bbox, not on the scene's lattice: compare each cube
    # pixel with the scene pixel under its centre (nearest resampling picks exactly that one)
    row, col = g.index(*np.meshgrid(cube.x.values, cube.y.values))
    want = sc.optical_composite()[:, row, col]
    np.testing.assert_allclose(cube["optical"].values, want, atol=1e-6)  # uint16 DN round trip
    np.testing.assert_array_equal(np.isnan(cube["optical"].values), np.isnan(want))
    np.testing.assert_array_equal(cube["sar"].values, sc.sar[:, row, col])
    elev = cube["covariates"].sel(covariates_band="elevation").values
    # the DEM is written at 30 m (averaged) and read back bilinearly at 10 m
    assert np.corrcoef(elev.ravel(), sc.dem[row, col].ravel())[0, 1] > 0.999
    assert np.abs(elev - sc.dem[row, col]).max() < 5.0
