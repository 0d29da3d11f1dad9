"""Observations in another CRS (obs.attrs["crs"]) are projected onto the cube by train, the
Random Forest and evaluate, with the same results as observations read in the cube's CRS."""

from __future__ import annotations

import numpy as np
import pytest
from pyproj import Transformer
from test_train import MICRO, _scene

from miso_xr.training.baseline import RandomForestBaseline
from miso_xr.training.evaluate import evaluate
from miso_xr.training.features import on_crs
from miso_xr.training.folds import spatial_folds
from miso_xr.training.loop import train

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _in_utm(obs):
    to_utm = Transformer.from_crs("EPSG:3338", "EPSG:32606", always_xy=True)
    utm = obs.copy()
    utm["x"], utm["y"] = to_utm.transform(obs["x"].to_numpy(), obs["y"].to_numpy())
    utm.attrs = {**obs.attrs, "crs": "EPSG:32606"}
    return utm


def test_on_crs_projects_a_copy_and_keeps_a_same_crs_table():
    _, obs = _scene()
    utm = _in_utm(obs)
    assert np.abs(utm["x"].to_numpy() - obs["x"].to_numpy()).min() > 1000  # really elsewhere
    back = on_crs(utm, "EPSG:3338")
    np.testing.assert_allclose(back[["x", "y"]].to_numpy(), obs[["x", "y"]].to_numpy(), atol=1e-6)
    assert back.attrs["crs"] == "EPSG:3338" and back.attrs["projected_from"] == "EPSG:32606"
    assert utm.attrs["crs"] == "EPSG:32606"  # the caller's table is untouched
    assert on_crs(obs, "EPSG:3338") is obs


def test_train_rf_and_evaluate_take_observations_in_another_crs():
    cube, obs = _scene()
    utm = _in_utm(obs)
    held = spatial_folds(obs, distance=50, k=4, method="block").to_numpy() == 0
    obs, test_obs, utm, test_utm = obs[~held], obs[held], utm[~held], utm[held]
    kw = dict(config=MICRO, epochs=1, progress=False, device="cpu", seed=2, val_fraction=0)
    a, b = train(cube, obs, **kw), train(cube, utm, **kw)
    sa, sb = a.state_tensors(), b.state_tensors()
    assert all(np.allclose(sa[k], sb[k], atol=1e-5) for k in sa)
    rf_a = RandomForestBaseline(n_estimators=20, seed=0).fit(cube, obs)
    rf_b = RandomForestBaseline(n_estimators=20, seed=0).fit(cube, utm)
    np.testing.assert_array_equal(rf_a.predict_points(cube, obs), rf_b.predict_points(cube, utm))
    # scored on held-out points (evaluate refuses a model's own training points)
    ra = evaluate([a, rf_a], cube, test_obs, names=["MISO", "RF"]).table
    rb = evaluate([a, rf_a], cube, test_utm, names=["MISO", "RF"]).table
    np.testing.assert_allclose(ra["value"].to_numpy(float), rb["value"].to_numpy(float), atol=1e-6)
