"""Files others can read, checkpoints that check themselves, hubs left as served (issue 11)."""

from __future__ import annotations

import os
import stat
import warnings

import numpy as np
import pandas as pd
import pytest

from miso_xr.cube.grid import Grid, make_cube
from miso_xr.exceptions import CheckpointError, UnverifiedCheckpointWarning
from miso_xr.observations import read_observations
from miso_xr.training.baseline import RandomForestBaseline

GRID = Grid("EPSG:3338", 250_000.0, 1_650_000.0, 50.0, 24, 24)


@pytest.fixture(scope="module")
def cube_obs():
    rng = np.random.default_rng(0)
    cov = (300 + 400 * rng.random((1, 24, 24))).astype("float32")
    cube = make_cube({"covariates": (cov, ["elevation"])}, GRID, chunks=12)
    r, c = rng.integers(0, 24, 40), rng.integers(0, 24, 40)
    obs = read_observations(
        pd.DataFrame({"x": GRID.x[c], "y": GRID.y[r], "permafrost": cov[0, r, c] > 500}),
        crs=GRID.crs,
    )
    return cube, obs


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_every_file_written_follows_the_umask(cube_obs, tmp_path, umask_022):
    """umask 022 -> 0644: checkpoints, COGs, Zarr markers, the hub's index and files, figures."""
    from miso_xr.hub import fetch, publish

    cube, obs = cube_obs
    rf = RandomForestBaseline(n_estimators=3, features=["covariates"], window=8).fit(cube, obs)
    ckpt = tmp_path / "rf.safetensors"
    rf.save(ckpt)
    maps = cube.miso.predict(rf)
    maps.miso.to_cog(str(tmp_path / "label.tif"))
    maps.miso.to_zarr(str(tmp_path / "m.zarr"), progress=False)
    maps.miso.plot(str(tmp_path / "m.png"))
    hub = tmp_path / "hub"
    publish(ckpt, hub, name="rf", version="1", licence="MIT", description="t")
    written = [ckpt, tmp_path / "label.tif", tmp_path / "m.png", hub / "index.json"]
    written += list((hub / "files").iterdir())
    progress = tmp_path / "m.zarr" / ".miso_progress"
    written += [progress / "template.json", progress / "complete"]
    written += list((progress / "chunks").iterdir())
    assert len(written) > 8
    assert {str(p.relative_to(tmp_path)): oct(_mode(p)) for p in written} == {
        str(p.relative_to(tmp_path)): "0o644" for p in written
    }
    # a directory hub is used in place: nothing lands in the cache, and no lock file stays
    cache = tmp_path / "cache"
    assert fetch("rf@1", hub=str(hub), cache_dir=cache) == hub / "files" / "rf-1.safetensors"
    assert not (cache / "blobs").exists() or not any((cache / "blobs").iterdir())
    assert sorted(p.name for p in hub.iterdir()) == ["files", "index.json"]


def test_durable_writes_fsync_the_directory(cube_obs, tmp_path, monkeypatch):
    import miso_xr._files as files
    from miso_xr.hub import publish

    synced = []
    real = files.fsync_dir
    monkeypatch.setattr(files, "fsync_dir", lambda d: (synced.append(str(d)), real(d)))
    cube, obs = cube_obs
    rf = RandomForestBaseline(n_estimators=3, features=["covariates"], window=8).fit(cube, obs)
    rf.save(tmp_path / "rf.safetensors")
    assert synced == [str(tmp_path)]
    import miso_xr.hub.publishing as publishing

    monkeypatch.setattr(publishing, "fsync_dir", lambda d: (synced.append(str(d)), real(d)))
    publish(tmp_path / "rf.safetensors", tmp_path / "hub", name="rf", version="1",
            licence="MIT", description="t")  # fmt: skip
    assert synced[1:] == [str(tmp_path / "hub" / "files"), str(tmp_path / "hub")]


def test_checkpoint_with_overwritten_bytes_is_refused_naming_the_path(cube_obs, tmp_path):
    from miso_xr.checkpoint import load_checkpoint, read_info

    cube, obs = cube_obs
    rf = RandomForestBaseline(n_estimators=3, features=["covariates"], window=8).fit(cube, obs)
    path = tmp_path / "rf.safetensors"
    rf.save(path)
    assert len(read_info(path).tensors_sha256) == 64
    load_checkpoint(path)  # intact: loads
    data = bytearray(path.read_bytes())
    header = 8 + int.from_bytes(data[:8], "little")
    data[header + 64 : header + 64 + 256] = bytes(256)  # 256 bytes of the body, zeroed
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"rf\.safetensors' is corrupt or was tampered with"):
        load_checkpoint(path)


def test_old_checkpoint_without_digest_loads_with_one_note(cube_obs, tmp_path):
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file

    from miso_xr.checkpoint import load_checkpoint

    cube, obs = cube_obs
    rf = RandomForestBaseline(n_estimators=3, features=["covariates"], window=8).fit(cube, obs)
    path = tmp_path / "new.safetensors"
    rf.save(path)
    with safe_open(str(path), framework="numpy") as f:
        meta = dict(f.metadata())
    meta.pop("tensors_sha256")
    old = tmp_path / "old.safetensors"
    save_file(load_file(str(path)), str(old), metadata=meta)  # as miso_xr wrote them before
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = load_checkpoint(old)
    notes = [w for w in caught if issubclass(w.category, UnverifiedCheckpointWarning)]
    assert len(notes) == 1 and "old.safetensors" in str(notes[0].message)
    assert "\n" not in str(notes[0].message)
    np.testing.assert_array_equal(model.predict_points(cube, obs), rf.predict_points(cube, obs))
