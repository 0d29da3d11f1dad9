"""open_rasters: local GeoTIFFs onto one grid, lazily; the real CPCRW rasters when available."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine
from pyproj import Transformer

from miso_xr.cube.grid import Grid
from miso_xr.cube.rasters import open_rasters, raster_grid
from miso_xr.cube.terrain import TERRAIN_BANDS
from miso_xr.exceptions import InputError

CPCRW = "cpcrw_permafrost_alter2025"


def write(path, data, transform, epsg=3338, nodata=None):
    profile = dict(
        driver="GTiff",
        width=data.shape[1],
        height=data.shape[0],
        count=1,
        dtype=data.dtype,
        crs=f"EPSG:{epsg}",
        transform=transform,
        nodata=nodata,
    )
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)
    return path


def read(path):
    with rasterio.open(path) as src:
        return src.read(1, masked=True).astype("float32").filled(np.nan)


@pytest.fixture
def small(tmp_path):
    rng = np.random.default_rng(3)
    tf = Affine(10.0, 0, 1000.0, 0, -10.0, 5000.0)
    dem = write(tmp_path / "dem.tif", (100 + rng.random((20, 30)) * 50).astype("float32"), tf)
    lc = write(
        tmp_path / "lc.tif", rng.choice([11, 42, 90], (20, 30)).astype("uint8"), tf, nodata=0
    )
    return {"dem": dem, "lc": lc, "grid": Grid("EPSG:3338", 1000.0, 5000.0, 10.0, 30, 20)}


def test_first_raster_grid_exact_values_lazy(small, raise_if_dask_computes):
    with raise_if_dask_computes():
        cube = open_rasters(
            {"covariates": {"landcover": small["lc"], "elevation": small["dem"]}},
            chunks=8,
            categorical=("landcover",),
        )
    assert Grid.from_dataset(cube) == small["grid"]
    assert list(cube.covariates_band.values) == ["elevation", "landcover"]  # canonical first
    assert cube["covariates"].data.chunksize == (2, 8, 8)
    np.testing.assert_array_equal(
        cube["covariates"].sel(covariates_band="elevation"), read(small["dem"])
    )
    np.testing.assert_array_equal(
        cube["covariates"].sel(covariates_band="landcover"), read(small["lc"])
    )


def test_like_grid_on_the_same_lattice_reads_exactly_with_nan_outside(small):
    like = Grid("EPSG:3338", 1000.0 + 5 * 10, 5000.0 + 3 * 10, 10.0, 40, 10)  # shifted, wider
    cube = open_rasters({"covariates": {"elevation": small["dem"]}}, like=like, chunks=16)
    got = cube["covariates"].values[0]
    src = read(small["dem"])
    np.testing.assert_array_equal(got[3:, :25], src[:7, 5:])
    assert np.isnan(got[:3]).all() and np.isnan(got[:, 25:]).all()


def test_warped_onto_another_crs_categorical_stays_categorical(small):
    tr = Transformer.from_crs("EPSG:3338", "EPSG:32606", always_xy=True)
    x, y = tr.transform(1100.0, 4900.0)
    like = Grid("EPSG:32606", float(x), float(y), 7.0, 12, 12)
    cube = open_rasters(
        {"covariates": {"elevation": small["dem"], "landcover": small["lc"]}},
        like=like,
        chunks=5,
        categorical=["landcover"],
    )
    lc = cube["covariates"].sel(covariates_band="landcover").values
    assert set(np.unique(lc[np.isfinite(lc)])) <= {11.0, 42.0, 90.0}
    elev = cube["covariates"].sel(covariates_band="elevation").values
    src = read(small["dem"])
    assert np.isfinite(elev).all() and src.min() <= elev.min() and elev.max() <= src.max()
    again = open_rasters({"covariates": {"elevation": small["dem"]}}, like=cube, chunks=7)
    np.testing.assert_array_equal(again["covariates"].values[0], elev)  # chunking-independent


def test_derive_terrain_keeps_given_layers(small):
    cube = open_rasters(
        {"covariates": {"elevation": small["dem"], "slope": small["lc"]}},
        derive_terrain=True,
        tpi_radius=30,
        chunks=10,
    )
    assert list(cube.covariates_band.values) == list(TERRAIN_BANDS)
    np.testing.assert_array_equal(
        cube["covariates"].sel(covariates_band="slope"), read(small["lc"])
    )
    assert np.isfinite(cube["covariates"].sel(covariates_band="twi")).all()


@pytest.mark.parametrize(
    ("layers", "kw", "match"),
    [
        (
            {"covariates": {"elevation": "nowhere/dem.tif"}},
            {},
            r"not found: covariates.elevation: nowhere/dem.tif",
        ),
        ({}, {}, "modality"),
        ({"covariates": {}}, {}, "non-empty"),
        ({"covariates": {"elevation": "DEM"}}, {"categorical": ["landcover"]}, "categorical"),
        ({"covariates": {"slope": "DEM"}}, {"derive_terrain": True}, "'elevation'"),
        ({"covariates": {"elevation": "DEM"}}, {"resampling": "smooth"}, "resampling"),
        ({"covariates": {"elevation": "DEM"}}, {"like": "EPSG:3338"}, "like="),
        ({"covariates": {"elevation": "TXT"}}, {}, "cannot read"),
    ],
)
def test_bad_input_is_one_input_error(small, tmp_path, layers, kw, match):
    (tmp_path / "notes.txt").write_text("not a raster")
    subst = {"DEM": str(small["dem"]), "TXT": str(tmp_path / "notes.txt")}
    layers = {m: {b: subst.get(p, p) for b, p in bands.items()} for m, bands in layers.items()}
    with pytest.raises(InputError, match=match):
        open_rasters(layers, **kw)


def test_cpcrw_real_rasters(shared_data, raise_if_dask_computes):
    d = shared_data / CPCRW
    files = {
        "elevation": d / "cpcrw_elevation_m_50m_epsg32606.tif",
        "slope": d / "cpcrw_slope_deg_50m_epsg32606.tif",
        "aspect": d / "cpcrw_aspect_deg_50m_epsg32606.tif",
        "landcover": d / "cpcrw_landcover_nlcd_50m_epsg32606.tif",
    }
    with raise_if_dask_computes():
        cube = open_rasters({"covariates": files}, chunks=128, categorical=("landcover",))
    grid = raster_grid(files["elevation"])
    assert (grid.crs, grid.resolution, grid.shape) == ("EPSG:32606", 50.0, (247, 310))
    assert Grid.from_dataset(cube) == grid
    got = cube.compute()
    for band, path in files.items():
        np.testing.assert_array_equal(got["covariates"].sel(covariates_band=band), read(path))


def test_cpcrw_derived_terrain_agrees_with_published_layers(shared_data):
    d = shared_data / CPCRW
    cube = open_rasters(
        {"covariates": {"elevation": d / "cpcrw_elevation_m_50m_epsg32606.tif"}},
        derive_terrain=True,
        chunks=100,
    ).compute()
    ours = cube["covariates"]
    slope, aspect = (
        read(d / "cpcrw_slope_deg_50m_epsg32606.tif"),
        read(d / "cpcrw_aspect_deg_50m_epsg32606.tif"),
    )
    ok = np.isfinite(slope) & np.isfinite(ours.sel(covariates_band="slope").values)
    r = np.corrcoef(slope[ok], ours.sel(covariates_band="slope").values[ok])[0, 1]
    assert r > 0.99  # measured 0.9989; their tan(slope) is ~1.8x ours (see docs/cube.md)
    ours_aspect = ours.sel(covariates_band="aspect").values
    ok &= ours_aspect >= 0
    diff = np.abs((aspect[ok] - ours_aspect[ok] + 180) % 360 - 180)
    # same downslope directions cell by cell; cells at the watershed edge differ most (their
    # one-sided differences are not ours)
    assert np.median(diff) < 0.01 and np.mean(diff < 20.0) > 0.99
