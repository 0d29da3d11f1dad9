"""to_zarr resumes a killed write without recomputing finished chunks; to_cog writes real COGs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import miso_xr  # noqa: F401 - registers .miso
from miso_xr.cube.grid import Grid
from miso_xr.exceptions import InputError
from miso_xr.io import to_cog, to_zarr

HERE = Path(__file__).resolve().parent
GRID = Grid("EPSG:3338", left=300_000.0, top=1_500_000.0, resolution=10.0, width=60, height=45)


def _block(block_id=None, *, log=None, delay=0.0, k=2):
    """A chunk of synthetic maps, a function of its place only; notes each computation in ``log``."""
    i, j = block_id[-2], block_id[-1]
    if log:
        with open(log, "a") as f:
            f.write(f"{i}.{j}\n")
    if delay:
        time.sleep(delay)
    rng = np.random.default_rng(1000 * i + j)
    h = min(16, GRID.height - 16 * i)
    w = min(16, GRID.width - 16 * j)
    p = rng.random((k, h, w)).astype("float32")
    p /= p.sum(0)
    p[:, 0, 0] = np.nan  # a nodata pixel in every chunk
    return p


def make_maps(log=None, delay=0.0, attrs=None) -> xr.Dataset:
    """Maps shaped like predict()'s, computed block by block (3 x 4 chunks of 16 px)."""
    import dask.array as da
    import rioxarray  # noqa: F401

    prob = da.map_blocks(
        _block,
        chunks=((2,), (16, 16, 13), (16, 16, 16, 12)),
        dtype=np.float32,
        meta=np.empty((0, 0, 0), np.float32),
        log=log,
        delay=delay,
    )
    label = da.where(da.isnan(prob).any(0), -1, da.argmax(prob, axis=0)).astype(np.int16)
    ds = xr.Dataset(
        {
            "probability": (("category", "y", "x"), prob),
            "label": (("y", "x"), label, {"flag_values": [0, 1], "nodata": -1}),
            "uncertainty": (("y", "x"), prob.max(0)),
        },
        coords={"y": GRID.y, "x": GRID.x, "category": ["absent", "present"]},
        attrs=attrs or {"model_sha256": "ab" * 32},
    )
    return ds.rio.write_crs(GRID.crs)


def _log_lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def _markers(store: Path) -> set[str]:
    folder = store / ".miso_progress" / "chunks"
    return {p.name for p in folder.iterdir()} if folder.exists() else set()


def _assert_same_store(a: Path, b: Path) -> None:
    x, y = xr.open_zarr(a).load(), xr.open_zarr(b).load()
    for v in ("probability", "label", "uncertainty"):
        assert np.array_equal(x[v].values, y[v].values, equal_nan=True), v
        assert x[v].dtype == y[v].dtype
    assert x.attrs == y.attrs and list(x["category"].values) == ["absent", "present"]


def test_round_trip(tmp_path):
    maps = make_maps()
    out = to_zarr(maps, tmp_path / "m.zarr", progress=False)
    back = xr.open_zarr(out)
    # nodata is the fill value: the label's -1 reads as missing (CF decoding), codes stay codes
    assert back.label.encoding["_FillValue"] == -1 and back.label.encoding["dtype"] == np.int16
    nodata = maps.label.values == -1
    assert nodata.any() and np.isnan(back.label.values[nodata]).all()
    assert np.array_equal(back.label.values[~nodata], maps.label.values[~nodata])
    raw = xr.open_zarr(out, mask_and_scale=False)
    assert raw.label.dtype == np.int16 and np.array_equal(raw.label.values, maps.label.values)
    assert back.probability.dtype == np.float32
    assert back.probability.encoding["chunks"] == (2, 16, 16)
    assert np.array_equal(back.probability.values, maps.probability.values, equal_nan=True)
    assert back.rio.crs == maps.rio.crs
    assert back.label.attrs["flag_values"] == [0, 1]
    assert len(_markers(Path(out))) == 12


KILLED_WRITER = """
import sys
sys.path.insert(0, {tests!r})
import dask
from test_io import make_maps
from miso_xr.io import to_zarr
dask.config.set(scheduler="threads", num_workers=2)
to_zarr(make_maps(log={log!r}, delay=0.4), {store!r}, progress=False)
"""


def _kill_writer_after(store, log, *, chunks: int) -> subprocess.Popen:
    """Run KILLED_WRITER in a subprocess and SIGKILL it once ``chunks`` chunks are on disk."""
    script = KILLED_WRITER.format(tests=str(HERE), log=str(log), store=str(store))
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)], start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while len(_markers(store)) < chunks:  # bounded by the deadline
            assert proc.poll() is None, "the writer ended before it could be killed"
            assert time.monotonic() < deadline, "the writer made no progress"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    return proc


