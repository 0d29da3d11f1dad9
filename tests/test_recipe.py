"""MISO as the paper builds it: inputs, location, validation, held-out skill, pretrained encoders."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from miso_xr.cube.grid import OPTICAL_BANDS, Grid, make_cube
from miso_xr.exceptions import InputError
from miso_xr.model.miso import MisoModel
from miso_xr.spec import ModelSpec, Normalisation
from miso_xr.training.loop import train

pytestmark = pytest.mark.usefixtures("one_torch_thread")

MICRO = dict(config="micro", epochs=2, progress=False, patience=None, window=32, batch_size=16)


def _cube(left: float = 300_000.0, top: float = 1_700_000.0, size: int = 64, seed: int = 0):
    """Covariates with a land-cover code layer and aspect; the label follows land cover."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    landcover = np.where(np.sin(xx / 7.0) + np.cos(yy / 9.0) > 0, 41.0, 90.0)
    landcover[:4, :4] = 11.0
    aspect = (np.degrees(np.arctan2(yy - size / 2, xx - size / 2)) % 360).astype("float32")
    elev = 300 + 20 * rng.normal(size=(size, size))
    cov = np.stack([elev, aspect, landcover]).astype("float32")
    g = Grid("EPSG:3338", left, top, 10.0, size, size)
    cube = make_cube({"covariates": (cov, ["elevation", "aspect", "landcover"])}, g, chunks=32)
    cube["covariates"].attrs["categorical"] = ["landcover"]
    rc = rng.integers(0, size, size=(120, 2))
    obs = pd.DataFrame({"x": g.x[rc[:, 1]], "y": g.y[rc[:, 0]]})
    codes = (landcover[rc[:, 0], rc[:, 1]] == 90.0).astype(int)
    obs["label"] = pd.Categorical.from_codes(codes, categories=["absent", "present"])
    obs.attrs.update(task="permafrost", crs="EPSG:3338")
    return cube, obs, g


def test_categorical_bands_are_one_hot_and_aspect_is_northness_eastness():
    cube, obs, _ = _cube()
    model = train(cube, obs, seed=0, **MICRO)
    enc = model.encoding
    feats = enc.features("covariates", ("elevation", "aspect", "landcover"))
    assert feats == (
        "elevation",
        "aspect_northness",
        "aspect_eastness",
        "landcover_11",
        "landcover_41",
        "landcover_90",
    )
    # one statistic per feature, and the network reads 6 channels, not 3 codes
    assert len(model.spec.stats["covariates"].mean) == 6
    assert model.net.bands == {"covariates": 6}
    x = model.prepare("covariates", np.array([[[[300.0]], [[90.0]], [[41.0]]]], "float32"))
    st = model.spec.stats["covariates"]
    want = (np.array([300.0, 0.0, 1.0, 0.0, 1.0, 0.0]) - st.mean) / st.std
    np.testing.assert_allclose(x[0, :, 0, 0], want, atol=1e-5)
    assert model.training["inputs"]["covariates"][1] == ["landcover", "categorical", [11, 41, 90]]


def test_a_spec_without_normalisation_is_an_error_not_identity():
    spec = ModelSpec(
        kind="miso",
        task="permafrost",
        classes=("absent", "present"),
        modalities=(("covariates", ("elevation", "slope")),),
        window=32,
        stride=16,
        resolution=10.0,
        crs="EPSG:3338",
    )
    with pytest.raises(InputError, match="no normalisation statistics for 'covariates'"):
        MisoModel.create(spec, "micro", seed=0)
    short = ModelSpec(
        **{**spec.__dict__, "normalisation": (("covariates", Normalisation((0.0,), (1.0,))),)}
    )
    with pytest.raises(InputError, match="one per input feature"):
        MisoModel.create(short, "micro", seed=0)


@pytest.mark.parametrize("location", ["contrastive", "off"])
def test_the_same_pixels_moved_100_km_give_the_same_map(location):
    cube, obs, g = _cube()
    moved, _, g2 = _cube(left=g.left + 100_000.0, top=g.top - 100_000.0)
    obs2 = obs.assign(x=obs["x"] + 100_000.0, y=obs["y"] - 100_000.0)
    a = train(cube, obs, seed=3, location=location, **MICRO)
    b = train(moved, obs2, seed=3, location=location, **MICRO)
    ta, tb = a.state_tensors(), b.state_tensors()
    assert all(np.array_equal(ta[k], tb[k]) for k in ta)
    pa = a.predict_points(cube, obs)
    pb = b.predict_points(moved, obs2)
    np.testing.assert_array_equal(pa, pb)
    # and a model applied to the moved pixels maps them as it maps the originals
    np.testing.assert_array_equal(a.predict_points(moved, obs2), pa)


def test_the_location_prior_is_an_explicit_departure():
    cube, obs, _ = _cube()
    model = train(cube, obs, seed=0, location="prior", **MICRO)
    assert model.spec.location is True and model.training["location"] == "prior"
    assert model.net.location_prior
    with pytest.raises(InputError, match="location="):
        train(cube, obs, seed=0, location="sometimes", **MICRO)


def test_validation_that_cannot_be_made_is_reported_not_silent():
    cube, obs, g = _cube()
    # every point within 20 m of the next: one chain at any grouping >= 20 m
    one_site = obs.iloc[:12].assign(x=g.x[10] + 15.0 * np.arange(12), y=g.y[10])
    model = train(cube, one_site, seed=0, **MICRO)
    tr = model.training
    assert tr["n_validation"] == 0 and tr["chosen_on"] == "training loss"
    assert tr["validation"].startswith("off:") and "training loss" in tr["validation"]


