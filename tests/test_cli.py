"""The command line's contract (issue 11): honest evaluate, writers by suffix, --hub, --figure,
flags named as flags, Ctrl-C as one line and exit 130. Tiny rasters and Random Forests: fast."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from miso_xr.cli import main
from miso_xr.cube.grid import Grid

SIZE, RES = 48, 50.0
GRID = Grid("EPSG:3338", 250_000.0, 1_650_000.0, RES, SIZE, SIZE)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A DEM GeoTIFF, an observations CSV (lon/lat), and RF checkpoints trained on all points
    and on the western half."""
    import rasterio
    from pyproj import Transformer

    import miso_xr

    root = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    dem = (300 + 400 * xx + 20 * rng.standard_normal((SIZE, SIZE))).astype("float32")
    with rasterio.open(
        root / "dem.tif", "w", driver="GTiff", width=SIZE, height=SIZE, count=1,
        dtype="float32", crs=GRID.crs, transform=GRID.transform,
    ) as dst:  # fmt: skip
        dst.write(dem, 1)
    r, c = rng.integers(0, SIZE, 120), rng.integers(0, SIZE, 120)
    lon, lat = Transformer.from_crs(GRID.crs, "EPSG:4326", always_xy=True).transform(
        GRID.x[c], GRID.y[r]
    )
    pd.DataFrame({"lon": lon, "lat": lat, "permafrost": (dem[r, c] > 500).astype(int)}).to_csv(
        root / "obs.csv", index=False
    )
    cube = miso_xr.open_rasters({"covariates": {"elevation": str(root / "dem.tif")}}, chunks=16)
    obs = miso_xr.read_observations(root / "obs.csv", cube=cube)
    rf = miso_xr.RandomForestBaseline(n_estimators=10, features=["covariates"], window=8)
    rf.fit(cube, obs).save(root / "rf_all.safetensors")
    west = obs[obs["x"] < GRID.left + SIZE * RES / 2]
    rf.fit(cube, west).save(root / "rf_west.safetensors")
    return root


def _raster(root) -> list[str]:
    return ["--raster", f"covariates:elevation={root / 'dem.tif'}", "--chunks", "16"]


def _evaluate(root, *models: str) -> list[str]:
    return [
        "evaluate", *_raster(root), "--models", *[str(root / m) for m in models],
        "--observations", str(root / "obs.csv"), "--label", "permafrost", "-k", "2",
        "--fold-distance", "300",
    ]  # fmt: skip


def test_evaluate_scores_held_out_points_refuses_memory_and_refits(files, tmp_path, capsys):
    # a model trained on every point: refused, with the way to an honest figure in CLI words
    png = tmp_path / "scores.png"
    assert main([*_evaluate(files, "rf_all.safetensors"), "--out", str(png)]) == 2
    err = capsys.readouterr().err
    assert (
        err.count("\n") == 1 and "labelled observations is one a fixed model was trained on" in err
    )
    assert "--refit" in err and "refit_factory" not in err and not png.exists()
    # trained on the west: scored once, on eastern points > 300 m from any training point
    assert main(_evaluate(files, "rf_west.safetensors")) == 0
    out = capsys.readouterr().out
    assert "rf_west: fixed model:" in out and "held-out points" in out
    assert "±" not in out
    # --refit: spatial CV with the checkpoint's own settings
    assert main([*_evaluate(files, "rf_all.safetensors"), "--refit", "--out", str(png)]) == 0
    out = capsys.readouterr().out
    assert "rf_all: spatial CV: 2 folds, refit per fold" in out and "±" in out
    assert png.stat().st_size > 0


def test_predict_chooses_the_writer_by_suffix(files, tmp_path, capsys):
    for name in ("map.nc", "map", "map.png"):
        out = tmp_path / name
        args = ["predict", *_raster(files), "--model", str(files / "rf_all.safetensors")]
        assert main([*args, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert f"--out {str(out)!r}" in err and ".zarr" in err and ".tif" in err
        if name == "map.nc":
            assert "to_netcdf" in err
    assert list(tmp_path.iterdir()) == []


def test_predict_figure_hub_and_overwrite_flag(files, tmp_path, capsys):
    import xarray as xr

    from miso_xr.hub import publish

    hub = tmp_path / "hub"
    publish(files / "rf_all.safetensors", hub, name="rf-tiny", version="1", licence="MIT",
            description="test")  # fmt: skip
    out, fig = tmp_path / "map.zarr", tmp_path / "map.png"
    args = ["predict", *_raster(files), "--model", "rf-tiny", "--hub", str(hub)]
    args += ["--out", str(out), "--figure", str(fig)]
    args += ["--observations", str(files / "obs.csv"), "--label", "permafrost"]
    assert main(args) == 0
    assert xr.open_zarr(out)["label"].shape == (SIZE, SIZE)
    with open(fig, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    capsys.readouterr()
    cog = tmp_path / "map.tif"
    base = ["predict", *_raster(files), "--model", "rf-tiny", "--hub", str(hub)]
    assert main([*base, "--out", str(cog)]) == 0
    before = cog.read_bytes()
    capsys.readouterr()
    assert main([*base, "--out", str(cog)]) == 2
    err = capsys.readouterr().err
    assert "pass --overwrite to replace it" in err and "overwrite=True" not in err
    assert cog.read_bytes() == before


def test_ctrl_c_is_one_line_and_exit_130(files, tmp_path, capsys, monkeypatch):
    import miso_xr

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(miso_xr, "load", interrupted)
    out = tmp_path / "map.zarr"
    args = ["predict", *_raster(files), "--model", str(files / "rf_all.safetensors")]
    assert main([*args, "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert err == "miso-xr predict: interrupted; rerun the same command to resume\n"
    assert not out.exists()


def test_pretrain_then_train_with_the_backbone(files, tmp_path, capsys):
    """miso-xr pretrain writes a backbone; miso-xr train --backbone starts from it."""
    from miso_xr.checkpoint import read_info

    bb = tmp_path / "bb.safetensors"
    args = ["pretrain", *_raster(files), "--config", "micro", "--epochs", "1", "--crops", "4"]
    assert main([*args, "--out", str(bb), "--quiet"]) == 0
    assert "train with --backbone" in capsys.readouterr().out
    assert read_info(bb).kind == "backbone"
    model = tmp_path / "perm.safetensors"
    train = [
        "train", *_raster(files), "--observations", str(files / "obs.csv"), "--label",
        "permafrost", "--config", "micro", "--epochs", "1", "--backbone", str(bb), "--quiet",
    ]  # fmt: skip
    assert main([*train, "--out", str(model)]) == 0
    assert read_info(model).training["backbone"]["source"] == str(bb)
