"""MisoModel: the predictor protocol, checkpoint round trip, dense prediction, MC-dropout."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from miso_xr.checkpoint import read_checkpoint, write_checkpoint
from miso_xr.exceptions import CheckpointError, InputError, MissingBandError
from miso_xr.loaders import load_checkpoint
from miso_xr.model import MisoConfig, MisoModel
from miso_xr.model.liif import pixel_centres
from miso_xr.spec import ModelSpec, Normalisation

SMALL = MisoConfig.named("micro")
OPTICAL = ("B04", "B03", "B02", "B05", "B06", "B07", "B08", "B11", "B12")
COVARIATES = ("elevation", "slope", "aspect", "curvature", "tpi", "twi")
SOIL = ("Andisols", "Entisols", "Gelisols", "Histosols", "Inceptisols", "Mollisols", "Spodosols")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _spec(classes=("absent", "present"), location=True, modalities=("optical", "covariates")):
    bands = {"optical": OPTICAL, "covariates": COVARIATES}
    return ModelSpec(
        kind="miso",
        task="permafrost" if len(classes) == 2 else "soil_order",
        classes=classes,
        modalities=tuple((m, bands[m]) for m in modalities),
        window=32,
        stride=16,
        resolution=10.0,
        crs="EPSG:3338",
        location=location,
        normalisation=(
            ("optical", Normalisation(mean=(1000.0,) * 9, std=(500.0,) * 9)),
            (
                "covariates",
                Normalisation(mean=(300.0, 5, 180, 0, 0, 8), std=(200.0, 3, 100, 1, 1, 2)),
            ),
        ),
    )


def _windows(n=2, w=32, seed=0, modalities=("optical", "covariates")):
    rng = np.random.default_rng(seed)
    inputs = {
        "optical": rng.normal(1000, 500, (n, 9, w, w)).astype(np.float32),
        "covariates": rng.normal(300, 100, (n, 6, w, w)).astype(np.float32),
    }
    inputs = {m: inputs[m] for m in modalities}
    x0 = 250_000.0 + 10 * w * np.arange(n)[:, None]
    x = x0 + 10 * np.arange(w)[None] + 5
    y = 1_650_000.0 - 10 * np.arange(w)[None] - 5 + 0 * x
    return inputs, x, y


def test_predict_windows_shapes_and_probabilities():
    model = MisoModel.create(_spec(), SMALL, seed=0)
    inputs, x, y = _windows(n=3)
    p = model.predict_windows(inputs, x, y)
    assert p.shape == (3, 2, 32, 32) and p.dtype == np.float32
    assert np.allclose(p.sum(axis=1), 1, atol=1e-6)
    soil = MisoModel.create(_spec(SOIL, location=False), SMALL, seed=0)
    q = soil.predict_windows(inputs, x, y)
    assert q.shape == (3, 7, 32, 32) and np.allclose(q.sum(axis=1), 1, atol=1e-5)
    cov = MisoModel.create(_spec(modalities=("covariates",)), SMALL, seed=0)
    only, x, y = _windows(modalities=("covariates",))
    assert cov.predict_windows(only, x, y).shape == (2, 2, 32, 32)


def test_predict_windows_pixel_equals_the_network_at_that_pixel():
    model = MisoModel.create(_spec(), SMALL, seed=1)
    inputs, x, y = _windows(n=2)
    inputs["optical"][1, 3, 5, 7] = np.nan  # filled with the band mean (0 after normalising)
    p = model.predict_windows(inputs, x, y, max_points=100, batch_size=1)
    stats = model.spec.stats
    images = {}
    for m, _ in model.spec.modalities:
        mean = np.asarray(stats[m].mean, np.float32)[:, None, None]
        std = np.asarray(stats[m].std, np.float32)[:, None, None]
        images[m] = torch.from_numpy(np.nan_to_num((inputs[m] - mean) / std))
    rc = [(0, 0), (5, 7), (31, 2), (17, 30)]
    query = pixel_centres(32, 32).view(32, 32, 2)
    q = torch.stack([query[r, c] for r, c in rc])[None].expand(2, -1, -1)
    loc = torch.tensor([[[x[n, c], y[n, r]] for r, c in rc] for n in range(2)], dtype=torch.float64)
    with torch.no_grad():
        logit = model.net(images, q, loc).logits[..., 0]
    p1 = torch.sigmoid(logit).numpy()
    for i, (r, c) in enumerate(rc):
        assert p[:, 1, r, c] == pytest.approx(p1[:, i], abs=1e-5)
        assert p[:, 0, r, c] == pytest.approx(1 - p1[:, i], abs=1e-5)
    # chunking of windows and queries does not change results, nor does the path (the dense
    # decode by default, the pixel centres queried as points with dense=False)
    q2 = model.predict_windows(inputs, x, y)
    assert np.allclose(p, q2, atol=1e-5)
    queried = model.predict_windows(inputs, x, y, dense=False, max_points=300)
    assert np.abs(queried - p).max() <= 1e-5
    assert np.isfinite(p).all()


def test_windows_run_side_by_side_on_a_cpu_with_several_threads(monkeypatch):
    """With 2 torch threads a call runs its batches in 2 one-thread lanes; the same values."""
    import threading

    model = MisoModel.create(_spec(), SMALL, seed=3)
    inputs, x, y = _windows(n=5)
    serial = model.predict_windows(inputs, x, y, batch_size=2)  # one thread (the fixture)
    seen = []
    encode = model.net.encode

    def spy(images):
        size = next(iter(images.values())).shape[0]
        seen.append((threading.current_thread().name, torch.get_num_threads(), size))
        assert not torch.is_grad_enabled()
        return encode(images)

    monkeypatch.setattr(model.net, "encode", spy)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        lanes = model.predict_windows(inputs, x, y, batch_size=2)
        assert torch.get_num_threads() == 2  # the caller's setting is left as it was
    finally:
        torch.set_num_threads(before)
    assert np.abs(lanes - serial).max() <= 1e-6
    names = {name for name, _, _ in seen}
    assert len(names) == 2 and all(n.startswith("miso-window") for n in names)
    assert {threads for _, threads, _ in seen} == {1}
    assert sorted(size for _, _, size in seen) == [1, 2, 2]  # batches of at most 2
    # lanes=1: the batches in order, in the calling thread, on its threads
    seen.clear()
    torch.set_num_threads(2)
    try:
        one = model.predict_windows(inputs, x, y, batch_size=2, lanes=1)
    finally:
        torch.set_num_threads(before)
    assert np.abs(one - serial).max() <= 1e-6
    assert {(name, threads) for name, threads, _ in seen} == {(threading.current_thread().name, 2)}
    for bad in (0, 1.5, True, "2"):
        with pytest.raises(InputError, match=f"lanes={bad!r}"):
            model.predict_windows(inputs, x, y, lanes=bad)

    # an error in a lane reaches the caller
    def broken(images):
        raise RuntimeError("lane failed")

    monkeypatch.setattr(model.net, "encode", broken)
    torch.set_num_threads(2)
    try:
        with pytest.raises(RuntimeError, match="lane failed"):
            model.predict_windows(inputs, x, y, batch_size=2)
    finally:
        torch.set_num_threads(before)


def test_location_prior_once_per_pixel_equals_the_prior_in_every_window():
    model = MisoModel.create(_spec(), SMALL, seed=2)
    inputs, x, y = _windows(n=3)
    y = y + 10 * 16 * np.arange(3)[:, None]  # windows at different rows too
    # one grid over every window's columns and rows, each window cutting its part from it
    gx, gy = np.unique(x), np.unique(y)[::-1]
    grid = model.location_prior(gx, gy, max_points=500)
    assert grid.shape == (gy.size, gx.size, 1) and grid.dtype == np.float32
    ix = np.searchsorted(gx, x)
    iy = gy.size - 1 - np.searchsorted(gy[::-1], y)
    prior = grid[iy[:, :, None], ix[:, None, :]]
    per_window = model.predict_windows(inputs, x, y)
    for dense in (True, False):
        shared = model.predict_windows(inputs, x, y, prior=prior, dense=dense, max_points=700)
        assert np.abs(shared - per_window).max() <= 1e-5
    # the prior moves the map: a wrong one (another place's) must not give the same result
    moved = model.predict_windows(inputs, x, y, prior=prior[::-1].copy())
    assert np.abs(moved - per_window).max() > 1e-3
    # the prior's logits are the location head's, at those coordinates
    loc = torch.tensor([[[x[0, 4] - model.origin[0], y[0, 0] - model.origin[1]]]])
    with torch.no_grad():
        want = model.net.location_logits(loc.double()).numpy()[0, 0]
    assert grid[iy[0, 0], ix[0, 4]] == pytest.approx(want, abs=1e-6)


def test_bad_location_prior_raises_one_clear_error():
    model = MisoModel.create(_spec(), SMALL, seed=0)
    inputs, x, y = _windows(n=2)
    with pytest.raises(
        InputError, match=r"prior has shape \(2, 32, 32\); it needs \(2, 32, 32, 1\)"
    ):
        model.predict_windows(inputs, x, y, prior=np.zeros((2, 32, 32), np.float32))
    plain = MisoModel.create(_spec(location=False), SMALL, seed=0)
    assert plain.location_prior(x[0], y[0]) is None
    with pytest.raises(InputError, match="this one has none"):
        plain.predict_windows(inputs, x, y, prior=np.zeros((2, 32, 32, 1), np.float32))
    with pytest.raises(InputError, match="no location prior"):
        plain.net.location_logits(torch.zeros(1, 2, dtype=torch.float64))


def test_checkpoint_round_trip_is_bit_identical(tmp_path):
    model = MisoModel.create(_spec(), SMALL, seed=3, training={"points": 12})
    path = tmp_path / "m.safetensors"
    digest = model.save(path)
    assert model.sha256 == digest and len(digest) == 64
    back = load_checkpoint(path)
    assert isinstance(back, MisoModel)
    assert back.sha256 == digest and back.source == str(path.resolve())
    # ModelSpec's JSON sorts modality keys, so compare with the spec's own round trip
    assert back.spec == ModelSpec.from_json(model.spec.to_json())
    assert back.spec.bands == model.spec.bands and back.config == model.config
    assert back.training == {"points": 12}
    inputs, x, y = _windows(n=2, seed=4)
    assert np.array_equal(model.predict_windows(inputs, x, y), back.predict_windows(inputs, x, y))
    for k, v in model.net.state_dict().items():
        assert torch.equal(v, back.net.state_dict()[k]), k
    assert "params=" in repr(back) and digest[:12] in repr(back)


def test_broken_checkpoints_are_refused(tmp_path):
    model = MisoModel.create(_spec(), SMALL, seed=0)
    tensors = model.state_tensors()
    bad = dict(tensors)
    del bad["head.5.weight"]
    path = tmp_path / "missing.safetensors"
    write_checkpoint(path, bad, spec=model.spec, config=model.checkpoint_config())
    with pytest.raises(CheckpointError, match=r"missing.*head.5.weight"):
        load_checkpoint(path)
    bad = dict(tensors)
    bad["head.5.weight"] = np.zeros((3, 8), np.float32)
    write_checkpoint(path, bad, spec=model.spec, config=model.checkpoint_config())
    with pytest.raises(CheckpointError, match=r"'head.5.weight' has shape \(3, 8\).*\(1, 8\)"):
        load_checkpoint(path)
    write_checkpoint(path, tensors, spec=model.spec, config={"embed_dim": "x", "colour": 1})
    with pytest.raises(CheckpointError, match="colour"):
        load_checkpoint(path)
    model.save(tmp_path / "ok.safetensors")
    _, info = read_checkpoint(tmp_path / "ok.safetensors")
    assert info.config["net"] == {
        "bands": {"optical": 9, "covariates": 6},
        "num_outputs": 1,
        "location": True,
        "location_prior": True,
    }


def test_mc_dropout_samples_average_and_vary():
    model = MisoModel.create(_spec(), SMALL.replace(dropout=0.5), seed=0)
    inputs, x, y = _windows(n=1)
    det = model.predict_windows(inputs, x, y)
    torch.manual_seed(0)
    mc = model.predict_windows(inputs, x, y, mc_samples=4)
    assert mc.shape == det.shape and np.allclose(mc.sum(axis=1), 1, atol=1e-5)
    assert not np.allclose(mc, det)
    assert not model.net.training  # eval mode restored
    assert np.array_equal(det, model.predict_windows(inputs, x, y))  # deterministic again
    # a model in training (some parts, as when a head is fine-tuned) predicts in eval mode and
    # gets each module's own mode back, both paths (predict_windows and location_prior)
    model.net.encoders.train()
    before = {name: m.training for name, m in model.net.named_modules()}
    assert np.array_equal(det, model.predict_windows(inputs, x, y))
    model.location_prior(x[0], y[0])
    model.predict_windows(inputs, x, y, mc_samples=2)
    assert {name: m.training for name, m in model.net.named_modules()} == before
    nodrop = MisoModel.create(_spec(), SMALL.replace(dropout=0.0), seed=0)
    assert np.allclose(
        nodrop.predict_windows(inputs, x, y, mc_samples=2),
        nodrop.predict_windows(inputs, x, y),
        atol=1e-6,
    )


def test_bad_predict_inputs_raise_one_clear_error():
    model = MisoModel.create(_spec(), SMALL, seed=0)
    inputs, x, y = _windows(n=2)
    with pytest.raises(MissingBandError, match="covariates.*elevation slope aspect"):
        model.predict_windows({"optical": inputs["optical"]}, x, y)
    with pytest.raises(InputError, match=r"\(windows, 9, W, W\)"):
        model.predict_windows({**inputs, "optical": inputs["optical"][:, :3]}, x, y)
    with pytest.raises(InputError, match=r"need \(2, 32\)"):
        model.predict_windows(inputs, x[:, :5], y)
    with pytest.raises(InputError, match="multiple of 32"):
        small = {m: v[:, :, :24, :24] for m, v in inputs.items()}
        model.predict_windows(small, x[:, :24], y[:, :24])
    with pytest.raises(InputError, match="mc_samples"):
        model.predict_windows(inputs, x, y, mc_samples=-1)
    with pytest.raises(InputError, match="kind='miso'"):
        MisoModel(model.net, ModelSpec(**{**model.spec.__dict__, "kind": "random_forest"}), SMALL)
    with pytest.raises(InputError, match="7 classes"):
        MisoModel(model.net, _spec(SOIL), SMALL)
    with pytest.raises(InputError, match="at least 2 classes"):
        MisoModel.create(_spec(("present",)), SMALL)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_autocast_matches_cpu():
    model = MisoModel.create(_spec(), SMALL, seed=0)
    inputs, x, y = _windows(n=2)
    cpu = model.predict_windows(inputs, x, y)
    gpu = model.predict_windows(inputs, x, y, device="cuda")
    assert gpu.dtype == np.float32 and np.abs(gpu - cpu).max() < 0.05
