"""map_halo: the halo of dask's overlap, as one lazy layer whose tasks are made only when needed."""

from __future__ import annotations

import numpy as np
import pytest
from test_predict import ToyModel, toy_spec

from miso_xr.cube.grid import Grid, make_cube
from miso_xr.infer.halo import HaloLayer, map_halo
from miso_xr.infer.predict import predict


@pytest.mark.parametrize("depth", [(3, 2), (0, 4), (5, 0), (0, 0)])
def test_padded_blocks_equal_dask_overlap(depth):
    import dask.array as da

    rng = np.random.default_rng(0)
    x = da.from_array(rng.random((2, 23, 19)), chunks=((2,), (7, 5, 11), (6, 6, 7)))
    want = da.overlap.overlap(
        x, depth={0: 0, 1: depth[0], 2: depth[1]}, boundary={0: "none", 1: np.nan, 2: np.nan}
    )
    padded_chunks = ((2,), *(tuple(c + 2 * d for c in cs) for cs, d in zip(x.chunks[1:], depth)))
    got = map_halo(
        lambda b, block_id: b, x, depth, name="pad", chunks=padded_chunks, dtype=float, meta=x._meta
    )
    np.testing.assert_array_equal(got.compute(), want.compute())


def _huge_cube(side: int, chunks: int):
    import dask.array as da

    grid = Grid(
        "EPSG:3338", left=-1_100_000.0, top=2_400_000.0, resolution=10.0, width=side, height=side
    )
    opt = da.ones((3, side, side), dtype="float32", chunks=(3, chunks, chunks))
    elev = da.ones((1, side, side), dtype="float32", chunks=(1, chunks, chunks))
    return make_cube(
        {"optical": (opt, ("B04", "B03", "B02")), "covariates": (elev, ("elevation",))}, grid
    )


def test_a_statewide_graph_stays_lazy_and_culls_to_a_few_tasks(tmp_path):
    model = ToyModel(toy_spec(), seed=3)
    model.save(tmp_path / "toy.safetensors")
    cube = _huge_cube(side=60_000, chunks=200)  # 90,000 chunks
    maps = predict(cube, model, window=16, stride=8)
    graph = maps.probability.data.__dask_graph__()
    layers = [layer for layer in graph.layers.values() if isinstance(layer, HaloLayer)]
    assert len(layers) == 1 and not layers[0].is_materialized()
    # every layer of the map is lazy: nothing was listed per chunk while building it
    assert not any(layer.is_materialized() for layer in graph.layers.values())
    part = maps.probability[:, 20_000:20_200, 30_000:30_400]  # 2 chunks
    data = part.data
    culled = data.__dask_optimize__(data.__dask_graph__(), data.__dask_keys__())
    predict_tasks = [k for k in dict(culled) if "miso-predict" in str(k)]
    assert len(predict_tasks) == 2
    assert len(culled) < 40  # 2 predictions, their 12 neighbouring input blocks, the slicing
    values = part.values
    assert values.shape == (3, 200, 400) and np.isfinite(values).all()


def test_a_few_chunks_of_a_huge_map_equal_the_same_chunks_of_a_small_one(tmp_path):
    model = ToyModel(toy_spec(), seed=4)
    model.save(tmp_path / "toy.safetensors")
    rng = np.random.default_rng(2)
    small = rng.normal(100, 20, (4, 96, 96)).astype("float32")
    grid = Grid("EPSG:3338", left=0.0, top=960.0, resolution=10.0, width=96, height=96)
    cube = make_cube(
        {"optical": (small[:3], ("B04", "B03", "B02")), "covariates": (small[3:], ("elevation",))},
        grid,
        chunks=32,
    )
    whole = predict(cube, model, window=16, stride=8).probability.values
    centre = predict(cube, model, window=16, stride=8).probability[:, 32:64, 32:64].values
    np.testing.assert_array_equal(centre, whole[:, 32:64, 32:64])
