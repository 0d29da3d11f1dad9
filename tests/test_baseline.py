"""RandomForestBaseline: features, fit/predict, the predictor protocol, safetensors round trip."""

from __future__ import annotations

import json
import struct

import numpy as np
import pandas as pd
import pytest

from miso_xr.checkpoint import read_info, sha256_file
from miso_xr.cube.grid import Grid, make_cube
from miso_xr.exceptions import InputError, MissingBandError, ObservationError
from miso_xr.loaders import load_checkpoint
from miso_xr.observations import read_observations
from miso_xr.training.baseline import RandomForestBaseline

OPTICAL = "B04 B03 B02 B05 B06 B07 B08 B11 B12".split()
TERRAIN = "elevation slope aspect curvature tpi twi".split()


def _scene(size: int = 48, seed: int = 0):
    """A cube whose permafrost rule is known: cold (high) and north-facing ground is frozen."""
    rng = np.random.default_rng(seed)
    grid = Grid("EPSG:3338", 250_000.0, 1_650_000.0, 10.0, size, size)
    yy, xx = np.mgrid[0:size, 0:size] / size
    elevation = 300 + 400 * xx + 20 * rng.standard_normal((size, size))
    aspect = 360 * yy
    cov = np.stack(
        [elevation, rng.random((size, size)) * 30, aspect]
        + [rng.standard_normal((size, size)) for _ in range(3)]
    ).astype("float32")
    opt = rng.random((9, size, size)).astype("float32")
    opt[:, :4, :4] = np.nan  # cloud in one corner
    cube = make_cube({"optical": (opt, OPTICAL), "covariates": (cov, TERRAIN)}, grid, chunks=16)
    frozen = (elevation > 500) & ((aspect < 90) | (aspect > 270))
    return cube, grid, frozen


