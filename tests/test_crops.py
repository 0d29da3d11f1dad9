"""Crops around points: right pixels, NaN past the edges, and only the chunks needed are read."""

from __future__ import annotations

import threading

import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr

from miso_xr.cube.grid import Grid, make_cube
from miso_xr.exceptions import InputError, MissingBandError
from miso_xr.training.crops import crop_origins, extract_crops

RES = 10.0
MOD = 4096  # values r % MOD * MOD + c % MOD stay exact in float32 (< 2**24)


def _value(rows: np.ndarray, cols: np.ndarray, band: int) -> np.ndarray:
    return (rows % MOD * MOD + cols % MOD + band * 0.5).astype("float32")


def _small_cube(h: int = 40, w: int = 50, chunks: int = 16) -> xr.Dataset:
    g = Grid("EPSG:3338", 1000.0, 9000.0, RES, w, h)
    r, c = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    cov = np.stack([_value(r, c, b) for b in range(3)])
    opt = -cov[:2]
    return make_cube(
        {
            "covariates": (cov, ["elevation", "slope", "aspect"]),
            "optical": (opt, ["B04", "B03"]),
        },
        g,
        chunks=chunks,
    )


def test_crops_hold_the_pixels_around_each_point_and_nan_past_edges():
    cube = _small_cube()
    g = Grid.from_dataset(cube)
    rows = np.array([20, 0, 39, 5])
    cols = np.array([25, 0, 49, 48])
    x, y = g.x[cols], g.y[rows]
    window, margin = 8, 2
    c = extract_crops(cube, x, y, window=window, margin=margin)
    size = window + 2 * margin
    assert c.size == size and len(c) == 4
    assert list(c.arrays) == ["covariates", "optical"]  # cube order
    assert c.bands["covariates"] == ("elevation", "slope", "aspect")
    cov = cube["covariates"].values
    for i in range(4):
        r0, c0 = rows[i] - size // 2, cols[i] - size // 2
        assert (c.row0[i], c.col0[i]) == (r0, c0)
        crop = c.arrays["covariates"][i]
        assert crop.shape == (3, size, size) and crop.dtype == np.float32
        # the point's pixel is the crop's centre pixel
        np.testing.assert_array_equal(crop[:, size // 2, size // 2], cov[:, rows[i], cols[i]])
        rr, cc = np.meshgrid(np.arange(r0, r0 + size), np.arange(c0, c0 + size), indexing="ij")
        inside = (rr >= 0) & (rr < g.height) & (cc >= 0) & (cc < g.width)
        assert np.isnan(crop[:, ~inside]).all()
        np.testing.assert_array_equal(crop[:, inside], cov[:, rr[inside], cc[inside]])
        np.testing.assert_array_equal(c.arrays["optical"][i][:, inside], -crop[:2, inside])
    # the corner point's crop is a quarter outside: padded, not shifted
    assert np.isnan(c.arrays["covariates"][1, :, 0, 0]).all()
    # coordinates of crop pixels are the grid's pixel centres
    cx, cy = c.coords()
    assert cx.shape == (4, size)
    assert cx[0, size // 2] == pytest.approx(x[0]) and cy[0, size // 2] == pytest.approx(y[0])


def test_crop_origins_match_grid_index_and_modalities_subset_keeps_order():
    cube = _small_cube()
    g = Grid.from_dataset(cube)
    r0, c0 = crop_origins(g, g.x[[3]], g.y[[7]], 6)
    assert (int(r0[0]), int(c0[0])) == (7 - 3, 3 - 3)
    c = extract_crops(cube, g.x[[10]], g.y[[10]], window=4, modalities=["optical"])
    assert list(c.arrays) == ["optical"] and c.arrays["optical"].shape == (1, 2, 4, 4)
    # explicit origins (used for random unlabelled tiles), partly outside the grid
    c = extract_crops(cube, None, None, window=4, origins=(np.array([-2]), np.array([47])))
    a = c.arrays["covariates"][0]
    assert np.isnan(a[:, :2]).all() and np.isnan(a[:, :, 3:]).all()
    np.testing.assert_array_equal(a[:, 2:, :3], cube["covariates"].values[:, 0:2, 47:50])


class _CountingScheduler:
    """A synchronous scheduler that counts how many times anything is computed."""

    def __init__(self) -> None:
        self.computes = 0

    def __call__(self, dsk, keys, **kwargs):
        self.computes += 1
        return dask.get(dsk, keys, **kwargs)


def test_only_chunks_under_the_crops_are_read_from_a_cube_far_larger_than_memory():
    # 2 x 200,000 x 200,000 float32 = 320 GB: reading it whole would fail, so any result at all
    # shows laziness; the counter shows exactly which chunks were generated.
    n, chunk = 200_000, 2_000
    calls: list[tuple[int, int]] = []
    lock = threading.Lock()

    def block(block_info=None):
        (b0, b1), (r0, r1), (c0, c1) = block_info[None]["array-location"]
        with lock:
            calls.append((r0 // chunk, c0 // chunk))
        rr, cc = np.meshgrid(np.arange(r0, r1), np.arange(c0, c1), indexing="ij")
        return np.stack([_value(rr, cc, b) for b in range(b0, b1)])

    big = da.map_blocks(
        block, chunks=((2,), (chunk,) * (n // chunk), (chunk,) * (n // chunk)), dtype="float32"
    )
    g = Grid("EPSG:3338", 0.0, n * RES, RES, n, n)
    cube = make_cube({"covariates": (big, ["elevation", "slope"])}, g)
    rows = np.array([10, 1_999, 150_000, 150_010, 199_990])
    cols = np.array([10, 50_000, 3_999, 4_001, 199_995])
    sched = _CountingScheduler()
    with dask.config.set(scheduler=sched):
        c = extract_crops(cube, g.x[cols], g.y[rows], window=16, margin=4)
    # one compute for all crops
    assert sched.computes == 1
    size = 24
    expected = set()
    for r, cc in zip(rows, cols):
        for rr in range(max(0, r - size // 2), min(n, r - size // 2 + size)):
            for ccc in range(max(0, cc - size // 2), min(n, cc - size // 2 + size)):
                expected.add((rr // chunk, ccc // chunk))
    # every chunk touched by some crop, each read once, and nothing else
    assert sorted(calls) == sorted(expected)
    assert len(calls) == len(set(calls)) == len(expected) <= 12  # of 10,000 chunks
    for i, (r, cc) in enumerate(zip(rows, cols)):
        assert c.arrays["covariates"][i, 1, size // 2, size // 2] == _value(r, cc, 1)
    # the last crop runs past the right and bottom edges
    assert np.isnan(c.arrays["covariates"][4, :, -1, -1]).all()


def test_bad_inputs_are_named():
    cube = _small_cube()
    g = Grid.from_dataset(cube)
    with pytest.raises(MissingBandError, match="no modality 'sar'.*covariates"):
        extract_crops(cube, g.x[[1]], g.y[[1]], window=4, modalities=["sar"])
    with pytest.raises(InputError, match="xr.Dataset"):
        extract_crops(cube["covariates"], g.x[[1]], g.y[[1]], window=4)
    with pytest.raises(InputError, match="finite"):
        extract_crops(cube, [np.nan], [g.y[1]], window=4)
    with pytest.raises(InputError, match="same length"):
        extract_crops(cube, g.x[[1, 2]], g.y[[1]], window=4)
    with pytest.raises(InputError, match="window"):
        extract_crops(cube, g.x[[1]], g.y[[1]], window=0)
