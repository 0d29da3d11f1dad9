"""The main job and the command line, end to end, on the synthetic scene (real servers, real files)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
import xarray as xr

from miso_xr.cli import main
from miso_xr.datasets.synthetic import make_scene, write_scene
from miso_xr.demo import run_demo


@pytest.mark.slow
def test_demo_runs_the_main_job_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--size", "128", "--epochs", "1"]) == 0
    assert main(["demo", "--out", str(out), "--size", "128", "--epochs", "1"]) == 0  # reruns
    printed = capsys.readouterr().out
    for name in ("permafrost_tiny.safetensors", "demo.png", "scores.png", "metrics.json"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
        assert name in printed
    maps = xr.open_zarr(out / "permafrost.zarr")
    assert set(maps.data_vars) >= {"probability", "label", "uncertainty"}
    assert maps.sizes["x"] == maps.sizes["y"] == 128
    p = maps["probability"].values
    mapped = np.isfinite(p).all(axis=0)
    assert mapped.mean() > 0.9 and np.nanmin(p) >= 0
    assert np.allclose(p[:, mapped].sum(axis=0), 1, atol=1e-5)  # probabilities, not scores
    with rasterio.open(out / "permafrost_probability.tif") as src:
        assert src.crs.to_epsg() == 3338 and src.count == 2 and src.width == 128
    metrics = json.loads((out / "metrics.json").read_text())
    # MISO's map score is what its written map says against the scene's hidden truth
    truth = make_scene(seed=0, size=128).truth("permafrost").values
    label = maps["label"].values
    valid = label >= 0
    assert metrics["MISO"]["map_accuracy_vs_truth"] == pytest.approx(
        (label[valid] == truth[valid]).mean()
    )
    # one epoch of MISO may still be at chance; the forest is not: above chance on the held-out
    # blocks (0.74 when written) and over the whole map (0.85 vs 0.61 for the majority class)
    assert metrics["RF"]["balanced_accuracy"] > 0.6
    majority = max(truth.mean(), 1 - truth.mean())
    assert metrics["RF"]["map_accuracy_vs_truth"] > majority + 0.1
    index = json.loads((out / "hub" / "index.json").read_text())
    assert [e["name"] for e in index["entries"]] == ["demo-permafrost-tiny"]


def test_run_demo_refuses_a_bad_size(tmp_path):
    from miso_xr.exceptions import InputError

    with pytest.raises(InputError, match="size"):
        run_demo(tmp_path / "d", size=3)


@pytest.fixture(scope="module")
def scene_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_scene")
    return write_scene(make_scene(seed=1, size=128, n_observations=300), root / "scene")


def test_cli_train_predict_evaluate_and_hub_verify(scene_files, tmp_path, capsys):
    dem = next((scene_files.root / "assets" / "cop-dem-glo-30").rglob("*.tif"))
    raster = ["--raster", f"covariates:elevation={dem}", "--chunks", "64"]
    obs = str(scene_files.observations_csv)
    ckpt = tmp_path / "perm_tiny.safetensors"
    args = ["train", *raster, "--observations", obs, "--label", "permafrost"]
    args += ["--seed", "3", "--threads", "1", "--quiet"]
    assert main([*args, "--epochs", "1", "--out", str(ckpt)]) == 0
    assert "sha256" in capsys.readouterr().out
    cog = tmp_path / "map.tif"
    assert main(["predict", *raster, "--model", str(ckpt), "--out", str(cog)]) == 0
    with rasterio.open(cog) as src:
        assert src.crs.to_epsg() == 3338 and (src.width, src.height) == (128, 128)
    assert main(["predict", *raster, "--model", str(ckpt), "--out", str(cog)]) == 2
    assert "overwrite" in capsys.readouterr().err  # an existing map is kept unless asked
    assert main(["predict", *raster, "--model", str(ckpt), "--out", str(cog), "--overwrite"]) == 0
    png = tmp_path / "scores.png"
    args = ["evaluate", *raster, "--models", str(ckpt), "--observations", obs]
    args += ["--label", "permafrost", "-k", "3", "--fold-distance", "100"]
    # the model was trained on every one of these points: no flattering score, but the way out
    assert main([*args, "--out", str(png), "--seed", "1"]) == 2
    err = capsys.readouterr().err
    assert "refit it per fold for spatial cross-validation: --refit" in err
    assert "refit_factory" not in err and "Traceback" not in err
    assert "'perm_tiny'" in err and "MisoModel" not in err  # named after its file
    assert not png.exists()  # --refit is exercised in test_cli.py (on a Random Forest: fast)
    assert main(["hub", "verify", str(ckpt)]) == 0


def test_cli_errors_are_one_line_and_leave_nothing(tmp_path, capsys):
    out = tmp_path / "map.tif"
    assert main(["predict", "--raster", "nonsense", "--model", "m", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "MODALITY:BAND=PATH" in err and "Traceback" not in err
    assert main(["predict", "--model", "m", "--out", str(out)]) == 2
    assert "--bbox" in capsys.readouterr().err
    assert not out.exists()


def test_cli_options_quiet_threads_and_model_names(monkeypatch):
    import dask
    import torch

    from miso_xr import _progress
    from miso_xr.cli import _model_names, _parser, _setup

    assert _model_names(
        ["runs/perm.safetensors", "https://h/x/rf.safetensors?sig=1", "hubname"]
    ) == [
        "perm",
        "rf",
        "hubname",
    ]
    assert _model_names(["a/m.safetensors", "b/m.safetensors"]) == [
        "a/m.safetensors",
        "b/m.safetensors",
    ]
    monkeypatch.setattr(_progress, "_quiet", False)
    monkeypatch.setattr(_progress, "_in_notebook", lambda: False)
    monkeypatch.setattr("sys.stderr", type("Tty", (), {"isatty": lambda self: True})())
    assert _progress.show_progress() is True  # a terminal: bars on
    before = torch.get_num_threads()
    try:
        with dask.config.set(num_workers=None):
            _setup(_parser().parse_args(["demo", "--quiet", "--threads", "1"]))
            assert dask.config.get("num_workers") == 1
        assert torch.get_num_threads() == 1
        assert _progress.show_progress() is False  # --quiet: off even in a terminal
        assert _progress.show_progress(True) is True  # an explicit progress=True still wins
    finally:
        torch.set_num_threads(before)
    args = _parser().parse_args(["predict", "--model", "m", "--out", "o", "--chunks", "auto"])
    assert args.chunks == "auto"
