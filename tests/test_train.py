"""Training MISO on sparse points: it learns, it is reproducible, it round-trips, it splits right."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from miso_xr.cube.grid import Grid, make_cube
from miso_xr.exceptions import InputError, MissingBandError, ObservationError
from miso_xr.loaders import load_checkpoint
from miso_xr.model.config import MisoConfig
from miso_xr.training.folds import spatial_folds
from miso_xr.training.loop import train, validation_split

# a very small MISO (two Swin stages, 16 px crops) so a training run takes a few seconds on CPU;
# it is the same code path as "tiny" and "base", only narrower and shallower
MICRO = MisoConfig(
    name="micro",
    embed_dim=8,
    depths=(1, 1),
    num_heads=(1, 1),
    window_size=4,
    patch_size=4,
    cpb_hidden=16,
    width=16,
    liif_hidden=16,
    fusion_hidden=16,
    drop_path=0.0,
    dropout=0.0,
    location_scales=4,
    location_min_wavelength=50.0,
    location_max_wavelength=5000.0,
    crop=16,
    batch_size=16,
    lr=3e-3,
    epochs=8,
    warmup_epochs=1,
)
RES = 10.0
SIZE = 64


def _scene(seed: int = 0, n: int = 160) -> tuple[object, pd.DataFrame]:
    """A cube whose first covariate band decides the label: learning is visible."""
    rng = np.random.default_rng(seed)
    g = Grid("EPSG:3338", 200_000.0, 1_500_000.0, RES, SIZE, SIZE)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    field = np.sin(xx / 6.0) + np.cos(yy / 8.0)
    noise = rng.normal(size=(SIZE, SIZE))
    cov = np.stack([field, noise]).astype("float32") * np.float32(50.0) + np.float32(300.0)
    opt = np.stack([0.1 * field + 0.02 * noise, 0.05 * noise]).astype("float32")
    cube = make_cube(
        {"optical": (opt, ["B04", "B08"]), "covariates": (cov, ["elevation", "slope"])},
        g,
        chunks=32,
    )
    # points in a few clumps (field sites), plus a scatter
    centres = rng.integers(8, SIZE - 8, size=(6, 2))
    pts = [c + rng.integers(-4, 5, size=(n // 8, 2)) for c in centres]
    pts.append(rng.integers(0, SIZE, size=(n - 6 * (n // 8), 2)))
    rc = np.clip(np.concatenate(pts), 0, SIZE - 1)
    codes = (field[rc[:, 0], rc[:, 1]] > 0).astype(int)
    obs = pd.DataFrame({"x": g.x[rc[:, 1]], "y": g.y[rc[:, 0]]})
    obs["label"] = pd.Categorical.from_codes(codes, categories=["absent", "present"])
    obs.attrs.update(task="permafrost", crs="EPSG:3338")
    return cube, obs


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def scene():
    return _scene()


@pytest.fixture(scope="module")
def trained(scene):
    cube, obs = scene
    model = train(cube, obs, config=MICRO, epochs=8, patience=None, progress=False, seed=1)
    return model


def test_training_learns_and_describes_itself(scene, trained):
    cube, obs = scene
    hist = trained.training["history"]
    assert len(hist) == 8
    # the classification loss falls, and the contrastive terms are there (optical + covariates)
    assert hist[-1]["supervised"] < 0.7 * hist[0]["supervised"]
    assert all(h["contrastive"] > 0 for h in hist)
    p = trained.predict_points(cube, obs)
    assert p.shape == (len(obs), 2) and np.allclose(p.sum(1), 1, atol=1e-5)
    acc = ((p[:, 1] > 0.5) == (obs["label"].cat.codes.to_numpy() == 1)).mean()
    majority = max(obs["label"].value_counts(normalize=True))
    assert acc > max(0.8, majority + 0.1)
    spec = trained.spec
    assert spec.kind == "miso" and spec.task == "permafrost"
    assert spec.classes == ("absent", "present")
    assert spec.modalities == (("optical", ("B04", "B08")), ("covariates", ("elevation", "slope")))
    assert (spec.window, spec.stride, spec.resolution, spec.crs) == (16, 10, RES, "EPSG:3338")
    # the paper: location regularises through the contrastive loss, never in the prediction
    assert spec.location is False and trained.training["location"] == "contrastive"
    # normalisation: nan-aware band statistics of the training crops (elevation ~ 300 +- 50)
    cov = spec.stats["covariates"]
    assert 250 < cov.mean[0] < 350 and 10 < cov.std[0] < 80
    tr = trained.training
    assert tr["n_points"] + tr["n_validation"] == len(obs)
    assert sum(tr["class_counts"].values()) == tr["n_points"]
    assert tr["n_unlabelled_tiles"] > 0 and tr["queries_per_crop"] == 51
    assert tr["validation"].startswith("spatial clusters") and tr["chosen_on"] == "val_loss"
    assert 1 <= tr["best_epoch"] <= 8 and tr["seed"] == 1 and tr["seconds"] > 0
    # clumped points: other observations inside a crop label some random queries
    assert hist[0]["labelled_queries_per_crop"] > 1.5


def test_same_seed_gives_bit_identical_weights_on_cpu(scene):
    cube, obs = scene
    kw = dict(config=MICRO, epochs=2, progress=False, device="cpu", val_fraction=0.2)
    a = train(cube, obs, seed=3, **kw).state_tensors()
    b = train(cube, obs, seed=3, **kw).state_tensors()
    c = train(cube, obs, seed=4, **kw).state_tensors()
    assert a.keys() == b.keys()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not all(np.array_equal(a[k], c[k]) for k in a)


def test_checkpoint_round_trip_gives_identical_outputs(scene, trained, tmp_path):
    cube, obs = scene
    path = tmp_path / "perm.safetensors"
    digest = trained.save(path)
    loaded = load_checkpoint(path)
    assert loaded.sha256 == digest and loaded.spec == trained.spec
    assert loaded.training["best_epoch"] == trained.training["best_epoch"]
    # the function form works on any loaded model, not only on those train() returned
    from miso_xr.training.loop import predict_points

    np.testing.assert_array_equal(
        predict_points(loaded, cube, obs), trained.predict_points(cube, obs)
    )
    x = 200_000.0 + RES * (np.arange(16) + 0.5)
    y = 1_500_000.0 - RES * (np.arange(16) + 0.5)
    inputs = {
        m: cube[m].values[None, :, :16, :16].astype("float32") for m, _ in trained.spec.modalities
    }
    np.testing.assert_array_equal(
        loaded.predict_windows(inputs, x[None], y[None]),
        trained.predict_windows(inputs, x[None], y[None]),
    )


def test_validation_split_is_spatial_and_disjoint_from_the_held_out_fold(scene):
    cube, obs = scene
    folds = spatial_folds(obs, distance=100.0, k=4, seed=0)
    test = obs[folds == 0]
    rest = obs[folds != 0]
    model = train(cube, rest, config=MICRO, epochs=1, progress=False, val_distance=100.0)
    val = set(model.training["validation_index"])
    assert val and model.training["n_validation"] == len(val)
    assert val <= set(map(str, rest.index))
    assert val.isdisjoint(map(str, test.index))
    # whole clusters: no validation point within the distance of a training point
    xy = rest[["x", "y"]].to_numpy()
    tr, va = validation_split(xy[:, 0], xy[:, 1], fraction=0.15, distance=100.0, seed=0)
    assert set(map(str, rest.index[va])) == val
    d = np.hypot(*(xy[va][:, None, :] - xy[tr][None, :, :]).transpose(2, 0, 1))
    assert d.min() > 100.0
    # one cluster only: no validation set rather than a leaky one
    tr1, va1 = validation_split(np.zeros(5), np.arange(5.0), fraction=0.3, distance=10.0)
    assert va1.size == 0 and tr1.size == 5


def train_stopped_early(cube, obs, *, progress: bool):
    """A micro MISO on the first 100 points, validated on the rest, that stops early."""
    return train(
        cube,
        obs.iloc[:100],
        val_obs=obs.iloc[100:],
        config=MICRO,
        epochs=30,
        lr=3e-2,  # too high on purpose: validation stops improving soon
        patience=2,
        progress=progress,
    )


def test_explicit_validation_obs_and_early_stopping(scene):
    cube, obs = scene
    model = train_stopped_early(cube, obs, progress=False)
    tr = model.training
    assert tr["validation"] == "val_obs" and tr["n_validation"] == len(obs) - 100
    assert tr["epochs"] < 30 and tr["epochs"] - tr["best_epoch"] == 2
    best = min(h["val_loss"] for h in tr["history"])
    assert tr["val_loss"] == best


def test_selection_on_validation_balanced_accuracy(scene, monkeypatch):
    import miso_xr.training.loop as loop

    cube, obs = scene
    # validation scores scripted per epoch (the real validation runs, its figures are replaced):
    # the loss is lowest at epoch 2, balanced accuracy highest at epochs 3 and 4, and the lower
    # loss of those two is epoch 4's
    script = [(0.60, 0.70), (0.40, 0.75), (0.50, 0.90), (0.45, 0.90), (0.70, 0.80)]
    real = loop._validate

    def scripted(*args, **kwargs):
        out = real(*args, **kwargs)
        loss, acc = script[calls.pop(0)]
        return {**out, "val_loss": loss, "val_balanced_accuracy": acc}

    kw = dict(val_obs=obs.iloc[100:], config=MICRO, epochs=5, progress=False)
    monkeypatch.setattr(loop, "_validate", scripted)
    calls = list(range(5))
    by_loss = train(cube, obs.iloc[:100], patience=None, **kw).training
    calls = list(range(5))
    by_acc = train(
        cube, obs.iloc[:100], patience=None, select_on="val_balanced_accuracy", **kw
    ).training
    assert by_loss["chosen_on"] == "val_loss" and by_loss["best_epoch"] == 2
    assert by_acc["chosen_on"] == "val_balanced_accuracy" and by_acc["best_epoch"] == 4
    assert (by_acc["val_loss"], by_acc["val_balanced_accuracy"]) == (0.45, 0.90)
    assert by_acc["best_loss"] == 0.45 and len(by_acc["history"]) == 5
    # patience watches the chosen score: one epoch without a better one stops each run
    calls = list(range(5))
    assert train(cube, obs.iloc[:100], patience=1, **kw).training["epochs"] == 3
    calls = list(range(5))
    stopped = train(cube, obs.iloc[:100], patience=1, select_on="val_balanced_accuracy", **kw)
    assert stopped.training["epochs"] == 5 and stopped.training["best_epoch"] == 4
    with pytest.raises(InputError, match="select_on='auc'"):
        train(cube, obs, config=MICRO, epochs=1, progress=False, select_on="auc")


def test_bad_inputs_are_named_and_leave_nothing(scene, tmp_path, monkeypatch):
    cube, obs = scene
    monkeypatch.chdir(tmp_path)
    kw = dict(config=MICRO, epochs=1, progress=False)
    unlabelled = obs.assign(
        label=pd.Categorical([None] * len(obs), categories=["absent", "present"])
    )
    with pytest.raises(ObservationError, match="no labelled observation"):
        train(cube, unlabelled, **kw)
    with pytest.raises(ObservationError, match="no column 'label'"):
        train(cube, obs.drop(columns="label"), **kw)
    with pytest.raises(ObservationError, match="Categorical"):
        train(cube, obs.assign(label=obs["label"].astype(str)), **kw)
    with pytest.raises(ObservationError, match="task='soil_order'"):
        train(cube, obs, task="soil_order", **kw)
    custom = obs.copy()
    custom.attrs = {"crs": "EPSG:3338"}
    with pytest.raises(ObservationError, match="classes.*Andisols"):
        train(cube, custom, task="soil_order", **kw)
    with pytest.raises(MissingBandError, match="no modality 'sar'"):
        train(cube, obs, modalities=["sar"], **kw)
    with pytest.raises(InputError, match="larger than the cube"):
        train(cube, obs, window=128, **kw)
    with pytest.raises(InputError, match="multiple of 8"):
        train(cube, obs, window=12, **kw)
    with pytest.raises(InputError, match="CRS 'EPSG:99999'"):  # a CRS pyproj does not know
        wrong = obs.copy()
        wrong.attrs["crs"] = "EPSG:99999"
        train(cube, wrong, **kw)
    far = obs.assign(x=obs["x"] + 1e6)
    with pytest.raises(ObservationError, match="falls inside the cube"):
        train(cube, far, **kw)
    with pytest.raises(InputError, match="config"):
        train(cube, obs, config=3, epochs=1, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_public_name_and_lazy_train_package(scene):
    import subprocess
    import sys

    import miso_xr.training.folds  # noqa: F401 - importing the room must not shadow the function

    cube, obs = scene
    model = miso_xr.train(cube, obs, config=MICRO, epochs=1, progress=False, val_fraction=0)
    assert model.training["n_validation"] == 0 and model.training["epochs"] == 1
    assert callable(miso_xr.train) and miso_xr.train.__module__ == "miso_xr.training.loop"
    code = "import sys, miso_xr.training; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.gpu
def test_cuda_training_with_mixed_precision_gives_a_cpu_model(scene):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    cube, obs = scene
    model = train(cube, obs, config=MICRO, epochs=2, progress=False, device="cuda")
    assert model.training["device"].startswith("cuda")
    assert next(model.net.parameters()).device.type == "cpu"
    p = model.predict_points(cube, obs, device="cuda")
    assert p.shape == (len(obs), 2) and np.isfinite(p).all()
