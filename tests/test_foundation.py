"""The bottom rooms: import cost, accessor registration, grid, model spec, checkpoint format."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr

import miso_xr
from miso_xr.checkpoint import read_checkpoint, read_info, sha256_file, write_checkpoint
from miso_xr.cube.grid import Grid, make_cube, modality_array
from miso_xr.exceptions import CheckpointError, InputError, UnsafeCheckpointError
from miso_xr.spec import ModelSpec, Normalisation


def _spec(**kw) -> ModelSpec:
    base = dict(
        kind="miso",
        task="permafrost",
        classes=("absent", "present"),
        modalities=(("optical", ("B04", "B03")), ("covariates", ("elevation",))),
        window=64,
        stride=32,
        resolution=10.0,
        crs="EPSG:3338",
        normalisation=(
            ("optical", Normalisation((0.1, 0.2), (0.05, 0.06))),
            ("covariates", Normalisation((300.0,), (50.0,))),
        ),
        location=True,
    )
    base.update(kw)
    return ModelSpec(**base)


def test_import_is_light_and_registers_accessor():
    code = (
        "import sys, xarray as xr, miso_xr; "
        "assert 'torch' not in sys.modules and 'sklearn' not in sys.modules, 'heavy import'; "
        "assert hasattr(xr.Dataset, 'miso') and hasattr(xr.DataArray, 'miso')"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_public_names_resolve():
    for name in ("ModelSpec", "InputError", "HubError"):
        assert getattr(miso_xr, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        miso_xr.nope  # noqa: B018


def test_grid_pixel_centres_and_roundtrip():
    g = Grid.from_bounds((100.0, 0.0, 200.0, 50.0), 10.0, "EPSG:3338")
    assert g.shape == (5, 10)
    np.testing.assert_allclose(g.x[:2], [105.0, 115.0])
    np.testing.assert_allclose(g.y[:2], [45.0, 35.0])
    cube = make_cube(
        {"covariates": (np.arange(50.0).reshape(1, 5, 10), ["elevation"])}, g, chunks=4
    )
    assert Grid.from_dataset(cube) == g
    assert cube["covariates"].dtype == np.float32 and cube["covariates"].chunks is not None
    row, col = g.index(np.array([105.0, 199.0]), np.array([45.0, 1.0]))
    assert row.tolist() == [0, 4] and col.tolist() == [0, 9]
    assert modality_array(cube, "covariates").dims == ("band", "y", "x")


def test_grid_exact_bounds_unless_snapped():
    g = Grid.from_bounds((3.0, 0.0, 23.0, 17.0), 10.0)
    assert (g.left, g.top, g.width, g.height) == (3.0, 17.0, 2, 2)
    s = Grid.from_bounds((3.0, 0.0, 23.0, 17.0), 10.0, snap=True)
    assert (s.left, s.top, s.width, s.height) == (0.0, 20.0, 3, 2)


@pytest.mark.parametrize(
    ("bounds", "match"), [((10, 0, 0, 10), "right > left"), ((0, 10, 10, 0), "top > bottom")]
)
def test_grid_rejects_bad_bounds(bounds, match):
    with pytest.raises(InputError, match=match):
        Grid.from_bounds(bounds, 10.0)


def test_make_cube_rejects_wrong_shape():
    g = Grid("EPSG:3338", 0.0, 100.0, 10.0, 10, 10)
    with pytest.raises(InputError, match="modality 'optical'.*does not match"):
        make_cube({"optical": (np.zeros((2, 10, 9)), ["a", "b"])}, g)
    cube = make_cube({"optical": (np.zeros((2, 10, 10)), ["a", "b"])}, g)
    with pytest.raises(InputError, match="no modality 'sar'"):
        modality_array(cube, "sar")


def test_grid_needs_crs():
    ds = xr.Dataset(coords={"x": [5.0, 15.0], "y": [15.0, 5.0]})
    with pytest.raises(InputError, match="records no CRS"):
        Grid.from_dataset(ds)


def test_spec_json_roundtrip_and_errors():
    spec = _spec()
    assert ModelSpec.from_json(spec.to_json()) == spec
    assert spec.bands["optical"] == ("B04", "B03")
    with pytest.raises(CheckpointError, match="malformed"):
        ModelSpec.from_dict({"kind": "miso"})
    hash(spec)  # frozen and hashable: tokenizes cleanly for dask


def test_checkpoint_roundtrip(tmp_path):
    path = tmp_path / "m.safetensors"
    tensors = {"w": np.arange(6, dtype="float32").reshape(2, 3)}
    digest = write_checkpoint(path, tensors, spec=_spec(), config={"depth": 2}, training={"n": 5})
    assert digest == sha256_file(path)
    loaded, info = read_checkpoint(path)
    np.testing.assert_array_equal(loaded["w"], tensors["w"])
    assert info.spec == _spec() and info.config == {"depth": 2} and info.training == {"n": 5}
    assert info.summary()["modalities"]["optical"] == ["B04", "B03"]
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temporary left


def test_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match=r"must end in \.safetensors"):
        write_checkpoint(tmp_path / "m.bin", {}, spec=_spec(), config={})
    pkl = tmp_path / "m.pth"
    pkl.write_bytes(b"\x80\x04N.")
    with pytest.raises(UnsafeCheckpointError, match="pickle"):
        read_info(pkl)
    with pytest.raises(CheckpointError, match="does not exist"):
        read_info(tmp_path / "missing.safetensors")
    bad = tmp_path / "page.safetensors"
    bad.write_bytes(b"<html>error</html>")
    with pytest.raises(CheckpointError, match="not a readable"):
        read_info(bad)
    from safetensors.numpy import save_file

    other = tmp_path / "other.safetensors"
    save_file({"a": np.zeros(2, "float32")}, str(other), metadata={"x": "y"})
    with pytest.raises(CheckpointError, match="not a miso_xr checkpoint"):
        read_info(other)
    good = tmp_path / "good.safetensors"
    write_checkpoint(good, {"a": np.zeros(4, "float32")}, spec=_spec(), config={})
    data = good.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) - 8])
    with pytest.raises(CheckpointError):
        read_checkpoint(tmp_path / "cut.safetensors")
    meta = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])["__metadata__"]
    assert meta["format"] == "miso_xr"
