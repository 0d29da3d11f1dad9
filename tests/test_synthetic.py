"""The synthetic Alaska-like scene: determinism, realism rules, files, STAC and HTTP reads."""

from __future__ import annotations

import filecmp
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
from servers import range_server, stac_api

from miso_xr.datasets import (
    OPTICAL_BANDS,
    SOIL_ORDERS,
    TRUTH_NAMES,
    Scene,
    make_scene,
    write_scene,
    write_stac,
)
from miso_xr.exceptions import InputError

SIZE = 128


@pytest.fixture(scope="module")
def scene() -> Scene:
    return make_scene(seed=0, size=SIZE, n_observations=300)


@pytest.fixture(scope="module")
def written(scene, tmp_path_factory):
    return write_scene(scene, tmp_path_factory.mktemp("synthetic") / "scene")


@pytest.fixture(scope="module")
def served(written):
    """The scene folder over HTTP (byte ranges) and its STAC files in rustac, both on loopback."""
    with range_server(written.root) as files:
        hrefs = write_stac(written.root, files.url)
        with stac_api(hrefs) as api:
            yield files, api, hrefs


def _terrain(dem: np.ndarray, res: float):
    """Slope (deg) and northness of the downslope direction, computed here from the DEM."""
    g_row, g_col = np.gradient(dem.astype("float64"), res)
    slope = np.degrees(np.arctan(np.hypot(g_row, g_col)))
    # downslope vector (east, north) = (-dz/dx, +dz/drow); northness = its north share
    north = g_row / np.maximum(np.hypot(g_row, g_col), 1e-9)
    east = -g_col / np.maximum(np.hypot(g_row, g_col), 1e-9)
    return slope, north, east


# ------------------------------------------------------------------ determinism and ranges


def test_same_seed_same_scene_and_files(scene, written, tmp_path):
    again = make_scene(seed=0, size=SIZE, n_observations=300)
    for name in (
        "dem",
        "rivers",
        "roads",
        "sar",
        "vegetation",
        "wetness",
        "permafrost",
        "soil_order",
    ):
        np.testing.assert_array_equal(getattr(scene, name), getattr(again, name), err_msg=name)
    for (d1, r1, s1), (d2, r2, s2) in zip(scene.optical, again.optical):
        assert d1 == d2
        np.testing.assert_array_equal(r1, r2)
        np.testing.assert_array_equal(s1, s2)
    pd.testing.assert_frame_equal(scene.observations, again.observations)

    files = write_scene(again, tmp_path / "again")
    a = sorted(p.relative_to(written.root) for p in written.root.rglob("*") if p.is_file())
    b = sorted(p.relative_to(files.root) for p in files.root.rglob("*") if p.is_file())
    assert a == b
    a = [p for p in a if p.parts[0] != "stac"]  # stac/ is written by write_stac, not here
    _, mismatch, errors = filecmp.cmpfiles(
        written.root, files.root, [str(p) for p in a], shallow=False
    )
    assert not mismatch and not errors

    other = make_scene(seed=1, size=SIZE, n_observations=300)
    assert not np.array_equal(other.dem, scene.dem)
    assert not np.array_equal(other.permafrost, scene.permafrost)


def test_observation_count_does_not_change_the_land(scene):
    fewer = make_scene(seed=0, size=SIZE, n_observations=20, n_dates=2)
    np.testing.assert_array_equal(fewer.permafrost, scene.permafrost)
    np.testing.assert_array_equal(fewer.dem, scene.dem)
    assert len(fewer.observations) == 20 and len(fewer.optical) == 2


