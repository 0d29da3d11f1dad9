"""Terrain covariates: analytic surfaces, seam-free chunking, laziness, bad input."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import xarray as xr

from miso_xr.cube.terrain import TERRAIN_BANDS, terrain, terrain_depth
from miso_xr.exceptions import InputError

RES = 10.0
SLOPE, ASPECT, CURV, TPI, TWI = 1, 2, 3, 4, 5


def surface(func, n=24, m=30):
    """Evaluate ``func(x_east, y_north)`` (metres) on a north-up grid, row 0 at the north."""
    rows, cols = np.mgrid[0:n, 0:m].astype("float64")
    return func(cols * RES, (n - 1 - rows) * RES)


@pytest.mark.parametrize(("a", "b"), [(0.1, 0.0), (0.0, 0.2), (-0.3, 0.4), (0.05, -0.05)])
def test_plane_slope_and_aspect_exact_everywhere(a, b):
    z = surface(lambda x, y: 100 + a * x + b * y)
    out = terrain(z, RES, tpi_radius=30)
    want_slope = np.degrees(np.arctan(np.hypot(a, b)))
    # downslope direction, clockwise from north: east component -a, north component -b
    want_aspect = np.degrees(np.arctan2(-a, -b)) % 360
    np.testing.assert_allclose(out[SLOPE], want_slope, atol=1e-4)  # edges too
    np.testing.assert_allclose(out[ASPECT], want_aspect, atol=1e-3)
    np.testing.assert_allclose(out[CURV], 0, atol=1e-6)
    np.testing.assert_array_equal(out[0], z.astype("float32"))
    r = 3  # tpi window half-width in pixels: the plane's interior is its own mean
    np.testing.assert_allclose(out[TPI][r:-r, r:-r], 0, atol=1e-3)


def test_flat_aspect_is_minus_one_not_nan():
    out = terrain(np.full((10, 10), 5.0), RES, tpi_radius=30)
    assert (out[ASPECT] == -1).all() and (out[SLOPE] == 0).all()
    assert np.isfinite(out).all()


def test_curvature_sign_and_value():
    k = 0.001  # z = k (x^2 + y^2): a bowl with second derivatives 2k
    bowl = surface(lambda x, y: k * ((x - 150) ** 2 + (y - 115) ** 2))
    dome = -bowl
    cb = terrain(bowl, RES, tpi_radius=30)[CURV][5:-5, 5:-5]
    cd = terrain(dome, RES, tpi_radius=30)[CURV][5:-5, 5:-5]
    np.testing.assert_allclose(cd, 2 * k, rtol=1e-4)  # convex: +2k
    np.testing.assert_allclose(cb, -2 * k, rtol=1e-4)  # concave both ways: even the max is -2k


def test_valley_is_wetter_and_lower_than_ridge():
    # a V-shaped valley along x = 150 m with a gentle northward rise
    z = surface(lambda x, y: 200 + 0.3 * np.abs(x - 150) + 0.02 * y, n=30, m=31)
    out = terrain(z, RES, tpi_radius=50)
    valley, ridge = out[:, 15, 15], out[:, 15, 1]
    assert valley[TPI] < 0 < ridge[TPI]
    assert valley[TWI] > ridge[TWI] + 1.0


def test_nan_centre_gives_nan_and_holes_do_not_spread():
    z = surface(lambda x, y: 50 + 0.1 * x)
    z[10, 10] = np.nan
    out = terrain(z, RES, tpi_radius=30)
    assert np.isnan(out[:, 10, 10]).all()
    assert np.isfinite(np.delete(out.reshape(6, -1), 10 * z.shape[1] + 10, axis=1)).all()
    np.testing.assert_allclose(out[SLOPE, 10, 11], np.degrees(np.arctan(0.1)), atol=1e-4)


@pytest.mark.parametrize("chunks", [7, 9, (11, 30), (40, 5), 64])
def test_any_chunking_gives_identical_values(chunks):
    rng = np.random.default_rng(1)
    z = np.cumsum(np.cumsum(rng.normal(size=(40, 45)), 0), 1) * 3 + 500
    z[rng.random(z.shape) < 0.02] = np.nan
    whole = terrain(z, RES, tpi_radius=60)
    lazy = terrain(da.from_array(z, chunks=chunks), RES, tpi_radius=60)
    assert isinstance(lazy, da.Array) and lazy.shape == (6, 40, 45)
    np.testing.assert_array_equal(lazy.compute(), whole)  # bit for bit, NaN in the same places


def test_lazy_and_dataarray_in_dataarray_out(raise_if_dask_computes):
    z = surface(lambda x, y: 100 + 0.1 * x, n=20, m=20)
    dem = xr.DataArray(
        da.from_array(z, chunks=8),
        dims=("y", "x"),
        coords={"y": np.arange(20)[::-1] * RES, "x": np.arange(20) * RES},
    )
    with raise_if_dask_computes():
        out = terrain(dem, RES, tpi_radius=30)
    assert out.dims == ("covariates_band", "y", "x")
    assert list(out.covariates_band.values) == list(TERRAIN_BANDS)
    assert out.dtype == np.float32 and len(out.attrs["units"]) == 6
    np.testing.assert_array_equal(out.x, dem.x)
    np.testing.assert_allclose(
        out.sel(covariates_band="slope"), np.degrees(np.arctan(0.1)), atol=1e-4
    )
    assert terrain_depth(RES, tpi_radius=30) == 4


def test_tiny_arrays_smaller_than_the_halo():
    z = np.arange(12.0).reshape(3, 4)
    np.testing.assert_array_equal(
        terrain(da.from_array(z, chunks=2), RES).compute(), terrain(z, RES)
    )


@pytest.mark.parametrize(
    ("dem", "res", "kw", "match"),
    [
        (np.zeros((5, 5)), 0.0, {}, "resolution"),
        (np.zeros((5, 5)), np.nan, {}, "resolution"),
        (np.zeros((5, 5)), RES, {"tpi_radius": -1.0}, "tpi_radius"),
        (np.zeros((2, 5, 5)), RES, {}, "2-D"),
        (np.zeros(5), RES, {}, "2-D"),
    ],
)
def test_bad_input(dem, res, kw, match):
    with pytest.raises(InputError, match=match):
        terrain(dem, res, **kw)