def test_killed_write_resumes_without_recomputing_finished_chunks(tmp_path):
    store, log = tmp_path / "killed.zarr", tmp_path / "first.log"
    proc = _kill_writer_after(store, log, chunks=3)
    assert proc.returncode == -signal.SIGKILL
    finished = _markers(store)
    assert 3 <= len(finished) < 12
    assert len(_log_lines(log)) >= len(finished)

    second = tmp_path / "second.log"
    to_zarr(make_maps(log=second), store, progress=False)
    recomputed = _log_lines(second)
    # every chunk without a marker, once; none of the finished ones
    assert sorted(recomputed) == sorted({f"{i}.{j}" for i in range(3) for j in range(4)} - finished)
    assert len(_markers(store)) == 12

    whole = tmp_path / "whole.zarr"
    to_zarr(make_maps(), whole, progress=False)
    _assert_same_store(store, whole)

    third = tmp_path / "third.log"
    to_zarr(make_maps(log=third), store, progress=False)  # finished: nothing left to compute
    assert _log_lines(third) == []


def test_resuming_into_other_maps_is_refused(tmp_path):
    store = tmp_path / "a.zarr"
    to_zarr(make_maps(), store, progress=False)
    other = make_maps(attrs={"model_sha256": "cd" * 32})
    with pytest.raises(InputError, match="different maps"):
        to_zarr(other, store, progress=False)
    with pytest.raises(InputError, match="different maps"):
        to_zarr(make_maps().isel(x=slice(0, 40)), store, progress=False)
    log = tmp_path / "log"
    to_zarr(
        make_maps(log=log, attrs={"model_sha256": "cd" * 32}), store, overwrite=True, progress=False
    )
    assert len(_log_lines(log)) == 12
    assert xr.open_zarr(store).attrs["model_sha256"] == "cd" * 32


def test_an_existing_store_of_something_else_is_refused(tmp_path):
    store = tmp_path / "plain.zarr"
    make_maps().to_zarr(store, zarr_format=2, consolidated=True)
    with pytest.raises(InputError, match="not a resumable miso_xr write"):
        to_zarr(make_maps(), store, progress=False)
    (tmp_path / "file.zarr").write_text("not a store")
    with pytest.raises(InputError, match="overwrite=True"):
        to_zarr(make_maps(), tmp_path / "file.zarr", progress=False)


