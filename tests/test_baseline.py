"""RandomForestBaseline: features, fit/predict, the predictor protocol, safetensors round trip."""

from __future__ import annotations

import json
import struct

import numpy as np
import pandas as pd
import pytest

from miso_xr.checkpoint import read_checkpoint, read_info, sha256_file, write_checkpoint
from miso_xr.cube.grid import Grid, make_cube
from miso_xr.exceptions import CheckpointError, InputError, MissingBandError, ObservationError
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


def test_pixel_features_and_spec(fitted):
    rf, cube, grid, _, obs = fitted
    # the reference's point-pixel features, and no coordinates
    assert rf.feature_names == [f"covariates:{b}" for b in TERRAIN] + [
        f"optical:{b}" for b in OPTICAL
    ]
    spec = rf.spec
    assert spec.kind == "random_forest" and spec.task == "permafrost"
    assert spec.classes == ("absent", "present") and spec.location is False
    assert spec.crs == grid.crs and spec.resolution == grid.resolution
    assert spec.window == spec.stride == 64
    assert rf.training["n_observations"] == len(obs)
    assert "15 features" in repr(rf)
    assert rf.to("cuda") is rf


def test_defaults_are_the_reference_forest():
    cube, grid, frozen = _scene(size=24)
    obs = _obs(grid, frozen, n=60)
    rf = RandomForestBaseline().fit(cube, obs)
    params = rf.forest_.get_params()
    assert len(rf.forest_.estimators_) == 253
    assert (params["max_depth"], params["min_samples_split"]) == (16, 5)
    assert params["max_features"] == "sqrt" and params["min_samples_leaf"] == 1
    assert rf.spec.location is False and "lon" not in rf.feature_names
    # a climate modality is a point-pixel feature; SAR is not (as in the reference)
    clim = np.stack([np.full((24, 24), v, "float32") for v in (300.0, 40.0, -25.0)])
    sar = np.zeros((2, 24, 24), "float32")
    layers = {m: (cube[m].values, list(cube[m][f"{m}_band"].values)) for m in cube.data_vars}
    layers |= {"climate": (clim, ["ppt", "swi", "tmin"]), "sar": (sar, ["vv", "vh"])}
    more = make_cube(layers, grid, chunks=16)
    rf = RandomForestBaseline(n_estimators=3).fit(more, obs)
    assert [m for m, _ in rf.spec.modalities] == ["climate", "covariates", "optical"]


def test_coordinates_option_adds_lon_lat(fitted):
    _, cube, grid, frozen, obs = fitted
    rf = RandomForestBaseline(n_estimators=5, coordinates=True).fit(cube, obs)
    assert rf.feature_names[-2:] == ["lon", "lat"] and rf.spec.location is True
    assert "17 features" in repr(rf)
    # "rf11" is the reference script's full list: the pixel features, then lon/lat
    rf11 = RandomForestBaseline(n_estimators=5, features="rf11").fit(cube, obs)
    assert rf11.feature_names == rf.feature_names
    # lon/lat come from the pixel centre: the forest sees them at inference too
    w = 4
    inputs = {
        m: cube[m].values[None, :, 30 : 30 + w, 30 : 30 + w] for m in ("optical", "covariates")
    }
    xs, ys = grid.x[None, 30 : 30 + w], grid.y[None, 30 : 30 + w]
    rr, cc = np.meshgrid(np.arange(30, 30 + w), np.arange(30, 30 + w), indexing="ij")
    pts = rf.predict_points(cube, (grid.x[cc.ravel()], grid.y[rr.ravel()]))
    np.testing.assert_array_equal(rf.predict_windows(inputs, xs, ys)[0].reshape(2, -1).T, pts)
    with pytest.raises(InputError, match="coordinates='yes'"):
        RandomForestBaseline(coordinates="yes")


def test_land_cover_codes_stay_codes():
    """A categorical layer is fed as its code; a missing code takes the most frequent one."""
    size = 24
    grid = Grid("EPSG:3338", 250_000.0, 1_650_000.0, 10.0, size, size)
    rng = np.random.default_rng(3)
    lc = rng.choice([41.0, 42.0, 90.0], size=(size, size), p=[0.2, 0.2, 0.6]).astype("float32")
    elev = rng.normal(400, 50, (size, size)).astype("float32")
    cube = make_cube({"covariates": (np.stack([elev, lc]), ["elevation", "landcover"])}, grid)
    cube["covariates"].attrs["categorical"] = ["landcover"]
    frozen = lc == 90.0  # the label is the land cover: codes must reach the trees as they are
    obs = _obs(grid, frozen, n=120)
    rf = RandomForestBaseline(n_estimators=20).fit(cube, obs)
    assert dict(rf.spec.extra)["categorical"] == "covariates:landcover"
    # the fill is a code that exists (the most frequent at the training points), not a mean
    x, y = obs["x"].to_numpy(), obs["y"].to_numpy()
    r, c = grid.index(x, y)
    seen, counts = np.unique(lc[r, c], return_counts=True)
    assert rf.fill_[1] == seen[np.argmax(counts)] == 90.0
    assert rf.fill_[0] == pytest.approx(float(elev[r, c].mean()), rel=1e-5)
    p = rf.predict_points(cube, (grid.x, np.full(size, grid.y[5])))
    np.testing.assert_array_equal(p[:, 1] > 0.5, frozen[5])


