"""chunks= takes what xarray takes (int, -1, "auto", {"y", "x"}) in every cube reader; predict
says when it rechunks a cube, and why."""

from __future__ import annotations

import dask
import numpy as np
import pytest
import rasterio
from affine import Affine
from test_predict import ToyModel, toy_cube, toy_spec

from miso_xr.cube.grid import Grid, make_cube, spatial_chunks
from miso_xr.cube.rasters import open_rasters
from miso_xr.exceptions import InputError, RechunkWarning
from miso_xr.infer.predict import predict

GRID = Grid("EPSG:3338", 1000.0, 5000.0, 10.0, 30, 20)


@pytest.fixture(scope="module")
def toy():
    return ToyModel(toy_spec())


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        (8, ((8, 8, 4), (8, 8, 8, 6))),
        (-1, ((20,), (30,))),
        ({"x": 16}, ((20,), (16, 14))),  # a missing dim is one chunk, as in Dataset.chunk
        ({"y": 10, "x": -1}, ((10, 10), (30,))),
        ({"y": None, "x": (10, 20)}, ((20,), (10, 20))),
        ((5, 15), ((5, 5, 5, 5), (15, 15))),
    ],
)
def test_spatial_chunks_forms(chunks, expected):
    assert spatial_chunks(chunks, GRID.shape) == expected


def test_auto_follows_dask_chunk_size():
    with dask.config.set({"array.chunk-size": "4KiB"}):  # 1024 float32 per chunk of 1 band
        yc, xc = spatial_chunks("auto", (100, 100))
    assert max(yc) * max(xc) <= 1024 and len(yc) > 1 and len(xc) > 1
    with dask.config.set({"array.chunk-size": "4KiB"}):  # 4 bands: a quarter of the pixels
        yc4, xc4 = spatial_chunks("auto", (100, 100), bands=4)
    assert max(yc4) * max(xc4) <= 256


@pytest.mark.parametrize(
    "bad", [0, -2, True, "big", 2.5, {"t": 4}, {"x": "huge"}, {"x": (10, 10)}, (1, 2, 3)]
)
def test_bad_chunks_name_the_input_and_what_is_accepted(bad):
    with pytest.raises(InputError, match=r"chunks=.*expected an int .*\"auto\".*\{\"y\""):
        spatial_chunks(bad, GRID.shape)


@pytest.mark.parametrize("chunks", [8, -1, "auto", {"y": 8, "x": 16}, {"x": 16}])
def test_make_cube_takes_what_xarray_takes(chunks):
    arr = np.zeros((2, *GRID.shape), "float32")
    cube = make_cube({"covariates": (arr, ["elevation", "slope"])}, GRID, chunks=chunks)
    expected = (
        make_cube({"covariates": (arr, ["elevation", "slope"])}, GRID)
        .chunk(chunks if isinstance(chunks, dict) else {"y": chunks, "x": chunks})
        .chunk({"covariates_band": -1})
    )
    if isinstance(chunks, dict):  # xarray leaves a dim absent from the dict whole
        expected = expected.chunk({d: -1 for d in ("y", "x") if d not in chunks})
    assert cube.chunks == expected.chunks


def _write(path, data):
    profile = dict(
        driver="GTiff", width=data.shape[1], height=data.shape[0], count=1, dtype="float32",
        crs="EPSG:3338", transform=Affine(10.0, 0, 1000.0, 0, -10.0, 5000.0),
    )  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)
    return path


@pytest.mark.parametrize("chunks", [8, -1, "auto", {"y": 8, "x": 16}, {"x": 16}])
def test_open_rasters_takes_what_xarray_takes_and_values_do_not_change(tmp_path, chunks):
    dem = np.arange(600, dtype="float32").reshape(20, 30)
    cube = open_rasters(
        {"covariates": {"elevation": _write(tmp_path / "dem.tif", dem)}}, chunks=chunks
    )
    yc, xc = spatial_chunks(chunks, GRID.shape)
    assert cube["covariates"].chunks == ((1,), yc, xc)
    np.testing.assert_array_equal(cube["covariates"].values[0], dem)


def test_open_rasters_bad_chunks_is_one_clear_error(tmp_path):
    dem = _write(tmp_path / "dem.tif", np.zeros((20, 30), "float32"))
    with pytest.raises(InputError, match="chunks='big'"):
        open_rasters({"covariates": {"elevation": dem}}, chunks="big")


def test_predict_is_silent_when_chunks_suit_it(toy):
    predict(toy_cube(64, 64, chunks=32), toy, window=8, stride=4)  # warnings are errors here


def test_predict_says_it_merges_chunks_thinner_than_the_halo(toy):
    cube = toy_cube(64, 64, chunks={"y": (60, 4), "x": -1})
    with pytest.warns(RechunkWarning, match=r"thinner than the \d+-pixel halo.*y 60\+4 -> 52\+12"):
        maps = predict(cube, toy, window=16, stride=8)
    assert maps.probability.chunks[1] == (52, 12)


def test_predict_says_it_aligns_modalities_chunked_differently(toy):
    cube = toy_cube(64, 64, chunks=32)
    cube["covariates"] = cube["covariates"].chunk({"y": 16})
    with pytest.warns(RechunkWarning, match="'covariates' is chunked differently from 'optical'"):
        maps = predict(cube, toy, window=8, stride=4)
    assert maps.probability.chunks[1] == (32, 32)


def test_predict_says_it_joins_band_chunks(toy):
    cube = toy_cube(64, 64, chunks=32)
    cube["optical"] = cube["optical"].chunk({"optical_band": 1})
    with pytest.warns(RechunkWarning, match="'optical' is split along 'optical_band'"):
        predict(cube, toy, window=8, stride=4)
