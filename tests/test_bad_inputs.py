"""A table of bad inputs (issue 11): each gives ONE exception of the documented class, a message
that names the input, and leaves the output folder as it was.

Every case is a function ``(ctx, out) -> None`` that should fail; ``out`` is a folder holding an
earlier result (a file, a COG, a Zarr store), which must come through untouched. Command-line
cases check the exit status (2) and a single stderr line instead of an exception. Tiny data:
a 32 x 32 cube and Random Forests of a few trees.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import miso_xr
from miso_xr.cube.grid import Grid, make_cube
from miso_xr.exceptions import (
    CheckpointError,
    HubError,
    IncompatibleCubeError,
    InputError,
    MissingBandError,
    ObservationError,
    UnsafeCheckpointError,
)

SIZE = 32
GRID = Grid("EPSG:3338", 250_000.0, 1_650_000.0, 50.0, SIZE, SIZE)


@dataclass
class Ctx:
    root: Path
    cube: Any
    obs: pd.DataFrame
    rf: Any
    ckpt: Path
    maps: Any
    dem: Path
    csv: Path


@pytest.fixture(scope="module")
def ctx(tmp_path_factory) -> Ctx:
    import rasterio

    root = tmp_path_factory.mktemp("bad_inputs")
    rng = np.random.default_rng(0)
    dem = (300 + 400 * np.mgrid[0:SIZE, 0:SIZE][1] / SIZE).astype("float32")
    with rasterio.open(
        root / "dem.tif", "w", driver="GTiff", width=SIZE, height=SIZE, count=1,
        dtype="float32", crs=GRID.crs, transform=GRID.transform,
    ) as dst:  # fmt: skip
        dst.write(dem, 1)
    cube = make_cube({"covariates": (dem[None], ["elevation"])}, GRID, chunks=16)
    r, c = rng.integers(0, SIZE, 40), rng.integers(0, SIZE, 40)
    table = pd.DataFrame({"x": GRID.x[c], "y": GRID.y[r], "permafrost": dem[r, c] > 500})
    obs = miso_xr.read_observations(table, crs=GRID.crs)
    lon, lat = obs["lon"].to_numpy(), obs["lat"].to_numpy()
    pd.DataFrame({"lon": lon, "lat": lat, "permafrost": obs["label"].cat.codes}).to_csv(
        root / "obs.csv", index=False
    )
    rf = miso_xr.RandomForestBaseline(n_estimators=3, features=["covariates"], window=8)
    rf.fit(cube, obs)
    ckpt = root / "rf.safetensors"
    rf.save(ckpt)
    return Ctx(root, cube, obs, rf, ckpt, cube.miso.predict(rf), root / "dem.tif", root / "obs.csv")


@pytest.fixture
def out(ctx, tmp_path) -> Path:
    """An output folder holding earlier results: a text file, a COG and a Zarr store."""
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "keep.txt").write_text("an earlier result")
    ctx.maps.miso.to_cog(str(folder / "map.tif"))
    ctx.maps.miso.to_zarr(str(folder / "map.zarr"), progress=False)
    return folder


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
    }


def _df(**cols) -> pd.DataFrame:
    return pd.DataFrame(cols)


LON, LAT = -147.70 + 0.002 * np.arange(6), 64.80 + 0.002 * np.arange(6)


def _corrupt(ctx: Ctx, out: Path) -> Path:
    import shutil

    bad = out.parent / "corrupt.safetensors"  # beside, not in, the output folder
    shutil.copyfile(ctx.ckpt, bad)
    data = bytearray(bad.read_bytes())
    start = 8 + int.from_bytes(data[:8], "little") + 16
    data[start : start + 256] = bytes(256)
    bad.write_bytes(bytes(data))
    return bad


def _cli(*argv: str) -> Callable[[Ctx, Path], None]:
    """A command line; ``{dem}``, ``{csv}``, ``{ckpt}``, ``{out}`` are filled in."""

    def run(ctx: Ctx, out: Path) -> None:
        from miso_xr.cli import main

        args = [a.format(dem=ctx.dem, csv=ctx.csv, ckpt=ctx.ckpt, out=out) for a in argv]
        raise _Exit(main(args))

    return run


class _Exit(Exception):
    """A CLI case's exit status, carried to the checker."""


RASTER = ("--raster", "covariates:elevation={dem}", "--chunks", "16")