def test_missing_folder_leaves_nothing(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        to_zarr(make_maps(), tmp_path / "nowhere" / "m.zarr", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_maps_without_a_grid_are_refused(tmp_path):
    ds = xr.Dataset({"a": ("t", np.arange(3))})
    with pytest.raises(InputError, match="no variable with y and x"):
        to_zarr(ds, tmp_path / "m.zarr", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_accessor_and_progress_bar(tmp_path, capsys):
    out = make_maps().miso.to_zarr(str(tmp_path / "p.zarr"), progress=True)
    err = capsys.readouterr().err  # tqdm, counting chunks written
    assert "100%" in err and "chunk" in err
    assert xr.open_zarr(out).label.shape == (45, 60)
    make_maps().miso.to_zarr(str(tmp_path / "q.zarr"))  # default: not a TTY here, so no bar
    captured = capsys.readouterr()
    assert "100%" not in captured.out + captured.err


def test_modes_follow_xarray(tmp_path):
    store = tmp_path / "m.zarr"
    assert to_zarr(make_maps(), store, mode="w-", progress=False) == str(store)
    with pytest.raises(InputError, match="mode='w-' only creates"):
        to_zarr(make_maps(), store, mode="w-", progress=False)
    log = tmp_path / "log"
    to_zarr(make_maps(log=log), store, mode="a", progress=False)  # finished: nothing recomputed
    assert _log_lines(log) == []
    other = make_maps(log=log, attrs={"model_sha256": "cd" * 32})
    with pytest.raises(InputError, match="different maps.*mode='w'"):
        to_zarr(other, store, mode="a", progress=False)
    to_zarr(other, store, mode="w", progress=False)  # replaces
    assert len(_log_lines(log)) == 12 and xr.open_zarr(store).attrs["model_sha256"] == "cd" * 32
    with pytest.raises(InputError, match=r"mode='r\+'.*'a'.*'w'.*'w-'"):
        to_zarr(make_maps(), tmp_path / "x.zarr", mode="r+", progress=False)
    assert not (tmp_path / "x.zarr").exists()


def test_compute_false_returns_a_delayed_write(tmp_path):
    import dask
    from dask.delayed import Delayed

    log, store = tmp_path / "log", tmp_path / "m.zarr"
    job = to_zarr(make_maps(log=log), store, compute=False)
    assert isinstance(job, Delayed)
    assert _log_lines(log) == [] and _markers(store) == set()  # metadata only, as xarray
    assert not (store / ".miso_progress" / "complete").exists()
    (result,) = dask.compute(job)
    assert result == str(store) and len(_log_lines(log)) == 12 and len(_markers(store)) == 12
    assert (store / ".miso_progress" / "complete").exists()
    _assert_same_store(store, Path(to_zarr(make_maps(), tmp_path / "ref.zarr", progress=False)))


def test_storage_options_reach_the_filesystem_everywhere(tmp_path):
    import fsspec
    from fsspec.implementations.memory import MemoryFileSystem

    class Guarded(MemoryFileSystem):
        """An in-memory filesystem that needs a token, like a cloud bucket."""

        protocol = ("guardedtest",)

        def __init__(self, *args, token=None, **kwargs):
            if token != "secret":
                raise PermissionError(f"token={token!r}: refused")
            super().__init__(*args, **kwargs)

    fsspec.register_implementation("guardedtest", Guarded, clobber=True)
    url = f"guardedtest://{tmp_path.name}/m.zarr"
    with pytest.raises(PermissionError, match="token=None"):
        to_zarr(make_maps(), url, progress=False)
    out = to_zarr(make_maps(), url, storage_options={"token": "secret"}, progress=False)
    assert out == url
    back = xr.open_zarr(url, storage_options={"token": "secret"}, mask_and_scale=False)
    assert np.array_equal(back.label.values, make_maps().label.values)
    assert "miso_xr_unfinished" not in back.attrs  # finished, on a remote store too


def test_encoding_is_honoured_checked_and_fingerprinted(tmp_path):
    store = tmp_path / "m.zarr"
    enc = {"probability": {"dtype": "float16"}}
    to_zarr(make_maps(), store, encoding=enc, progress=False)
    back = xr.open_zarr(store)
    assert back.probability.dtype == np.float16
    np.testing.assert_allclose(
        back.probability.values, make_maps().probability.values, rtol=1e-3, equal_nan=True
    )
    with pytest.raises(InputError, match="different maps"):  # another encoding: not a resume
        to_zarr(make_maps(), store, progress=False)
    with pytest.raises(InputError, match=r"encoding\['label'\] has \['scale_factor'\]"):
        to_zarr(make_maps(), tmp_path / "a.zarr", encoding={"label": {"scale_factor": 2}})
    with pytest.raises(InputError, match="encoding names variable 'elevation'"):
        to_zarr(make_maps(), tmp_path / "b.zarr", encoding={"elevation": {"dtype": "f4"}})
    assert not (tmp_path / "a.zarr").exists() and not (tmp_path / "b.zarr").exists()


def test_irregular_chunks_are_made_uniform(tmp_path):
    maps = make_maps().chunk({"y": (20, 5, 20), "x": (30, 30)})
    out = to_zarr(maps, tmp_path / "r.zarr", progress=False)
    back = xr.open_zarr(out, mask_and_scale=False)
    assert back.label.encoding["chunks"] == (20, 30)
    assert np.array_equal(back.label.values, maps.label.values)


# ---- COG ------------------------------------------------------------------------------------------


# rioxarray 0.19's open_rasterio builds coordinates with affine's `*`, deprecated (pending) in
# affine 3.1; third-party and harmless
@pytest.mark.filterwarnings("ignore:Use `@` matmul:PendingDeprecationWarning")
def test_label_cog_reads_back_with_rasterio_and_rioxarray(tmp_path):
    import rasterio
    import rioxarray

    maps = make_maps()
    path = maps.miso.to_cog(str(tmp_path / "label.tif"))
    with rasterio.open(path) as src:
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert src.crs.to_epsg() == 3338
        assert src.transform == GRID.transform
        assert src.nodata == -1 and src.dtypes == ("int16",)
        assert np.array_equal(src.read(1), maps.label.values)
    back = rioxarray.open_rasterio(path)
    assert np.allclose(back.x.values, GRID.x) and np.allclose(back.y.values, GRID.y)
    back.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["label.tif"]  # no temporary left


def test_probability_cog_has_a_band_per_class(tmp_path):
    import rasterio

    maps = make_maps()
    path = to_cog(maps, tmp_path / "p.tif", variable="probability")
    with rasterio.open(path) as src:
        assert src.count == 2 and src.descriptions == ("absent", "present")
        assert np.isnan(src.nodata)
        assert np.array_equal(src.read(), maps.probability.values, equal_nan=True)


def test_cog_bad_inputs_leave_nothing(tmp_path):
    maps = make_maps()
    with pytest.raises(InputError, match="variable='entropy'.*probability, label, uncertainty"):
        to_cog(maps, tmp_path / "a.tif", variable="entropy")
    with pytest.raises(InputError, match="does not exist"):
        to_cog(maps, tmp_path / "no" / "a.tif")
    with pytest.raises(InputError, match="several variables"):
        to_cog(maps.drop_vars("label"), tmp_path / "a.tif")
    assert list(tmp_path.iterdir()) == []
    to_cog(maps, tmp_path / "a.tif")
    with pytest.raises(InputError, match="already exists"):
        to_cog(maps, tmp_path / "a.tif")
    to_cog(maps, tmp_path / "a.tif", variable="uncertainty", overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["a.tif"]


# ---- issue 11: unfinished stores cannot be misread ----------------------------------------------


def test_killed_write_reads_as_missing_and_is_refused_until_finished(tmp_path):
    """Unwritten chunks read as missing (not class 0), and the package refuses the store."""
    from miso_xr.exceptions import InputError
    from miso_xr.training.evaluate import evaluate

    store, log = tmp_path / "killed.zarr", tmp_path / "first.log"
    _kill_writer_after(store, log, chunks=2)
    done = _markers(store)
    maps = xr.open_zarr(store)
    assert "miso_xr_unfinished" in maps.attrs
    label = maps.label.values
    # a chunk never written: all missing, never 0 ("absent")
    missing = [(i, j) for i in range(3) for j in range(4) if f"{i}.{j}" not in done]
    i, j = missing[0]
    block = label[16 * i : 16 * (i + 1), 16 * j : 16 * (j + 1)]
    assert np.isnan(block).all()
    assert np.isnan(maps.probability.values[:, 16 * i : 16 * (i + 1), 16 * j : 16 * (j + 1)]).all()
    before = sorted(p.name for p in tmp_path.iterdir())
    for call in (
        lambda: maps.miso.to_cog(str(tmp_path / "m.tif")),
        lambda: maps.miso.plot(str(tmp_path / "m.png")),
        lambda: maps.miso.predict(object()),
        lambda: evaluate([object()], maps, None),
    ):
        with pytest.raises(
            InputError, match=r"unfinished Zarr write .*killed\.zarr.*Rerun the same"
        ):
            call()
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written
    to_zarr(make_maps(), store, progress=False)  # resumed to the end: the marker goes
    maps = xr.open_zarr(store)
    assert (
        "miso_xr_unfinished" not in maps.attrs
        and not np.isnan(maps.uncertainty.values[1:, 1:]).all()
    )
    maps.miso.to_cog(str(tmp_path / "m.tif"))  # now accepted


def test_a_write_computes_tile_by_tile_and_equals_one_compute(tmp_path, monkeypatch):
    import dask

    import miso_xr.io as io

    computes, made = [], []
    real_compute, real_tasks = dask.compute, io._region_tasks
    store = tmp_path / "t.zarr"

    def counting(*tasks, **kwargs):
        computes.append(len(tasks))
        return real_compute(*tasks, **kwargs)

    def making(ds, target, root, local, todo, options):
        # a tile's write tasks are made only once every tile before it is written: what a write
        # holds stays that of one tile, however large the map
        markers = store / io.PROGRESS / "chunks"
        made.append((len(todo), len(os.listdir(markers)) if markers.exists() else 0))
        return real_tasks(ds, target, root, local, todo, options)

    monkeypatch.setattr(dask, "compute", counting)
    monkeypatch.setattr(io, "_region_tasks", making)
    monkeypatch.setattr(io, "TILE", 2)
    maps = make_maps()
    to_zarr(maps, store, progress=False)
    ny, nx = len(maps.chunks["y"]), len(maps.chunks["x"])
    assert sum(computes) == ny * nx and max(computes) <= 4 and len(computes) > 1
    assert [n for n, _ in made] == computes
    assert [w for _, w in made] == np.cumsum([0, *computes[:-1]]).tolist()
    back = xr.open_zarr(store, mask_and_scale=False).load()
    whole = maps.compute()
    np.testing.assert_array_equal(back.label.values, whole.label.values)
    np.testing.assert_allclose(back.probability.values, whole.probability.values, atol=1e-6)