def test_grid_and_value_ranges(scene):
    g = scene.grid
    assert g.crs == "EPSG:3338" and g.shape == (SIZE, SIZE) and g.resolution == 10.0
    assert g.left % 10 == 0 and g.top % 10 == 0
    lon0, lat0, lon1, lat1 = scene.bbox_lonlat
    assert lon0 < -147.6 < lon1 and lat0 < 65.15 < lat1

    assert scene.dem.dtype == np.float32 and 150 <= scene.dem.min() < scene.dem.max() <= 900
    assert scene.dem.max() - scene.dem.min() > 80  # real relief, not a plain
    assert scene.rivers.dtype == bool and 0 < scene.rivers.mean() < 0.1
    assert scene.roads.dtype == bool and 0 < scene.roads.mean() < 0.05
    assert not (scene.rivers & scene.roads).any()
    assert 0 <= scene.wetness.min() and scene.wetness.max() <= 1
    land = ~scene.rivers & ~scene.roads
    assert 0.45 < float(np.median(scene.vegetation[land])) < 0.9
    assert float(np.median(scene.vegetation[scene.rivers])) < 0.2

    years = {d.year for d in scene.dates}
    assert len(years) == 3 and min(years) < 2022 <= max(years)
    assert all(6 <= d.month <= 8 and d.tzinfo is not None for d in scene.dates)
    for _, refl, scl in scene.optical:
        assert refl.shape == (9, SIZE, SIZE) and refl.dtype == np.float32
        assert refl.min() > 0 and refl.max() < 1
        assert set(np.unique(scl)) <= {3, 4, 5, 6, 8, 9}
        assert (scl == 4).mean() > 0.3
        clear = scl == 4
        b = {n: refl[i] for i, n in enumerate(OPTICAL_BANDS)}
        assert float(np.median(b["B08"][clear])) > 3 * float(np.median(b["B04"][clear]))
        # the 20 m bands and SCL are constant over 2x2 blocks, like nearest-resampled 20 m data
        np.testing.assert_array_equal(
            refl[OPTICAL_BANDS.index("B11"), ::2, ::2], refl[OPTICAL_BANDS.index("B11"), 1::2, 1::2]
        )
        np.testing.assert_array_equal(scl[::2, ::2], scl[1::2, ::2])
    all_scl = np.concatenate([s.ravel() for _, _, s in scene.optical])
    assert {3, 4, 6, 8, 9} <= set(np.unique(all_scl))

    vv, vh = scene.sar
    assert scene.sar.dtype == np.float32 and scene.sar.min() > 0
    assert -20 < 10 * np.log10(np.median(vv)) < -5 and -28 < 10 * np.log10(np.median(vh)) < -12
    assert np.median(vv[scene.rivers]) < 0.3 * np.median(vv[land])  # open water is dark
    assert set(np.unique(scene.permafrost)) == {0, 1} and scene.permafrost.dtype == np.uint8
    assert 0.15 < scene.permafrost.mean() < 0.85
    assert scene.soil_order.dtype == np.int8
    assert set(np.unique(scene.soil_order)) <= set(range(len(SOIL_ORDERS)))
    assert len(np.unique(scene.soil_order)) >= 4


# ------------------------------------------------------------------ the rules of the hidden truth


def test_hidden_fields_follow_terrain():
    s = make_scene(seed=4, size=256, n_observations=0, n_dates=1)
    slope, north, _ = _terrain(s.dem, s.grid.resolution)
    land = ~s.rivers & ~s.roads
    steep = land & (slope > 8)
    pf_north = s.permafrost[steep & (north > 0.7)].mean()
    pf_south = s.permafrost[steep & (north < -0.7)].mean()
    assert pf_north > pf_south + 0.3, (pf_north, pf_south)
    # Soil Taxonomy keys Gelisols first: permafrost soils are Gelisols, the rest are not
    gel = SOIL_ORDERS.index("Gelisols")
    np.testing.assert_array_equal(s.soil_order == gel, s.permafrost == 1)
    # no permafrost right under running water (taliks); alluvium there is Entisols
    assert s.permafrost[s.rivers].mean() < 0.1
    assert (s.soil_order[s.rivers] == SOIL_ORDERS.index("Entisols")).all()
    # darker, lower-NDVI ground (black spruce) holds more permafrost than bright deciduous stands
    lo, hi = np.quantile(s.vegetation[land], [0.25, 0.75])
    assert (
        s.permafrost[land & (s.vegetation < lo)].mean()
        > s.permafrost[land & (s.vegetation > hi)].mean()
    )


def test_permafrost_increases_northward():
    south = make_scene(seed=2, size=96, center=(-147.6, 63.5), n_observations=0, n_dates=1)
    north = make_scene(seed=2, size=96, center=(-147.6, 67.0), n_observations=0, n_dates=1)
    assert north.permafrost.mean() > south.permafrost.mean() + 0.1


