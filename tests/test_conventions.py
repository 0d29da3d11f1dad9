"""Issue 12's conventions that no other test pins down: progress bars follow the terminal (on in a
terminal or notebook, off in logs; progress= and --quiet win) in every long function, and the
command line's --seed reaches training."""

from __future__ import annotations

import numpy as np
import pytest
from test_io import make_maps
from test_train import MICRO, _scene, train_stopped_early

from miso_xr import _progress
from miso_xr.checkpoint import read_checkpoint
from miso_xr.cli import main
from miso_xr.datasets.synthetic import make_scene, write_scene
from miso_xr.io import to_cog, to_zarr
from miso_xr.training.loop import train

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def watcher(monkeypatch):
    """Who is watching: ``watcher("log")`` (stderr not a TTY: pytest's capture) or
    ``watcher("notebook")`` (a Jupyter kernel); ``--quiet`` off unless set."""
    monkeypatch.setattr(_progress, "_quiet", False)

    def set_to(where: str) -> None:
        monkeypatch.setattr(_progress, "_in_notebook", lambda: where == "notebook")

    return set_to


def _bar_after(capsys) -> str:
    out = capsys.readouterr()
    return out.out + out.err


def test_writers_show_a_bar_only_when_someone_watches(tmp_path, capsys, watcher):
    watcher("log")
    to_cog(make_maps(), tmp_path / "a.tif")
    to_zarr(make_maps(), tmp_path / "a.zarr")
    assert "100%" not in _bar_after(capsys)  # a log: no bar by default
    to_cog(make_maps(), tmp_path / "b.tif", progress=True)
    assert "100%" in _bar_after(capsys)  # asked for: a bar
    watcher("notebook")
    to_cog(make_maps(), tmp_path / "c.tif")
    assert "100%" in _bar_after(capsys)  # a notebook: a bar by default
    to_zarr(make_maps(), tmp_path / "c.zarr")
    assert "100%" in _bar_after(capsys)
    to_cog(make_maps(), tmp_path / "d.tif", progress=False)
    assert "100%" not in _bar_after(capsys)
    _progress.set_quiet()  # miso-xr --quiet
    to_cog(make_maps(), tmp_path / "e.tif")
    to_zarr(make_maps(), tmp_path / "e.zarr")
    assert "100%" not in _bar_after(capsys)


def test_training_shows_a_bar_only_when_someone_watches(capsys, watcher):
    cube, obs = _scene()
    kw = dict(config=MICRO, epochs=1, device="cpu", seed=0, val_fraction=0)
    watcher("log")
    train(cube, obs, **kw)
    assert "train MISO" not in _bar_after(capsys)
    watcher("notebook")
    train(cube, obs, **kw)
    assert "train MISO" in _bar_after(capsys)
    _progress.set_quiet()
    train(cube, obs, **kw)
    assert "train MISO" not in _bar_after(capsys)
    train(cube, obs, progress=True, **kw)  # an explicit progress=True still wins
    assert "train MISO" in _bar_after(capsys)


def test_cli_seed_reaches_training(tmp_path, capsys):
    files = write_scene(make_scene(seed=2, size=64, n_observations=120), tmp_path / "scene")
    dem = next((files.root / "assets" / "cop-dem-glo-30").rglob("*.tif"))
    args = ["train", "--raster", f"covariates:elevation={dem}", "--chunks", "64"]
    args += ["--observations", str(files.observations_csv), "--label", "permafrost"]
    args += ["--config", "micro", "--epochs", "1", "--threads", "1", "--quiet"]

    def weights(seed: int, name: str) -> dict[str, np.ndarray]:
        out = tmp_path / f"{name}.safetensors"
        assert main([*args, "--seed", str(seed), "--out", str(out)]) == 0
        tensors, info = read_checkpoint(out)
        assert info.training["seed"] == seed
        return tensors

    a, again, other = weights(3, "a"), weights(3, "again"), weights(4, "other")
    capsys.readouterr()
    assert all(np.array_equal(a[k], again[k]) for k in a)  # the same seed: the same model
    assert not all(np.array_equal(a[k], other[k]) for k in a)


def test_a_bar_stopped_early_counts_its_last_epoch_and_says_why(capsys):
    cube, obs = _scene()
    tr = train_stopped_early(cube, obs, progress=True).training
    assert tr["epochs"] < 30
    printed = capsys.readouterr().err.split("\r")[-1]  # the bar's last state
    assert f"| {tr['epochs']}/30 [" in printed
    assert f"stopped early; best val_loss at epoch {tr['best_epoch']}" in printed
