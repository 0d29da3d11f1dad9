"""Predict a map on a Dask cluster: the model is loaded once per worker, never shipped per task.

Run: ``.venv/bin/python examples/predict_on_a_cluster.py``. On a Pangeo deployment replace the
LocalCluster with your dask-gateway cluster (see docs/predict.md); the code below stays the same.
"""

from __future__ import annotations

import tempfile
from pathlib import Path


def main() -> None:
    import numpy as np
    from distributed import Client, LocalCluster

    import miso_xr
    from miso_xr.cube.grid import Grid, make_cube
    from miso_xr.infer.workers import PrewarmModel, load_counts, model_ref

    work = Path(tempfile.mkdtemp(prefix="miso_cluster_"))
    rng = np.random.default_rng(0)
    grid = Grid("EPSG:3338", 250_000.0, 1_650_000.0, 10.0, 512, 512)
    elevation = np.cumsum(rng.standard_normal((512, 512)), axis=0).astype("float32")
    cube = make_cube({"covariates": (elevation[None], ["elevation"])}, grid, chunks=256)

    # a few labelled points: permafrost above the median elevation (a toy rule)
    rows, cols = rng.integers(0, 512, 300), rng.integers(0, 512, 300)
    import pandas as pd

    table = pd.DataFrame({"x": grid.x[cols], "y": grid.y[rows]})
    table["permafrost"] = (elevation[rows, cols] > np.median(elevation)).astype(int)
    obs = miso_xr.read_observations(table, label="permafrost", crs="EPSG:3338", cube=cube)
    model = miso_xr.train(cube, obs, config="tiny", epochs=2)
    model.save(work / "toy.safetensors")

    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True) as cluster,
        Client(cluster) as client,
    ):
        client.register_plugin(PrewarmModel(model_ref(model)))  # every worker loads it once
        maps = cube.miso.predict(model)
        maps.miso.to_zarr(str(work / "toy.zarr"))
        print("model loads per worker:", client.run(load_counts))
    print(f"maps in {work / 'toy.zarr'}")


if __name__ == "__main__":
    main()
