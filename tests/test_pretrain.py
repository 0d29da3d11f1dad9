"""Self-supervised pretraining: lazy reads, a self-describing backbone, seeded, resumable."""

from __future__ import annotations

import threading

import dask.array as da
import numpy as np
import pandas as pd
import pytest

from miso_xr.checkpoint import read_checkpoint
from miso_xr.cube.grid import Grid, make_cube
from miso_xr.exceptions import InputError
from miso_xr.training import pretraining as pretrain_module
from miso_xr.training.loop import train
from miso_xr.training.pretraining import pretrain

pytestmark = pytest.mark.usefixtures("one_torch_thread")

KW = dict(config="micro", window=32, batch_size=8, crops_per_epoch=16, progress=False)


def _cube(size: int = 96):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size]
    elev = 300 + 40 * np.sin(xx / 9.0) * np.cos(yy / 11.0) + rng.normal(size=(size, size))
    slope = np.abs(np.gradient(elev)[0]) * 5
    cov = np.stack([elev, slope]).astype("float32")
    g = Grid("EPSG:3338", 250_000.0, 1_600_000.0, 10.0, size, size)
    return make_cube({"covariates": (cov, ["elevation", "slope"])}, g, chunks=48), g, elev


def test_pretraining_a_single_modality_gives_a_backbone_that_train_uses(tmp_path, monkeypatch):
    cube, g, elev = _cube()
    bb = pretrain(cube, epochs=2, seed=0, out=tmp_path / "bb.safetensors", **KW)
    assert bb.path.exists() and len(bb.sha256) == 64
    tensors, info = read_checkpoint(bb.path)
    assert info.kind == "backbone" and info.spec.modalities == (
        ("covariates", ("elevation", "slope")),
    )
    assert info.spec.crs == "EPSG:3338" and info.spec.resolution == 10.0
    assert not any(k.startswith("head.") for k in tensors)
    hist = info.training["history"]
    assert len(hist) == 2 and info.training["crops_seen"] == 32
    # covariates only: the view contrast and the location pair are the objectives
    assert {"view", "visual_location"} <= set(hist[0]) and hist[0]["view"] > 0
    # the resume file is gone once the run completes
    assert not (tmp_path / "bb.resume.safetensors").exists()

    rng = np.random.default_rng(1)
    rc = rng.integers(0, 96, size=(60, 2))
    obs = pd.DataFrame({"x": g.x[rc[:, 1]], "y": g.y[rc[:, 0]]})
    codes = (elev[rc[:, 0], rc[:, 1]] > 300).astype(int)
    obs["label"] = pd.Categorical.from_codes(codes, categories=["absent", "present"])
    obs.attrs.update(task="permafrost", crs="EPSG:3338")
    model = train(
        cube, obs, config="micro", window=32, epochs=1, progress=False, backbone=bb, batch_size=8
    )
    tr = model.training
    assert tr["backbone"]["layout"] == "miso" and tr["backbone"]["sha256"] == bb.sha256
    assert tr["backbone_load"]["loaded"] > 20
    # the backbone's normalisation is the model's: the encoders learnt on those features
    assert model.spec.stats["covariates"] == info.spec.stats["covariates"]
    # published to a directory hub as kind "backbone", it trains by name
    from miso_xr.hub import publish

    publish(
        bb,
        tmp_path / "hub",
        name="test-backbone",
        version="1",
        licence="MIT",
        description="pretrained in a test",
        kind="backbone",
    )
    monkeypatch.setenv("MISO_XR_HUBS", str(tmp_path / "hub"))
    monkeypatch.setenv("MISO_XR_CACHE", str(tmp_path / "cache"))
    named = train(
        cube,
        obs,
        config="micro",
        window=32,
        epochs=1,
        progress=False,
        batch_size=8,
        backbone="test-backbone@1",
    )
    assert named.training["backbone"]["sha256"] == bb.sha256
    with pytest.raises(InputError, match="another architecture"):
        train(cube, obs, config="tiny", window=32, epochs=1, progress=False, backbone=bb)


def test_the_same_seed_gives_the_same_backbone_and_an_interrupted_run_resumes(
    tmp_path, monkeypatch
):
    cube, _, _ = _cube()
    full = pretrain(cube, epochs=3, seed=4, out=tmp_path / "full.safetensors", **KW)
    again = pretrain(cube, epochs=3, seed=4, out=tmp_path / "again.safetensors", **KW)
    a, _ = read_checkpoint(full.path)
    b, _ = read_checkpoint(again.path)
    assert all(np.array_equal(a[k], b[k]) for k in a)

    # interrupt after the first epoch's state is saved, then run the same command again
    real = pretrain_module._save_state

    def save_then_die(*args, **kwargs):
        real(*args, **kwargs)
        raise KeyboardInterrupt

    out = tmp_path / "cut.safetensors"
    monkeypatch.setattr(pretrain_module, "_save_state", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        pretrain(cube, epochs=3, seed=4, out=out, **KW)
    assert (tmp_path / "cut.resume.safetensors").exists() and not out.exists()
    monkeypatch.setattr(pretrain_module, "_save_state", real)
    resumed = pretrain(cube, epochs=3, seed=4, out=out, **KW)
    c, info = read_checkpoint(resumed.path)
    assert [h["epoch"] for h in info.training["history"]] == [1, 2, 3]
    assert all(np.array_equal(a[k], c[k]) for k in a)
    other = pretrain(cube, epochs=3, seed=5, out=tmp_path / "other.safetensors", **KW)
    d, _ = read_checkpoint(other.path)
    assert not all(np.array_equal(a[k], d[k]) for k in a)


def test_only_the_sampled_crops_are_read_from_a_huge_cube(tmp_path):
    # 2 x 100,000 x 100,000 float32 = 80 GB: any result at all shows laziness
    n, chunk = 100_000, 1_000
    calls: list[tuple[int, int]] = []
    lock = threading.Lock()

    def block(block_info=None):
        (b0, b1), (r0, r1), (c0, c1) = block_info[None]["array-location"]
        with lock:
            calls.append((r0 // chunk, c0 // chunk))
        rr, cc = np.meshgrid(np.arange(r0, r1), np.arange(c0, c1), indexing="ij")
        return np.stack([np.sin(rr / 7.0 + b) + np.cos(cc / 5.0) for b in range(b0, b1)]).astype(
            "float32"
        )

    big = da.map_blocks(
        block, chunks=((2,), (chunk,) * (n // chunk), (chunk,) * (n // chunk)), dtype="float32"
    )
    g = Grid("EPSG:3338", 0.0, n * 10.0, 10.0, n, n)
    cube = make_cube({"covariates": (big, ["elevation", "slope"])}, g)
    bb = pretrain(cube, epochs=2, seed=0, out=tmp_path / "huge.safetensors", **KW)
    # 32 crops of 48 px touch at most 4 chunks each, of 10,000
    assert 0 < len(set(calls)) <= 2 * 16 * 4
    assert bb.summary["crops_seen"] == 32


def test_bad_settings_are_named(tmp_path):
    cube, _, _ = _cube()
    with pytest.raises(InputError, match="must end in .safetensors"):
        pretrain(cube, epochs=1, out=tmp_path / "bb.pt", **KW)
    with pytest.raises(InputError, match="no objective"):
        pretrain(
            cube, epochs=1, location=False, view_weight=0, out=tmp_path / "x.safetensors", **KW
        )
    with pytest.raises(InputError, match="does not fit the cube"):
        pretrain(cube, epochs=1, out=tmp_path / "x.safetensors", **{**KW, "window": 96})
    assert sorted(p.name for p in tmp_path.iterdir()) == []