def test_unlabelled_crops_are_half_of_each_batch_and_fresh_every_epoch():
    cube, obs, _ = _cube()
    # covariates only: the location pair makes the contrastive term, so unlabelled crops are used
    model = train(cube, obs, seed=0, **{**MICRO, "epochs": 3})
    hist = model.training["history"]
    assert model.training["unlabelled_share"] == 0.5
    assert all(h["unlabelled_crops"] > 0 and h["contrastive"] > 0 for h in hist)
    off = train(cube, obs, seed=0, location="off", **MICRO)
    assert off.training["n_unlabelled_tiles"] == 0  # nothing to contrast: no unlabelled crops


def test_a_satlas_layout_backbone_loads_into_the_optical_encoder(tmp_path):
    """A generated SatlasPretrain-layout state dict (prefix, FPN keys, RGB first conv) trains."""
    import torch
    from safetensors.torch import save_file

    from miso_xr.model.config import MisoConfig
    from miso_xr.model.swin import SwinV2Encoder

    cfg = MisoConfig.named("micro")
    torch.manual_seed(0)
    rgb = SwinV2Encoder(
        3,
        embed_dim=cfg.embed_dim,
        depths=cfg.depths,
        num_heads=cfg.num_heads,
        window_size=cfg.window_size,
        patch_size=cfg.patch_size,
        cpb_hidden=cfg.cpb_hidden,
    )
    state = {f"backbone.backbone.{k}": v for k, v in rgb.state_dict().items()}
    state["intermediates.0.weight"] = torch.zeros(4, 4)  # Satlas' FPN, outside the backbone
    path = tmp_path / "satlas_micro.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))

    rng = np.random.default_rng(0)
    size = 64
    g = Grid("EPSG:3338", 300_000.0, 1_700_000.0, 10.0, size, size)
    opt = rng.uniform(0.01, 0.4, size=(9, size, size)).astype("float32")
    cube = make_cube({"optical": (opt, list(OPTICAL_BANDS))}, g, chunks=32)
    rc = rng.integers(0, size, size=(60, 2))
    obs = pd.DataFrame({"x": g.x[rc[:, 1]], "y": g.y[rc[:, 0]]})
    codes = (opt[6, rc[:, 0], rc[:, 1]] > 0.2).astype(int)
    obs["label"] = pd.Categorical.from_codes(codes, categories=["absent", "present"])
    obs.attrs.update(task="permafrost", crs="EPSG:3338")

    model = train(cube, obs, seed=0, backbone=path, freeze_epochs=1, **MICRO)
    tr = model.training
    assert tr["backbone"]["layout"] == "satlas" and tr["backbone"]["sha256"]
    assert tr["backbone_load"]["reinitialised"] == ["backbone.backbone.features.0.0.weight"]
    # Satlas scaling, not z-scores: reflectance / 0.3 for RGB, / 0.816 for the rest
    st = model.spec.stats["optical"]
    assert st.mean == (0.0,) * 9 and st.std[:3] == (0.3, 0.3, 0.3) and st.std[3] == 0.816
    # the encoder's deeper weights are the backbone's (frozen for the first epoch only, then
    # trained: they moved, but the first stage's norm started from the loaded values)
    with pytest.raises(InputError, match="no 'optical' modality"):
        cov_cube, cov_obs, _ = _cube()
        train(cov_cube, cov_obs, seed=0, backbone=path, **MICRO)
    with pytest.raises(InputError, match="needs backbone="):
        train(cube, obs, seed=0, freeze_epochs=2, **MICRO)


def test_from_scratch_is_said_plainly():
    cube, obs, _ = _cube()
    model = train(cube, obs, seed=0, **{**MICRO, "epochs": 1})
    assert model.training["backbone"] is None


def test_miso_trained_on_one_side_scores_above_chance_on_the_far_side():
    """Held out by distance: train west of a gap, score every labelled point east of it.

    The label follows the local terrain (a smooth elevation field), the same relation on both
    sides; a model that memorised where its training points lie would not carry it east.
    """
    from miso_xr.training.evaluate import score

    size = 128
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:size, 0:size]
    field = np.sin(xx / 6.0) + np.cos(yy / 8.0)
    elev = 300 + 50 * field + 5 * rng.normal(size=(size, size))
    slope = 10 + 2 * rng.normal(size=(size, size))
    g = Grid("EPSG:3338", 300_000.0, 1_700_000.0, 10.0, size, size)
    cube = make_cube(
        {"covariates": (np.stack([elev, slope]).astype("float32"), ["elevation", "slope"])},
        g,
        chunks=64,
    )
    rc = rng.integers(0, size, size=(500, 2))
    obs = pd.DataFrame({"x": g.x[rc[:, 1]], "y": g.y[rc[:, 0]]})
    codes = (field[rc[:, 0], rc[:, 1]] > 0).astype(int)
    obs["label"] = pd.Categorical.from_codes(codes, categories=["absent", "present"])
    obs.attrs.update(task="permafrost", crs="EPSG:3338")
    west = obs[rc[:, 1] < 0.4 * size]
    east = obs[rc[:, 1] >= 0.6 * size]  # a 25-pixel gap (250 m) between the two parts
    model = train(cube, west, config="micro", epochs=6, lr=3e-3, window=32, progress=False, seed=0)
    p = model.predict_points(cube, east)
    s = score(east["label"].cat.codes.to_numpy(), p, ("absent", "present"))
    assert s["balanced_accuracy"] > 0.75, s
