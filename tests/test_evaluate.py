"""evaluate: metrics against sklearn, honest per-fold refits, regions, summary, plot, errors."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    f1_score,
    roc_auc_score,
)

from miso_xr.cube.grid import Grid, make_cube
from miso_xr.exceptions import InputError, ObservationError
from miso_xr.observations import read_observations
from miso_xr.training.baseline import RandomForestBaseline
from miso_xr.training.evaluate import MAIN_METRICS, Report, evaluate, score
from miso_xr.training.folds import spatial_folds

TERRAIN = ["elevation", "slope", "aspect"]


def _scene(left: float = 250_000.0, top: float = 1_650_000.0, size: int = 60, res: float = 50.0):
    rng = np.random.default_rng(0)
    grid = Grid("EPSG:3338", left, top, res, size, size)
    yy, xx = np.mgrid[0:size, 0:size] / size
    elevation = 300 + 400 * xx + 40 * rng.standard_normal((size, size))
    cov = np.stack([elevation, 30 * yy, 360 * rng.random((size, size))]).astype("float32")
    cube = make_cube({"covariates": (cov, TERRAIN)}, grid, chunks=20)
    return cube, grid, elevation > 500


def _obs(grid: Grid, frozen: np.ndarray, n: int = 120, seed: int = 2) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    # a few field campaigns: clusters of points, as in real surveys
    centres = rng.integers(5, grid.height - 5, (8, 2))
    pick = rng.integers(0, 8, n)
    r = np.clip(centres[pick, 0] + rng.integers(-3, 4, n), 0, grid.height - 1)
    c = np.clip(centres[pick, 1] + rng.integers(-3, 4, n), 0, grid.width - 1)
    label = frozen[r, c].astype(int)
    flip = rng.random(n) < 0.1  # field labels are noisy
    label[flip] = 1 - label[flip]
    df = pd.DataFrame({"x": grid.x[c], "y": grid.y[r], "permafrost": label})
    return read_observations(df, crs=grid.crs)


def rf_factory(cube, train):
    rf_factory.calls.append(train.index.copy())
    return RandomForestBaseline(n_estimators=8, features=["covariates"]).fit(cube, train)


@pytest.fixture(scope="module")
def setting():
    cube, grid, frozen = _scene()
    obs = _obs(grid, frozen)
    folds = spatial_folds(obs, distance=200, k=3)
    return cube, grid, frozen, obs, folds


def test_score_matches_sklearn():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 200)
    p1 = np.clip(y * 0.6 + rng.random(200) * 0.5, 0, 1)
    proba = np.column_stack([1 - p1, p1])
    s = score(y, proba, ["absent", "present"])
    pred = proba.argmax(axis=1)
    assert s["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert s["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
    assert s["f1_macro"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert s["f1_weighted"] == pytest.approx(f1_score(y, pred, average="weighted"))
    assert s["f1_present"] == pytest.approx(f1_score(y, pred))
    assert s["roc_auc"] == pytest.approx(roc_auc_score(y, p1))
    assert s["pr_auc"] == pytest.approx(average_precision_score(y, p1))
    # 7 classes, some never seen: defined where sklearn is, NaN where undefined, no warnings
    y7 = rng.integers(0, 3, 50)
    p7 = rng.dirichlet(np.ones(7), 50)
    s7 = score(y7, p7, [f"c{i}" for i in range(7)])
    pred7 = p7.argmax(axis=1)
    assert s7["f1_macro"] == pytest.approx(f1_score(y7, pred7, average="macro"))
    with warnings.catch_warnings():
        # sklearn warns that predictions hold classes absent from the truth: the case tested here
        warnings.filterwarnings("ignore", "y_pred contains classes not in y_true", UserWarning)
        ref = balanced_accuracy_score(y7, pred7)
    assert s7["balanced_accuracy"] == pytest.approx(ref)
    assert "roc_auc" not in s7
    assert np.isnan(s7["recall_c6"])
    one_class = score(np.zeros(5, int), np.tile([0.7, 0.3], (5, 1)), ["a", "b"])
    assert np.isnan(one_class["roc_auc"]) and one_class["accuracy"] == 1.0


def test_factories_refit_per_fold_and_fitted_models(setting, tmp_path):
    cube, grid, frozen, obs, folds = setting
    rf_factory.calls = []
    fitted = RandomForestBaseline(n_estimators=8, features=["covariates"]).fit(
        cube, obs[folds != 0]
    )
    report = evaluate([rf_factory, fitted], cube, obs, folds=folds, names=["rf_cv", "rf_fixed"])
    assert isinstance(report, Report)
    # honest CV: one fit per fold, never seeing the held-out fold
    assert len(rf_factory.calls) == 3
    for f, train_index in zip(sorted(set(folds)), rf_factory.calls):
        assert set(train_index) == set(obs.index[folds != f])
    t = report.table
    assert list(t.columns) == ["model", "fold", "region", "metric", "value"]
    assert set(t["model"]) == {"rf_cv", "rf_fixed"}
    assert set(t[t.model == "rf_cv"]["fold"]) == {0, 1, 2, "all"}
    # the fixed model is not cross-validated: one score, on the points it never saw
    assert set(t[t.model == "rf_fixed"]["fold"]) == {"all"}
    fixed = report.predictions[report.predictions["model"] == "rf_fixed"]
    train_xy = set(zip(obs["x"][folds != 0], obs["y"][folds != 0]))
    assert len(fixed) and not set(zip(obs.loc[fixed.index, "x"], obs.loc[fixed.index, "y"])) & (
        train_xy
    )
    assert set(fixed.index) == {
        i for i in obs.index[folds == 0] if (obs.at[i, "x"], obs.at[i, "y"]) not in train_xy
    }
    # pooled metrics equal sklearn's on the out-of-fold predictions
    p = report.predictions[report.predictions["model"] == "rf_cv"]
    assert p.index.equals(obs.index)
    y = obs["label"].cat.codes.to_numpy()
    pooled = t[(t.model == "rf_cv") & (t.fold == "all")].set_index("metric")["value"]
    assert pooled["accuracy"] == pytest.approx(accuracy_score(y, p["predicted"].cat.codes))
    assert pooled["roc_auc"] == pytest.approx(roc_auc_score(y, p["p_present"]))
    assert pooled["n"] == len(obs)
    # summary: mean and std over folds of the per-fold rows
    s = report.summary()
    per_fold = t[(t.model == "rf_cv") & (t.fold != "all") & (t.metric == "f1_macro")]["value"]
    assert s.loc[("rf_cv", "f1_macro"), "mean"] == pytest.approx(per_fold.mean())
    assert s.loc[("rf_cv", "f1_macro"), "std"] == pytest.approx(per_fold.std(ddof=0))
    assert s.loc[("rf_cv", "f1_macro"), "folds"] == 3
    assert " ± " in s.loc[("rf_cv", "f1_macro"), "text"]
    assert "spatial CV: 3 folds" in s.loc[("rf_cv", "f1_macro"), "protocol"]
    # no cross-validation wording for the fixed model: no ±, no folds
    assert " ± " not in s.loc[("rf_fixed", "f1_macro"), "text"]
    assert s.loc[("rf_fixed", "f1_macro"), "folds"] == 0
    assert s.loc[("rf_fixed", "n"), "pooled"] == len(fixed)
    assert "held-out points" in s.loc[("rf_fixed", "f1_macro"), "protocol"]
    text = repr(report)
    assert "rf_cv" in text and "balanced_accuracy" in text and "fixed model" in text
    png = report.plot(tmp_path / "report.png")
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_fixed_model_on_its_own_training_points_is_refused(setting, tmp_path):
    """The flattering case of issue 11: a saved model scored on the points it learnt from."""
    from miso_xr.loaders import load_checkpoint
    from miso_xr.training.evaluate import refit_factory

    cube, grid, frozen, obs, folds = setting
    fitted = RandomForestBaseline(n_estimators=8, features=["covariates"]).fit(cube, obs)
    fitted.save(tmp_path / "rf.safetensors")
    loaded = load_checkpoint(tmp_path / "rf.safetensors")  # the record survives the file
    for model in (fitted, loaded):
        with pytest.raises(InputError, match=r"every one of the 101 labelled.*refit_factory"):
            evaluate([model], cube, obs, folds=folds)
    # the honest figure: refit per fold with the checkpoint's own settings
    rf_factory.calls = []
    honest = evaluate([refit_factory(loaded)], cube, obs, folds=folds, names=["rf"])
    again = evaluate([rf_factory], cube, obs, folds=folds, names=["rf"])
    pd.testing.assert_frame_equal(honest.table, again.table)
    # a wider distance sets aside the neighbours of training points too
    part = RandomForestBaseline(n_estimators=8, features=["covariates"]).fit(cube, obs[folds != 0])
    from scipy.spatial import cKDTree

    near = evaluate([part], cube, obs, folds=folds).predictions
    gaps, _ = cKDTree(obs[folds != 0][["x", "y"]]).query(obs.loc[near.index, ["x", "y"]])
    cut = float(np.median(gaps))
    far = evaluate([part], cube, obs, folds=folds, distance=cut).predictions
    assert set(far.index) == set(near.index[gaps > cut]) and 0 < len(far) < len(near)


def test_fixed_model_without_record_needs_independent(setting):
    cube, grid, frozen, obs, folds = setting
    rf = RandomForestBaseline(n_estimators=8, features=["covariates"]).fit(cube, obs)
    rf.training.pop("points")  # as an old checkpoint, or a model from elsewhere
    with pytest.raises(InputError, match=r"'RandomForestBaseline' is already fitted.*independent"):
        evaluate([rf], cube, obs)
    report = evaluate([rf], cube, obs, independent=True)
    assert "declared independent" in report.protocols["RandomForestBaseline"]


def test_plot_labels_and_error_bars(setting, tmp_path, monkeypatch):
    """The figure says what was computed and draws every error bar whole."""
    cube, grid, frozen, obs, folds = setting
    part = RandomForestBaseline(n_estimators=8, features=["covariates"]).fit(cube, obs[folds != 0])
    rf_factory.calls = []
    report = evaluate([rf_factory, part], cube, obs, folds=folds, names=["cv", "fixed"])
    from matplotlib.figure import Figure

    captured = {}
    orig = Figure.savefig

    def spy(self, *a, **k):
        captured["fig"] = self
        return orig(self, *a, **k)

    monkeypatch.setattr(Figure, "savefig", spy)
    report.plot(tmp_path / "r.png")
    ax = captured["fig"].axes[0]
    labels = ax.get_legend().get_texts()
    assert any("mean ± std over 3 folds" in t.get_text() for t in labels)
    n_fixed = int((report.predictions["model"] == "fixed").sum())
    assert any(t.get_text() == f"fixed: fixed model, {n_fixed} held-out points" for t in labels)
    assert ax.get_ylabel() == "score"
    s = report.summary()
    main = s[s.index.get_level_values(1).isin(MAIN_METRICS)]
    assert ax.get_ylim()[1] >= (main["mean"] + main["std"].fillna(0)).max()
    # the legend sits above the axes, not over the bars
    fig = captured["fig"]
    r = fig.canvas.get_renderer()
    assert ax.get_legend().get_window_extent(r).y0 >= ax.get_window_extent(r).y1 - 1


def test_error_bars_past_one_are_drawn_whole(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    # accuracy 1.0, 1.0, 0.4 over three folds: mean 0.8, std 0.28, the bar's top at 1.08
    table = pd.DataFrame(
        [("m", f, "all", "accuracy", v) for f, v in ((0, 1.0), (1, 1.0), (2, 0.4))]
        + [("m", "all", "all", "accuracy", 0.8)],
        columns=["model", "fold", "region", "metric", "value"],
    )
    report = Report(table, pd.DataFrame({"model": ["m"] * 3}), ("a", "b"), "t", ("m",))
    seen = {}
    orig = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda f, *a, **k: (seen.update(f=f), orig(f, *a, **k)))
    report.plot(tmp_path / "r.png")
    ax = seen["f"].axes[0]
    assert ax.get_ylim()[1] >= 0.8 + np.std([1.0, 1.0, 0.4]) > 1.05
    assert ax.get_ylabel() == "score (mean over folds ± std)"


def test_protocol_only_model_uses_centre_of_windows(setting):
    """A model with only spec + predict_windows is scored through windows centred on points."""
    cube, grid, frozen, obs, folds = setting
    rf = RandomForestBaseline(n_estimators=8, features=["covariates", "lonlat"], window=5)
    rf.fit(cube, obs)

    class WindowsOnly:  # the predictor protocol without predict_points
        def __init__(self, model):
            self.spec = model.spec
            self._model = model

        def predict_windows(self, inputs, x, y, *, device="cpu"):
            return self._model.predict_windows(inputs, x, y, device=device)

    # only the two ways of predicting are compared here, not the model's skill
    rf.training.pop("points")
    report = evaluate(
        [rf, WindowsOnly(rf)], cube, obs, names=["points", "windows"], independent=True
    )
    p = report.predictions
    np.testing.assert_allclose(
        p[p.model == "windows"]["p_present"], p[p.model == "points"]["p_present"], atol=1e-6
    )
    assert set(report.table["fold"]) == {"all"}  # no folds: one pooled evaluation
    assert report.summary()["folds"].eq(0).all()


def test_default_folds_for_factories(setting):
    cube, grid, frozen, obs, _ = setting
    # 3 km of points are one cluster at the default 1 km: the error says what to pass
    with pytest.raises(ObservationError, match="Pass folds=spatial_folds"):
        evaluate(rf_factory, cube, obs)
    cube, grid, frozen = _scene(res=1000.0)  # 60 km: the default folds fit
    obs = _obs(grid, frozen, seed=5)
    rf_factory.calls = []
    report = evaluate(rf_factory, cube, obs)  # one model alone, folds from spatial_folds(obs)
    assert len(rf_factory.calls) == len(set(report.table["fold"]) - {"all"}) == 5


def test_regions_from_the_real_ecoregions(shared_data, tmp_path):
    import geopandas as gpd
    import shapely

    path = shared_data / "alaska_ecoregions_snap" / "ecoregions.shp"
    eco = gpd.read_file(path)
    # a cube straddling the border between two ecoregions near Fairbanks
    probe = gpd.GeoSeries.from_xy([297_000.0], [1_666_000.0], crs="EPSG:3338")
    home = eco[eco.contains(probe.iloc[0])]
    assert len(home) == 1
    border = home.geometry.iloc[0].boundary
    anchor = shapely.ops.nearest_points(border, probe.iloc[0])[0]
    size, res = 60, 1000.0
    cube, grid, frozen = _scene(anchor.x - size * res / 2, anchor.y + size * res / 2, size, res)
    obs = _obs(grid, frozen, n=150)
    folds = spatial_folds(obs, distance=3000, k=3)
    report = evaluate([rf_factory], cube, obs, folds=folds, regions=path)
    # each point's region, found independently with shapely
    pts = shapely.points(obs["x"].to_numpy(), obs["y"].to_numpy())
    expected = np.full(len(obs), "", dtype=object)
    for name, geom in zip(eco["name"], eco.geometry):
        expected[shapely.contains(geom, pts) & (expected == "")] = name
    regions = report.table[report.table.region != "all"]
    names = sorted(set(expected) - {""})
    assert len(names) >= 2 and sorted(set(regions["region"])) == names
    for name in names:
        n = regions[(regions.region == name) & (regions.metric == "n")]["value"].item()
        assert n == (expected == name).sum()
    assert report.plot(tmp_path / "regions.png").endswith("regions.png")
    with pytest.raises(InputError, match=r"no field 'NAME'.*\['name', 'id'\]"):
        evaluate([rf_factory], cube, obs, folds=folds, regions=eco, region_field="NAME")


def test_errors(setting):
    cube, grid, frozen, obs, folds = setting
    fitted = RandomForestBaseline(n_estimators=3, features=["covariates"]).fit(
        cube, obs[folds != 0]
    )
    with pytest.raises(InputError, match="models=\\[\\] is empty"):
        evaluate([], cube, obs)
    with pytest.raises(InputError, match="models\\[0\\] is a int"):
        evaluate([3], cube, obs)
    with pytest.raises(InputError, match="need 1 distinct names"):
        evaluate([fitted], cube, obs, names=["a", "b"])
    with pytest.raises(InputError, match="folds has no fold for 1 observation"):
        evaluate([fitted], cube, obs, folds=folds.iloc[1:])
    with pytest.raises(InputError, match="folds has 2 values"):
        evaluate([fitted], cube, obs, folds=[0, 1])
    with pytest.raises(ObservationError, match="Categorical"):
        evaluate([fitted], cube, obs.assign(label=obs["label"].astype(str)))
    other = obs.copy()
    other["label"] = other["label"].cat.rename_categories(["no", "yes"])
    with pytest.raises(InputError, match=r"predicts classes \['absent', 'present'\]"):
        evaluate([fitted], cube, other)
    with pytest.raises(InputError, match="regions is a list"):
        evaluate([fitted], cube, obs, regions=[1, 2])


@pytest.mark.slow
def test_miso_trained_and_loaded_score_alike(setting, tmp_path):
    """MISO through evaluate: the trained model's predict_points and a loaded checkpoint (no
    predict_points: crops around the points) give the same scores."""
    import miso_xr
    from miso_xr.loaders import load_checkpoint

    cube, grid, frozen, obs, folds = setting
    small = obs.iloc[:40]
    model = miso_xr.train(
        cube, small, config="tiny", epochs=1, window=32, device="cpu", progress=False
    )
    model.save(tmp_path / "miso.safetensors")
    loaded = load_checkpoint(tmp_path / "miso.safetensors")
    with pytest.raises(InputError, match="every one of the 40 labelled"):
        evaluate([loaded], cube, small)
    report = evaluate([model, loaded], cube, obs, names=["trained", "loaded"])
    seen = set(zip(small["x"], small["y"]))
    unseen = [i for i in obs.index if (obs.at[i, "x"], obs.at[i, "y"]) not in seen]
    assert sorted(report.predictions.index) == sorted(unseen * 2)
    p = report.predictions
    np.testing.assert_allclose(
        p[p.model == "trained"]["p_present"], p[p.model == "loaded"]["p_present"], atol=1e-5
    )
    s = report.summary()
    assert s.loc[("trained", "accuracy"), "pooled"] == s.loc[("loaded", "accuracy"), "pooled"]


def test_both_model_kinds_predict_points_after_loading(setting, tmp_path, one_torch_thread):
    """model.predict_points(cube, obs) on a loaded MISO checkpoint as on a Random Forest."""
    pytest.importorskip("torch")
    import miso_xr
    from miso_xr.model.config import MisoConfig
    from miso_xr.model.miso import MisoModel
    from miso_xr.spec import ModelSpec, Normalisation
    from miso_xr.training.loop import predict_points

    cube, grid, frozen, obs, folds = setting
    spec = ModelSpec(
        kind="miso", task="permafrost", classes=("absent", "present"),
        modalities=(("covariates", tuple(TERRAIN)),), window=32, stride=16,
        resolution=grid.resolution, crs=grid.crs, location=False,
        normalisation=(("covariates", Normalisation((500.0, 15.0, 180.0), (100.0, 9.0, 100.0))),),
    )  # fmt: skip
    MisoModel.create(spec, MisoConfig.named("micro"), seed=0).save(tmp_path / "m.safetensors")
    rf = RandomForestBaseline(n_estimators=4, features=["covariates"]).fit(cube, obs)
    rf.save(tmp_path / "rf.safetensors")
    some = obs.iloc[:7]
    for path in ("m.safetensors", "rf.safetensors"):
        model = miso_xr.load(tmp_path / path)
        p = model.predict_points(cube, some)
        assert p.shape == (7, 2) and np.allclose(p.sum(axis=1), 1), path
    miso = miso_xr.load(tmp_path / "m.safetensors")
    np.testing.assert_allclose(
        miso.predict_points(cube, some), predict_points(miso, cube, some), atol=1e-6
    )