def test_covariates_useful_but_imperfect_and_optical_adds():
    """A classifier on terrain alone beats the majority class but not by everything; the optical
    bands (vegetation, wetness signal) improve it: what MISO is supposed to exploit."""
    from sklearn.ensemble import RandomForestClassifier

    s = make_scene(seed=5, size=256, n_observations=0, n_dates=3)
    slope, north, east = _terrain(s.dem, s.grid.resolution)
    tpi = s.dem - s.truth("elevation").rolling(x=31, y=31, center=True, min_periods=1).mean().values
    covariates = np.stack([s.dem, slope, north, east, tpi])
    optical = s.optical_composite()
    rows = np.random.default_rng(0).integers(0, 256, (2, 6000))
    land = ~s.rivers[rows[0], rows[1]] & ~np.isnan(optical[0][rows[0], rows[1]])
    r, c = rows[0][land], rows[1][land]
    # train on the west half, test on the east half: no leakage through autocorrelation
    train, test = c < 128, c >= 128
    y = s.permafrost[r, c]
    x_cov = covariates[:, r, c].T
    x_all = np.concatenate([x_cov, optical[:, r, c].T], axis=1)

    def score(x):
        rf = RandomForestClassifier(n_estimators=60, min_samples_leaf=3, random_state=0, n_jobs=1)
        return rf.fit(x[train], y[train]).score(x[test], y[test])

    majority = max(y[test].mean(), 1 - y[test].mean())
    acc_cov, acc_all = score(x_cov), score(x_all)
    assert majority + 0.03 < acc_cov < 0.95, (majority, acc_cov)  # measured: 0.63, 0.68
    assert acc_all > acc_cov + 0.04, (acc_cov, acc_all)  # measured: 0.78


# ------------------------------------------------------------------ observations


def test_observations_sit_near_roads_and_rivers():
    from pyproj import Transformer
    from scipy import ndimage

    s = make_scene(seed=3, size=160, resolution=30.0, n_observations=600, n_dates=1)
    obs = s.observations
    assert list(obs.columns) == ["x", "y", "lon", "lat", "permafrost", "soil_order"]
    assert len(obs) == 600 and obs.attrs["crs"] == "EPSG:3338"
    assert s.grid.contains(obs["x"].to_numpy(), obs["y"].to_numpy()).all()
    lon, lat = Transformer.from_crs("EPSG:3338", "EPSG:4326", always_xy=True).transform(
        obs["x"], obs["y"]
    )
    np.testing.assert_allclose(obs["lon"], lon, atol=1e-9)
    np.testing.assert_allclose(obs["lat"], lat, atol=1e-9)

    dist = ndimage.distance_transform_edt(~(s.rivers | s.roads)) * s.grid.resolution
    r, c = s.grid.index(obs["x"].to_numpy(), obs["y"].to_numpy())
    d_obs = dist[r, c]
    assert np.median(d_obs) < 300 and (d_obs < 600).mean() > 0.8
    assert np.median(d_obs) < 0.5 * np.median(dist)  # far closer than a random pixel
    assert d_obs.max() <= 2000 + 2 * s.grid.resolution * 1.5  # nobody walks further
    remote = dist > 800
    assert remote.mean() > 0.05 and (d_obs > 800).mean() < 0.2 * remote.mean()  # left unobserved

    labelled = obs["permafrost"].notna()
    assert 0.9 < labelled.mean() < 1.0
    np.testing.assert_array_equal(
        obs["permafrost"][labelled].astype(int), s.permafrost[r, c][labelled]
    )
    names = np.array(SOIL_ORDERS)[s.soil_order[r, c]]
    np.testing.assert_array_equal(
        obs["soil_order"][labelled].to_numpy(), names[labelled.to_numpy()]
    )
    assert obs["soil_order"][~labelled].isna().all()


# ------------------------------------------------------------------ truth as xarray


def test_truth_dataarrays(scene):
    da = scene.truth("permafrost")
    assert da.dims == ("y", "x") and da.rio.crs.to_epsg() == 3338
    np.testing.assert_array_equal(da["x"].values, scene.grid.x)
    np.testing.assert_array_equal(da["y"].values, scene.grid.y)
    # (rio.transform() itself would trip affine's PendingDeprecationWarning inside rioxarray)
    gt = [float(v) for v in da["spatial_ref"].attrs["GeoTransform"].split()]
    assert gt == list(scene.grid.transform.to_gdal())
    np.testing.assert_array_equal(da.values, scene.permafrost)
    assert scene.truth("soil_order").attrs["flag_meanings"].split() == list(SOIL_ORDERS)
    np.testing.assert_array_equal(scene.truth("dem").values, scene.dem)
    ds = scene.truth_dataset()
    assert set(ds.data_vars) == set(TRUTH_NAMES) and ds.rio.crs.to_epsg() == 3338
    with pytest.raises(InputError, match="permafrost"):
        scene.truth("ice")


# ------------------------------------------------------------------ files


def _is_cog(path: Path) -> bool:
    """GDAL's COG layout: the structural-metadata ghost header says IFDs come before the data."""
    head = path.read_bytes()[:400]
    return b"GDAL_STRUCTURAL_METADATA" in head and b"LAYOUT=IFDS_BEFORE_DATA" in head