# (id, call, exception class, regex the message must match: it names the input)
CASES: list[tuple[str, Callable[[Ctx, Path], Any], type[BaseException] | str, str]] = [
    # ---- cube
    ("cube: raster file missing",
     lambda c, o: miso_xr.open_rasters({"covariates": {"elevation": str(o / "nope.tif")}}),
     InputError, r"nope\.tif"),
    ("cube: chunks=0",
     lambda c, o: miso_xr.open_rasters({"covariates": {"elevation": str(c.dem)}}, chunks=0),
     InputError, r"chunks=0"),
    ("cube: array of the wrong shape",
     lambda c, o: make_cube({"covariates": (np.zeros((1, 5, 5)), ["elevation"])}, GRID),
     InputError, r"modality 'covariates'.*\(1, 5, 5\)"),
    ("cube: bbox with lon0 > lon1",
     lambda c, o: miso_xr.open_stac(
            bbox=(-147.0, 65.0, -148.0, 65.2), datetime="2020", catalog="http://127.0.0.1:9"),
     InputError, r"bbox"),
    ("cube: unknown modality",
     lambda c, o: miso_xr.open_stac(bbox=(-148.0, 65.0, -147.9, 65.1), modalities=("lidar",), datetime="2020",
                                    catalog="http://127.0.0.1:9"),
     InputError, r"lidar"),
    # ---- observations
    ("observations: file missing",
     lambda c, o: miso_xr.read_observations(o / "points.csv"), ObservationError,
     r"points\.csv' does not exist"),
    ("observations: spreadsheet suffix",
     lambda c, o: miso_xr.read_observations(c.root / "dem.tif"), ObservationError,
     r"dem\.tif' has suffix '\.tif'"),
    ("observations: label column missing",
     lambda c, o: miso_xr.read_observations(c.csv, label="pf"), ObservationError,
     r"label column 'pf' is not in"),
    ("observations: task name typo",
     lambda c, o: miso_xr.read_observations(c.csv, task="permafrst"), ObservationError,
     r"task 'permafrst'.*did you mean 'permafrost'"),
    ("observations: lon/lat swapped",
     lambda c, o: miso_xr.read_observations(_df(lon=LAT, lat=LON, permafrost=[0, 1] * 3)),
     ObservationError, r"did you swap the lon/lat columns"),
    ("observations: metres under lon/lat, no crs=",
     lambda c, o: miso_xr.read_observations(
         _df(lon=GRID.x[:6], lat=GRID.y[:6], permafrost=[0, 1] * 3)),
     ObservationError, r"lon/lat values like .*projected metres.*Pass crs="),
    ("observations: degrees with a projected crs=",
     lambda c, o: miso_xr.read_observations(
         _df(x=LON, y=LAT, permafrost=[0, 1] * 3), crs="EPSG:3338"),
     ObservationError, r"x/y values look like longitude/latitude.*crs='EPSG:3338'"),
    ("observations: on_invalid typo",
     lambda c, o: miso_xr.read_observations(c.csv, on_invalid="skip"), InputError,
     r"on_invalid='skip'"),
    ("observations: crs nonsense",
     lambda c, o: miso_xr.read_observations(c.csv, crs="EPSG:99999"), InputError,
     r"crs='EPSG:99999' is not a CRS"),
    ("observations: classes as one string",
     lambda c, o: miso_xr.read_observations(c.csv, classes="absent present"), ObservationError,
     r"classes='absent present' is one string"),
    ("observations: folds k=1",
     lambda c, o: miso_xr.spatial_folds(c.obs, k=1), InputError, r"k=1"),
    # ---- training
    ("training: config name unknown",
     lambda c, o: miso_xr.train(c.cube, c.obs, config="huge"), InputError, r"'huge'"),
    ("training: window not a multiple of the encoder's",
     lambda c, o: miso_xr.train(c.cube, c.obs, window=30), InputError, r"window=30 px"),
    ("training: task other than the observations'",
     lambda c, o: miso_xr.train(c.cube, c.obs, task="soil_order"), ObservationError,
     r"task='soil_order' but the observations were read for task 'permafrost'"),
    ("training: RF with no trees",
     lambda c, o: miso_xr.RandomForestBaseline(n_estimators=0), InputError, r"n_estimators=0"),
    ("training: RF on a modality the cube lacks",
     lambda c, o: miso_xr.RandomForestBaseline(features=["optical"]).fit(c.cube, c.obs),
     MissingBandError, r"optical"),
    ("training: labels not categorical",
     lambda c, o: miso_xr.RandomForestBaseline().fit(
         c.cube, c.obs.assign(label=c.obs["label"].astype(str))),
     ObservationError, r"obs\['label'\] is object"),
    # ---- predict
    ("predict: cube without the model's band",
     lambda c, o: c.cube.rename_vars({"covariates": "terrain"}).miso.predict(c.rf),
     IncompatibleCubeError, r"covariates"),
    ("predict: window=0",
     lambda c, o: c.cube.miso.predict(c.rf, window=0), InputError, r"window=0"),
    ("predict: an unfinished store as the cube",
     lambda c, o: c.cube.assign_attrs(miso_xr_unfinished="cube.zarr").miso.predict(c.rf),
     InputError, r"unfinished Zarr write \(cube\.zarr\)"),
    ("predict: checkpoint missing",
     lambda c, o: miso_xr.load(str(o / "none.safetensors")), CheckpointError,
     r"none\.safetensors' does not exist"),
    ("predict: pickle checkpoint",
     lambda c, o: miso_xr.load(str(o / "model.pt")), UnsafeCheckpointError, r"model\.pt"),
    ("predict: checkpoint with overwritten bytes",
     lambda c, o: miso_xr.load(str(_corrupt(c, o))), CheckpointError,
     r"corrupt\.safetensors' is corrupt or was tampered with"),
    # ---- evaluate
    ("evaluate: model scored on its own training points",
     lambda c, o: miso_xr.evaluate([c.rf], c.cube, c.obs), InputError,
     r"'RandomForestBaseline' \d+ points.*refit_factory"),
    ("evaluate: names of the wrong length",
     lambda c, o: miso_xr.evaluate([c.rf], c.cube, c.obs, names=["a", "b"]), InputError,
     r"names=\['a', 'b'\]"),
    # ---- outputs
    ("outputs: Zarr into a missing folder",
     lambda c, o: c.maps.miso.to_zarr(str(o / "nowhere" / "m.zarr")), InputError,
     r"nowhere'? does not exist"),
    ("outputs: Zarr over a foreign file",
     lambda c, o: c.maps.miso.to_zarr(str(o / "keep.txt")), InputError,
     r"keep\.txt' already exists.*overwrite=True"),
    ("outputs: Zarr over other maps",
     lambda c, o: c.maps.isel(x=slice(0, 16)).miso.to_zarr(str(o / "map.zarr"), progress=False),
     InputError, r"map\.zarr' holds .*different maps.*overwrite=True"),
    ("outputs: COG over an existing file",
     lambda c, o: c.maps.miso.to_cog(str(o / "map.tif")), InputError,
     r"map\.tif' already exists; pass overwrite=True"),
    ("outputs: COG of a variable not in the maps",
     lambda c, o: c.maps.miso.to_cog(str(o / "e.tif"), variable="entropy"), InputError,
     r"variable='entropy'"),
    ("outputs: figure as .jpg",
     lambda c, o: c.maps.miso.plot(str(o / "map.jpg")), InputError, r"map\.jpg' must end in \.png"),
    # ---- hub
    ("hub: entry name with a slash",
     lambda c, o: miso_xr.hub.publish(c.ckpt, o / "hub", name="a/b", version="1", licence="MIT",
                                      description="x"),
     InputError, r"name='a/b'"),
    ("hub: no licence",
     lambda c, o: miso_xr.hub.publish(c.ckpt, o / "hub", name="rf", version="1", licence="",
                                      description="x"),
     InputError, r"licence= is required"),
    ("hub: sha256 not hexadecimal",
     lambda c, o: miso_xr.load(str(c.ckpt), sha256="xyz"), InputError, r"sha256='xyz'"),
    ("hub: name in no hub",
     lambda c, o: miso_xr.load("no-such-model", hub=str(c.root / "empty_hub"), offline=True),
     HubError, r"no-such-model"),
    # ---- command line (exit status 2, one line on stderr)
    ("cli: --out map.nc", _cli("predict", *RASTER, "--model", "{ckpt}", "--out", "{out}/map.nc"),
     "exit 2", r"--out '.*map\.nc'.*to_netcdf"),
    ("cli: --raster without MODALITY:",
     _cli("predict", "--raster", "dem.tif", "--model", "{ckpt}", "--out", "{out}/m.zarr"),
     "exit 2", r"--raster 'dem\.tif'"),
    ("cli: --task typo", _cli("train", *RASTER, "--observations", "{csv}", "--label",
                              "permafrost", "--task", "permafrst", "--out", "{out}/m.safetensors"),
     "exit 2", r"task 'permafrst'.*did you mean 'permafrost'"),
    ("cli: existing COG without --overwrite",
     _cli("predict", *RASTER, "--model", "{ckpt}", "--out", "{out}/map.tif"),
     "exit 2", r"map\.tif' already exists; pass --overwrite"),
    ("cli: evaluate a model on its own points",
     _cli("evaluate", *RASTER, "--models", "{ckpt}", "--observations", "{csv}", "--label",
          "permafrost"),
     "exit 2", r"trained on .*--refit"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "call", "error", "pattern"), CASES, ids=[c[0] for c in CASES])
def test_bad_input(ctx, out, capsys, case, call, error, pattern):
    before = _snapshot(out)
    if error == "exit 2":
        with pytest.raises(_Exit) as got:
            call(ctx, out)
        assert got.value.args == (2,)
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err, err
        message = err
    else:
        with pytest.raises(BaseException) as got:
            call(ctx, out)
        # the documented class, or a subclass of it the package defines
        assert isinstance(got.value, error) and isinstance(got.value, miso_xr.MisoError), (
            f"{case}: {type(got.value).__name__}: {got.value}"
        )
        message = str(got.value)
    assert re.search(pattern, message, re.S), f"{case}: {message}"
    assert _snapshot(out) == before, f"{case} changed the output folder"


def test_the_table_has_at_least_30_bad_inputs_across_every_area():
    areas = {c[0].split(":")[0] for c in CASES}
    assert len(CASES) >= 30
    assert areas >= {"cube", "observations", "training", "predict", "outputs", "hub", "cli"}
