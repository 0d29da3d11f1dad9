"""Extrapolation on the demo's synthetic scene: train on the west side, score the far east side.

The protocol of ``benchmarks/extrapolation.py`` (read its docstring) on
``miso_xr.make_scene(seed=0, size=384)`` at 10 m (the demo's scene, 3.84 km square), whose
hidden truth is known on every pixel, for two tasks held out the same way and on the same field
points:

- ``permafrost`` (binary): balanced accuracy, permafrost recall, ROC-AUC;
- ``soil_order`` (7 classes): balanced accuracy over the orders present in the test part,
  macro one-vs-rest ROC-AUC.

Cube: the cloud-free optical composite (9 bands) and the six terrain covariates of the DEM
(``miso_xr.cube.terrain``), the paper's two modalities (no SAR, to keep MISO small here). Field
sites are road and river pixels of the training part (the demo's observations are sampled near
roads and rivers too).

Fixed settings (full): seeds 0 1 2; training part = the western 40 % of the scene, a 48-px
(480 m) gap, test part = everything east of it; 8 sites >= 250 m apart, 30 points within 120 m of
each (240 points); the 2 sites nearest the gap are validation. MISO ``tiny`` with a 32-px crop,
12 epochs, batch 16, patience 4; candidates location on/off, chosen on validation loss;
pretraining (when available) 5 epochs. ``--quick``: seed 0, MISO ``micro`` (32-px crop),
3 epochs, one candidate, 6 sites x 25 points: a few minutes on 2 busy cores.

Run: ``python benchmarks/bench_extrapolation_synthetic.py [--quick]``. Writes
``benchmarks/results/extrapolation_synthetic[_quick].json`` and ``.png``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from extrapolation import Problem, Settings, figure, run_protocol, table  # noqa: E402

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def problems(size: int, scene_seed: int) -> list[Problem]:
    """The permafrost and the soil-order problems on one synthetic scene."""
    import miso_xr
    from miso_xr.cube.grid import OPTICAL_BANDS, make_cube
    from miso_xr.cube.terrain import TERRAIN_BANDS, terrain
    from miso_xr.spec import SOIL_ORDERS

    scene = miso_xr.make_scene(seed=scene_seed, size=size)
    grid = scene.grid
    optical = scene.optical_composite()
    cov = terrain(scene.dem, grid.resolution)
    cube = make_cube(
        {"optical": (optical, OPTICAL_BANDS), "covariates": (cov, TERRAIN_BANDS)},
        grid,
        chunks=128,
    )
    usable = np.isfinite(optical).all(0) & np.isfinite(cov).all(0)
    rr, cc = np.nonzero(scene.rivers | scene.roads)
    sites = np.column_stack([grid.x[cc], grid.y[rr]])
    name = f"synthetic scene (seed {scene_seed}, {size} px at {grid.resolution:g} m)"
    return [
        Problem(
            name=f"{name}, permafrost",
            task="permafrost",
            classes=("absent", "present"),
            cube=cube,
            grid=grid,
            truth=scene.permafrost.astype("int64"),
            usable=usable,
            site_xy=sites,
            positive="present",
        ),
        Problem(
            name=f"{name}, soil order",
            task="soil_order",
            classes=tuple(SOIL_ORDERS),
            cube=cube,
            grid=grid,
            truth=scene.soil_order.astype("int64"),
            usable=usable,
            site_xy=sites,
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="micro MISO, 2 seeds, few epochs")
    ap.add_argument("--seeds", type=int, nargs="+", default=None)
    ap.add_argument("--size", type=int, default=384, help="scene side in pixels (10 m)")
    ap.add_argument("--scene-seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--tasks", nargs="+", default=["permafrost", "soil_order"])
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 suits a busy box)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)

    import torch

    from miso_xr.model.config import MisoConfig

    torch.set_num_threads(args.threads)
    if args.quick:
        settings = Settings(
            seeds=(0,),
            n_sites=6,
            per_site=25,
            config="micro",
            epochs=3,
            patience=None,
            pretrain_epochs=1,
        )
    else:
        tiny = MisoConfig.named("tiny").replace(name="tiny_32px", crop=32)
        settings = Settings(
            seeds=(0, 1, 2),
            n_sites=8,
            per_site=30,
            config=tiny,
            epochs=12,
            patience=4,
            candidates=({"location": True}, {"location": False}),
            pretrain_epochs=5,
        )
    # a 48-px (480 m) gap: wider than a labelled crop's reach (16 px + 8 px of shift)
    settings.direction, settings.train_fraction, settings.gap = "east", 0.4, 48
    # the western strip has ~390 road/river pixels: 250 m spacing leaves room for 8 sites
    settings.radius, settings.spacing = 120.0, 250.0
    if args.seeds:
        settings.seeds = tuple(args.seeds)
    if args.epochs:
        settings.epochs = args.epochs

    t0 = time.perf_counter()
    out: dict[str, object] = {"command": " ".join(sys.argv), "results": []}
    tag = "_quick" if args.quick else ""
    args.out.mkdir(parents=True, exist_ok=True)
    texts = []
    for problem in problems(args.size, args.scene_seed):
        if problem.task not in args.tasks:
            continue
        print(f"{problem.name}: {len(settings.seeds)} seed(s)", flush=True)
        result = run_protocol(problem, settings)
        png = args.out / f"extrapolation_synthetic_{problem.task}{tag}.png"
        figure(png, result, problem)
        result.pop("_figure")
        result["figure"] = str(png)
        out["results"].append(result)
        texts.append(table(result))
        print(texts[-1], flush=True)
    out["seconds"] = round(time.perf_counter() - t0, 1)
    path = args.out / f"extrapolation_synthetic{tag}.json"
    path.write_text(json.dumps(out, indent=2, default=str))
    print("\n\n".join(texts))
    print(f"wrote {path} and the PNGs beside it in {out['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