def test_written_cogs_are_valid_and_exact(scene, written):
    g = scene.grid
    assert len(written.items) == len(scene.optical) + 2
    s2 = [k for k in written.items if k.startswith("S2")]
    for (when, refl, scl), iid in zip(scene.optical, s2):
        offset = 1000 if when.year >= 2022 else 0
        for band in ("B04", "B08", "B11", "B05"):
            path = written.items[iid][band]
            assert _is_cog(path), path
            with rasterio.open(path) as src:
                assert src.crs.to_epsg() == 3338 and src.dtypes[0] == "uint16" and src.nodata == 0
                bh, bw = src.block_shapes[0]
                assert bh == bw >= 128 and (src.overviews(1) or src.width <= bw)
                assert src.tags(ns="IMAGE_STRUCTURE")["COMPRESSION"] == "DEFLATE"
                dn = src.read(1)
                step = 20 if band in ("B11", "B05") else 10
                assert src.transform == rasterio.Affine(step, 0, g.left, 0, -step, g.top)
            expected = refl[OPTICAL_BANDS.index(band), :: step // 10, :: step // 10]
            assert dn.min() > offset  # DN 0 stays nodata
            np.testing.assert_allclose((dn.astype("float32") - offset) / 10000, expected, atol=1e-6)
        with rasterio.open(written.items[iid]["SCL"]) as src:
            np.testing.assert_array_equal(src.read(1), scl[::2, ::2])
    sar_id = next(k for k in written.items if k.startswith("S1"))
    with rasterio.open(written.items[sar_id]["vh"]) as src:
        assert src.dtypes[0] == "float32" and src.transform == g.transform
        np.testing.assert_array_equal(src.read(1), scene.sar[1])
    for name in TRUTH_NAMES:
        assert _is_cog(written.truth[name])
        with rasterio.open(written.truth[name]) as src:
            np.testing.assert_array_equal(
                src.read(1), scene.truth(name).values.astype(src.dtypes[0])
            )

    csv = pd.read_csv(written.observations_csv)
    np.testing.assert_allclose(
        csv[["x", "y", "lon", "lat"]], scene.observations[["x", "y", "lon", "lat"]]
    )
    np.testing.assert_array_equal(csv["permafrost"].isna(), scene.observations["permafrost"].isna())
    gj = json.loads(written.observations_geojson.read_text())
    assert len(gj["features"]) == len(csv)
    assert gj["features"][0]["geometry"]["coordinates"] == [csv["lon"][0], csv["lat"][0]]


def test_larger_cogs_have_tiles_and_overviews(tmp_path):
    from miso_xr.datasets.synthetic import _write_cog

    g = make_scene(size=16, n_observations=0, n_dates=1).grid
    data = np.random.default_rng(0).random((600, 700), dtype="float32")
    _write_cog(tmp_path / "big.tif", data, g.transform, g.crs, nodata=-9999.0)
    assert _is_cog(tmp_path / "big.tif")
    with rasterio.open(tmp_path / "big.tif") as src:
        assert src.profile["tiled"] and src.block_shapes[0] == (256, 256)
        assert src.overviews(1) == [2, 4]
        np.testing.assert_array_equal(src.read(1), data)


def test_write_scene_replaces_a_scene_but_not_other_files(scene, tmp_path):
    target = tmp_path / "scene"
    write_scene(scene, target)
    (target / "stale.txt").write_text("from the previous scene")
    write_scene(scene, target)  # a folder holding a scene is replaced whole
    assert not (target / "stale.txt").exists() and (target / "scene.json").is_file()

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.docx").write_text("precious")
    with pytest.raises(InputError, match="not empty"):
        write_scene(scene, mine)
    assert [p.name for p in mine.iterdir()] == ["thesis.docx"]
    with pytest.raises(InputError, match="Scene"):
        write_scene(scene.dem, tmp_path / "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "scene"]  # no partial output


# ------------------------------------------------------------------ STAC over loopback


def test_stac_files_shape(written, served):
    _, _, hrefs = served
    names = [p.name for p in hrefs]
    assert names[:3] == [
        f"{c}.collection.json" for c in ("sentinel-2-l2a", "sentinel-1-rtc", "cop-dem-glo-30")
    ]
    items = [json.loads(line) for line in hrefs[3].read_text().splitlines()]
    assert len(items) == 3
    for item in items:
        p = item["properties"]
        assert p["s2:processing_baseline"] == ("05.00" if p["datetime"] >= "2022" else "02.14")
        assert 0 <= p["eo:cloud_cover"] <= 100
        b04 = item["assets"]["B04"]
        assert (
            b04["eo:bands"][0]["name"] == "B04" and b04["raster:bands"][0]["data_type"] == "uint16"
        )
        assert b04["proj:epsg"] == 3338 and b04["proj:shape"] == [SIZE, SIZE]
        assert item["assets"]["B11"]["proj:transform"][0] == 20.0


def test_rustac_serves_items_and_pystac_client_finds_them(scene, served):
    import pystac_client

    files, api, _ = served
    client = pystac_client.Client.open(api.url)
    assert {c.id for c in client.get_collections()} == {
        "sentinel-2-l2a",
        "sentinel-1-rtc",
        "cop-dem-glo-30",
    }
    lon0, lat0, lon1, lat1 = scene.bbox_lonlat
    inner = [
        lon0 + 0.3 * (lon1 - lon0),
        lat0 + 0.3 * (lat1 - lat0),
        lon0 + 0.6 * (lon1 - lon0),
        lat0 + 0.6 * (lat1 - lat0),
    ]
    found = list(
        client.search(
            collections=["sentinel-2-l2a"], bbox=inner, datetime="2019-06-01/2023-08-31"
        ).items()
    )
    assert len(found) == len(scene.optical)
    assert all(i.assets["B04"].href.startswith(files.url + "/assets/") for i in found)
    early = list(
        client.search(
            collections=["sentinel-2-l2a"], bbox=inner, datetime="2019-01-01/2021-12-31"
        ).items()
    )
    assert len(early) == sum(d.year < 2022 for d in scene.dates)
    assert {i.properties["s2:processing_baseline"] for i in early} == {"02.14"}
    others = list(
        client.search(collections=["sentinel-1-rtc", "cop-dem-glo-30"], bbox=inner).items()
    )
    assert {i.collection_id for i in others} == {"sentinel-1-rtc", "cop-dem-glo-30"}
    away = list(
        client.search(collections=["sentinel-2-l2a"], bbox=[-150.0, 61.0, -149.9, 61.1]).items()
    )
    assert away == []


def test_cog_pixels_over_http_equal_the_arrays(scene, served):
    import pystac_client

    files, api, _ = served
    client = pystac_client.Client.open(api.url)
    items = sorted(
        client.search(
            collections=["sentinel-2-l2a", "sentinel-1-rtc", "cop-dem-glo-30"],
            bbox=list(scene.bbox_lonlat),
        ).items(),
        key=lambda i: i.datetime,
    )
    window = rasterio.windows.Window(8, 16, 40, 24)  # col, row, width, height
    rs, cs = slice(16, 40), slice(8, 48)
    with rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR", GDAL_HTTP_MAX_RETRY="0"):
        for item in items:
            if item.collection_id == "sentinel-2-l2a":
                when, refl, _ = next(o for o in scene.optical if o[0] == item.datetime)
                offset = 1000 if item.properties["s2:processing_baseline"] >= "04.00" else 0
                with rasterio.open("/vsicurl/" + item.assets["B08"].href) as src:
                    dn = src.read(1, window=window).astype("float32")
                np.testing.assert_allclose(
                    (dn - offset) / 10000, refl[OPTICAL_BANDS.index("B08"), rs, cs], atol=1e-6
                )
            elif item.collection_id == "sentinel-1-rtc":
                with rasterio.open("/vsicurl/" + item.assets["vv"].href) as src:
                    np.testing.assert_array_equal(src.read(1, window=window), scene.sar[0, rs, cs])
            else:
                with rasterio.open("/vsicurl/" + item.assets["data"].href) as src:
                    np.testing.assert_array_equal(src.read(1, window=window), scene.dem[rs, cs])
    assert {i.collection_id for i in items} == {
        "sentinel-2-l2a",
        "sentinel-1-rtc",
        "cop-dem-glo-30",
    }


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"size": 8}, "size=8"),
        ({"size": 100.5}, "size"),
        ({"seed": -1}, "seed=-1"),
        ({"resolution": 0}, "resolution"),
        ({"resolution": "10"}, "resolution"),
        ({"center": (10.0, 45.0)}, "center"),
        ({"center": "Fairbanks"}, "center"),
        ({"n_dates": 0}, "n_dates"),
        ({"n_observations": -5}, "n_observations"),
    ],
)
def test_make_scene_rejects_bad_input(kwargs, match):
    with pytest.raises(InputError, match=match):
        make_scene(**kwargs)


def test_write_stac_rejects_bad_input(written, tmp_path):
    with pytest.raises(InputError, match="write_scene"):
        write_stac(tmp_path, "http://127.0.0.1:1")
    with pytest.raises(InputError, match="base_url"):
        write_stac(written.root, "127.0.0.1:8000")
    assert not (tmp_path / "stac").exists()
