"""Quick start: the public surface on the synthetic scene, served on loopback (offline).

Run: ``.venv/bin/python examples/quickstart.py`` (a few minutes on 2 CPU cores). With real data,
replace the served scene with ``catalog="planetary-computer"`` or ``"earth-search"`` and a bbox.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import xarray as xr

import miso_xr
from miso_xr.datasets.serving import range_server, stac_api
from miso_xr.datasets.synthetic import make_scene, write_scene, write_stac


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="miso_quickstart_"))
    scene = make_scene(seed=3, size=256)
    write_scene(scene, work / "scene")
    with (
        range_server(work / "scene") as files,
        stac_api(write_stac(work / "scene", files.url)) as api,
    ):
        cube = miso_xr.open_stac(
            bbox=scene.bbox_lonlat,
            datetime="2019-06-01/2023-08-31",
            catalog=api.url,
            modalities=("optical", "covariates"),
            chunks=128,
        ).persist()  # read while the loopback servers run
    print(cube)

    obs = miso_xr.read_observations(
        work / "scene" / "observations.csv", label="permafrost", cube=cube
    )
    print(obs.attrs["report"])
    # observations strung along roads and rivers chain into one DBSCAN cluster here: use blocks
    folds = miso_xr.spatial_folds(obs, distance=500, k=5, method="block")
    model = miso_xr.train(cube, obs[folds != 0], task="permafrost", config="tiny", epochs=5)
    rf = miso_xr.RandomForestBaseline(n_estimators=100).fit(cube, obs[folds != 0])
    report = miso_xr.evaluate([model, rf], cube, obs[folds == 0], names=["MISO", "RF"])
    print(report.summary()["text"].unstack())

    maps = cube.miso.predict(model)  # lazy
    maps.miso.to_zarr(str(work / "permafrost.zarr"))
    print(f"maps in {work / 'permafrost.zarr'}")
    written = xr.open_zarr(work / "permafrost.zarr")
    present = written.probability.sel(category="present")  # the class dimension is `category`
    print(f"mean P(permafrost present) = {float(present.mean()):.3f}")


if __name__ == "__main__":
    main()