def test_checkpoint_records_the_installed_tree_layout(fitted, tmp_path):
    """Fails when scikit-learn's tree nodes stop matching what checkpoints store."""
    import sklearn
    from sklearn.tree._tree import NODE_DTYPE

    rf = fitted[0]
    path = tmp_path / "rf.safetensors"
    rf.save(path)
    recorded = read_info(path).config["sklearn"]
    assert recorded["version"] == sklearn.__version__
    node = np.dtype(NODE_DTYPE)
    assert recorded["node_fields"] == [f"{n}:{node.fields[n][0].str}" for n in node.names]
    # the fields the package has always written (a layout change must be looked at)
    assert [f.split(":")[0] for f in recorded["node_fields"]] == [
        "left_child",
        "right_child",
        "feature",
        "threshold",
        "impurity",
        "n_node_samples",
        "weighted_n_node_samples",
        "missing_go_to_left",
    ]
    assert recorded["tree_args"] == 3
    assert recorded["tree_state"] == ["max_depth", "node_count", "nodes", "values"]
    tensors, _ = read_checkpoint(path)
    for n in node.names:
        assert tensors[f"tree.00000.{n}"].dtype == node.fields[n][0]


def _rewrite(src, dst, **sklearn_layout):
    """A copy of a checkpoint whose recorded scikit-learn layout is changed."""
    tensors, info = read_checkpoint(src)
    config = dict(info.config)
    if sklearn_layout.get("drop"):
        config.pop("sklearn")
    else:
        config["sklearn"] = {**config["sklearn"], **sklearn_layout}
    write_checkpoint(dst, tensors, spec=info.spec, config=config, training=info.training)
    return dst


def test_a_different_tree_layout_is_one_clear_error(fitted, tmp_path):
    import sklearn

    rf, cube, _, _, obs = fitted
    good = tmp_path / "rf.safetensors"
    rf.save(good)
    fields = read_info(good).config["sklearn"]["node_fields"]
    # what scikit-learn's categorical splits could look like: a new field, one gone
    bad = _rewrite(
        good,
        tmp_path / "future.safetensors",
        version="1.11.0",
        node_fields=fields[:-1] + ["categorical_bitset:<u8"],
    )
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(bad)
    msg = str(err.value)
    assert "future.safetensors" in msg
    assert "scikit-learn 1.11.0" in msg and f"scikit-learn {sklearn.__version__}" in msg
    assert "recorded but not installed: categorical_bitset:<u8" in msg
    assert "installed but not recorded: missing_go_to_left:|u1" in msg
    assert "pip install 'scikit-learn==1.11.0'" in msg
    ctor = _rewrite(good, tmp_path / "ctor.safetensors", version="1.11.0", tree_args=4)
    with pytest.raises(CheckpointError, match="ctor.safetensors.*Tree constructor arguments"):
        load_checkpoint(ctor)
    # another version with the same layout loads, and predicts the same
    other = load_checkpoint(_rewrite(good, tmp_path / "other.safetensors", version="1.4.2"))
    np.testing.assert_array_equal(other.predict_points(cube, obs), rf.predict_points(cube, obs))
    # a checkpoint from before the layout was recorded still loads (the legacy fields)
    legacy = load_checkpoint(_rewrite(good, tmp_path / "legacy.safetensors", drop=True))
    np.testing.assert_array_equal(legacy.predict_points(cube, obs), rf.predict_points(cube, obs))


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
    with pytest.raises(MissingBandError, match="needs an 'optical', 'covariates' or 'climate'"):
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


def test_default_map_does_not_move_with_the_pixels():
    """With default settings, the same pixels moved 100 km must give the same map."""
    cube, grid, frozen = _scene(size=96, seed=5)  # more than the default 64-pixel window
    obs = _obs(grid, frozen, n=150, seed=6)
    shift = 100_000.0
    moved_grid = Grid(grid.crs, grid.left + shift, grid.top + shift, grid.resolution, 96, 96)
    layers = {m: (cube[m].values, list(cube[m][f"{m}_band"].values)) for m in cube.data_vars}
    # chunks as thick as the default windows' halo, so predict has nothing to rechunk
    cube = make_cube(layers, grid, chunks=48)
    moved = make_cube(layers, moved_grid, chunks=48)
    moved_obs = read_observations(
        pd.DataFrame(
            {"x": obs["x"] + shift, "y": obs["y"] + shift, "permafrost": obs["label"].cat.codes}
        ),
        crs=grid.crs,
    )

    def both(**kw):
        out = []
        for c, o in ((cube, obs), (moved, moved_obs)):
            rf = RandomForestBaseline(seed=3, **kw).fit(c, o)
            out.append(c.miso.predict(rf, device="cpu")["probability"].values)
        return out

    here, there = both()  # the defaults, all 253 trees
    assert np.isfinite(here[:, 4:, 4:]).all()  # (the cloudy corner is masked)
    np.testing.assert_array_equal(here, there)
    # the test can fail: with coordinates the forest splits on where the pixels are
    here, there = both(coordinates=True, n_estimators=20)
    assert np.nanmax(np.abs(here - there)) > 0.05