def _obs(grid, frozen, n: int = 150, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    r = rng.integers(4, grid.height, n)
    c = rng.integers(4, grid.width, n)
    df = pd.DataFrame({"x": grid.x[c], "y": grid.y[r], "permafrost": frozen[r, c].astype(int)})
    return read_observations(df.drop_duplicates(["x", "y"]), crs=grid.crs)


@pytest.fixture(scope="module")
def fitted():
    cube, grid, frozen = _scene()
    obs = _obs(grid, frozen)
    rf = RandomForestBaseline(n_estimators=15, seed=0).fit(cube, obs)
    return rf, cube, grid, frozen, obs


def test_rf11_features_and_spec(fitted):
    rf, cube, grid, _, obs = fitted
    assert rf.feature_names == [f"covariates:{b}" for b in TERRAIN] + [
        f"optical:{b}" for b in OPTICAL
    ] + ["lon", "lat"]
    spec = rf.spec
    assert spec.kind == "random_forest" and spec.task == "permafrost"
    assert spec.classes == ("absent", "present") and spec.location is True
    assert spec.crs == grid.crs and spec.resolution == grid.resolution
    assert spec.window == spec.stride == 64
    assert rf.training["n_observations"] == len(obs)
    assert "17 features" in repr(rf)
    assert rf.to("cuda") is rf


def test_learns_the_rule_on_unseen_pixels(fitted):
    rf, cube, grid, frozen, obs = fitted
    rng = np.random.default_rng(7)
    r, c = rng.integers(4, grid.height, 300), rng.integers(4, grid.width, 300)
    proba = rf.predict_points(cube, (grid.x[c], grid.y[r]))
    assert proba.shape == (300, 2) and np.allclose(proba.sum(axis=1), 1)
    acc = ((proba[:, 1] > 0.5) == frozen[r, c]).mean()
    base = max(frozen.mean(), 1 - frozen.mean())
    assert acc > base + 0.1, (acc, base)


def test_predict_windows_matches_points_and_handles_nan(fitted):
    rf, cube, grid, _, _ = fitted
    w = 12
    opt = cube["optical"].values[None, :, :w, :w]
    cov = cube["covariates"].values[None, :, :w, :w]
    out = rf.predict_windows(
        {"optical": opt, "covariates": cov}, grid.x[None, :w], grid.y[None, :w], device="cpu"
    )
    assert out.shape == (1, 2, w, w) and out.dtype == np.float32
    rr, cc = np.meshgrid(np.arange(w), np.arange(w), indexing="ij")
    pts = rf.predict_points(cube, (grid.x[cc.ravel()], grid.y[rr.ravel()]))
    np.testing.assert_array_equal(out[0].reshape(2, -1).T, pts)
    # cloudy optical (NaN) pixels still get probabilities from the other features
    assert np.isfinite(out[0, :, :4, :4]).all()
    # points off the cube get NaN rows
    off = rf.predict_points(cube, (np.array([grid.bounds[2] + 100.0]), np.array([grid.y[0]])))
    assert np.isnan(off).all()
    with pytest.raises(MissingBandError, match="no modality 'covariates'"):
        rf.predict_windows({"optical": opt}, grid.x[None, :w], grid.y[None, :w])


def test_safetensors_round_trip_is_identical(fitted, tmp_path):
    rf, cube, grid, _, obs = fitted
    path = tmp_path / "rf.safetensors"
    sha = rf.save(path)
    assert sha == sha256_file(path) == rf.sha256 and rf.source == str(path.resolve())
    # a plain safetensors file: an 8-byte header length, JSON header, raw arrays (no pickle)
    raw = path.read_bytes()
    header = json.loads(raw[8 : 8 + struct.unpack("<Q", raw[:8])[0]])
    assert header["__metadata__"]["kind"] == "random_forest"
    assert {"tree.00000.threshold", "tree.00014.value", "fill"} <= set(header)
    assert b"\x80\x04\x95" not in raw  # pickle protocol-4 opcode never appears
    info = read_info(path)
    assert info.spec == rf.spec and info.config["feature_names"] == rf.feature_names
    loaded = load_checkpoint(path)
    assert isinstance(loaded, RandomForestBaseline) and loaded.sha256 == sha
    np.testing.assert_array_equal(loaded.predict_points(cube, obs), rf.predict_points(cube, obs))
    w = 8
    inputs = {
        m: cube[m].values[None, :, 20 : 20 + w, 20 : 20 + w] for m in ("optical", "covariates")
    }
    xs, ys = grid.x[None, 20 : 20 + w], grid.y[None, 20 : 20 + w]
    np.testing.assert_array_equal(
        loaded.predict_windows(inputs, xs, ys), rf.predict_windows(inputs, xs, ys)
    )


def test_cube_predict_works_like_miso(fitted):
    pytest.importorskip("miso_xr.infer.predict")
    _, cube, grid, _, _ = fitted
    # a forest with 16-pixel windows: predict tiles the small cube with several of them
    small = RandomForestBaseline(n_estimators=5, window=16, features=["covariates"])
    obs = _obs(grid, fitted[3], n=60)
    small.fit(cube, obs)
    maps = cube.miso.predict(small, device="cpu")
    prob = maps["probability"].values
    assert prob.shape == (2, grid.height, grid.width)
    rr, cc = np.array([5, 30, 47]), np.array([40, 2, 47])
    pts = small.predict_points(cube, (grid.x[cc], grid.y[rr]))
    np.testing.assert_allclose(prob[:, rr, cc].T, pts, atol=1e-5)


def test_feature_lists_and_errors():
    cube, grid, frozen = _scene(size=24)
    obs = _obs(grid, frozen, n=60)
    rf = RandomForestBaseline(
        n_estimators=3, features=["covariates:elevation", "B08", "aspect", "lonlat"]
    ).fit(cube, obs)
    assert rf.feature_names == [
        "covariates:elevation",
        "covariates:aspect",
        "optical:B08",
        "lon",
        "lat",
    ]
    assert [m for m, _ in rf.spec.modalities] == ["covariates", "optical"]
    with pytest.raises(MissingBandError, match="'B99' is neither a modality nor a band.*B04"):
        RandomForestBaseline(features=["B99"]).fit(cube, obs)
    with pytest.raises(MissingBandError, match="no band 'B99' in 'optical'"):
        RandomForestBaseline(features=["optical:B99"]).fit(cube, obs)
    with pytest.raises(InputError, match="features='rf12'"):
        RandomForestBaseline(features="rf12").fit(cube, obs)
    only_sar = make_cube({"sar": (np.zeros((2, 24, 24)), ["vv", "vh"])}, grid)
    with pytest.raises(MissingBandError, match="needs an 'optical' or 'covariates'"):
        RandomForestBaseline().fit(only_sar, obs)
    with pytest.raises(MissingBandError, match="no band 'B08' in 'optical'"):
        rf.predict_points(cube.drop_sel(optical_band=["B08"]), obs)
    with pytest.raises(InputError, match="not fitted"):
        RandomForestBaseline().save("x.safetensors")
    with pytest.raises(InputError, match="n_estimators=0"):
        RandomForestBaseline(n_estimators=0)
    with pytest.raises(ObservationError, match="Categorical"):
        RandomForestBaseline().fit(cube, pd.DataFrame({"x": [0.0], "y": [0.0], "label": [1]}))
    off = obs.copy()
    off["x"] = off["x"] + 1e6
    with pytest.raises(ObservationError, match="off the cube"):
        RandomForestBaseline(n_estimators=2).fit(cube, off)
