"""The lattice texture of MISO maps: the blending of before (Gaussian, sigma W/8) vs now (Hann).

Trains a tiny MISO on the synthetic demo scene (or loads ``--checkpoint``), predicts the scene's
map with both blendings (same model, windows and lattice), and with the cheaper plan of a stride
of 3/4 of the window (Tukey cross-fade), and draws them side by side with a zoom
and the *lattice component*: the map folded onto one ``stride x stride`` tile of the window
lattice (the mean over every tile). A map without lattice texture folds to a flat tile; the
amplitude (max - min of the folded tile, in probability) is printed and written to JSON.

    python benchmarks/fig_lattice.py --epochs 8        # trains (minutes), then predicts twice
    python benchmarks/fig_lattice.py --epochs 0 --size 256 [--location]   # an untrained tiny

Writes ``--out`` (default ``benchmarks/results/lattice.png``) and a JSON beside it. Results
kept: ``lattice_images_only.png`` (untrained, no location branch) and
``lattice_with_location.png`` (untrained, with the location branch at its 20 m wavelength).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def scene_cube(size: int, seed: int):
    from miso_xr.cube.grid import OPTICAL_BANDS, make_cube
    from miso_xr.cube.terrain import TERRAIN_BANDS, terrain
    from miso_xr.datasets.synthetic import make_scene

    scene = make_scene(seed=seed, size=size)
    cube = make_cube(
        {
            "optical": (scene.optical_composite(), OPTICAL_BANDS),
            "covariates": (terrain(scene.dem, scene.grid.resolution), TERRAIN_BANDS),
        },
        scene.grid,
        chunks=128,
    )
    return scene, cube


def folded(prob: np.ndarray, period: int) -> np.ndarray:
    """The mean of ``prob`` over every ``period x period`` tile of the lattice (NaN ignored)."""
    h, w = (s // period * period for s in prob.shape)
    tiles = prob[:h, :w].reshape(h // period, period, w // period, period)
    return np.nanmean(tiles, axis=(0, 2))


def main(argv: list[str] | None = None) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import miso_xr
    from miso_xr.infer.predict import predict

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", help="a trained tiny MISO of the demo scene")
    ap.add_argument("--epochs", type=int, default=8, help="0: an untrained (random) tiny MISO")
    ap.add_argument("--size", type=int, default=384)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--location", action="store_true", help="untrained model: with a location branch"
    )
    ap.add_argument("--out", default=str(HERE / "results" / "lattice.png"))
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    scene, cube = scene_cube(args.size, args.seed)
    if args.checkpoint:
        model = miso_xr.load(args.checkpoint)
    elif args.epochs == 0:
        sys.path.insert(0, str(HERE))
        import bench_predict

        # by default no location branch: the paper's prediction reads the images only (a
        # location head adds the texture of its shortest wavelength, 20 m here)
        model = bench_predict.make_model(
            {"window": 64, "stride": 32, "config": "tiny"}, location=args.location
        )
    else:
        obs = miso_xr.read_observations(scene.observations, label="permafrost", cube=cube)
        model = miso_xr.train(
            cube, obs, task="permafrost", config="tiny", epochs=args.epochs, seed=args.seed
        )
    win, stride = model.spec.window, model.spec.stride
    long = 3 * win // 4
    maps = {
        f"before: Gaussian sigma={win / 8:g} px": predict(cube, model, sigma=win / 8),
        "now: Hann": predict(cube, model),
        # the cheaper plan: (4/3)^2 windows per pixel instead of 4, cross-faded over W/4
        f"option: Tukey, stride {long} px": predict(cube, model, stride=long),
    }
    probs = {k: m.probability.values[1] for k, m in maps.items()}
    res: dict = {
        "location_branch": bool(model.spec.location),
        "command": "python benchmarks/fig_lattice.py " + " ".join(argv or sys.argv[1:]),
        "window": win,
        "stride": stride,
        "option_stride": long,
        "lattice_amplitude": {},
        "seconds": None,
    }
    fig, axes = plt.subplots(len(probs), 3, figsize=(15, 5 * len(probs)), constrained_layout=True)
    z = slice(args.size // 4, args.size // 4 + 3 * stride)
    strides = {k: (long if k.startswith("option") else stride) for k in probs}
    folds = {k: folded(p, strides[k]) for k, p in probs.items()}
    for row, (name, p) in zip(axes, probs.items()):
        stride = strides[name]
        f = folds[name]
        amp = float(np.nanmax(f) - np.nanmin(f))
        res["lattice_amplitude"][name] = amp
        # a random model's probabilities span little: stretch both maps over the same range
        lo, hi = np.nanpercentile(np.stack(list(probs.values())), [1, 99])
        row[0].imshow(p, vmin=lo, vmax=hi, cmap="viridis", interpolation="nearest")
        row[0].set_title(f"{name}: P(permafrost)")
        row[1].imshow(p[z, z], vmin=lo, vmax=hi, cmap="viridis", interpolation="nearest")
        for k in range(1, 3):
            for ax_line in (row[1].axhline, row[1].axvline):
                ax_line(k * stride - 0.5 - (z.start % stride), color="w", lw=0.5, ls=":")
        row[1].set_title(f"zoom, {z.stop - z.start} px (dotted: window lattice, {stride} px)")
        lim = max(float(np.nanmax(np.abs(g - np.nanmean(g)))) for g in folds.values())
        im = row[2].imshow(f - np.nanmean(f), cmap="RdBu_r", vmin=-lim, vmax=lim)
        row[2].set_title(f"map folded on the {stride} px lattice: amplitude {amp:.4f}")
        fig.colorbar(im, ax=row[2], shrink=0.8)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    res["seconds"] = time.perf_counter() - t0
    out.with_suffix(".json").write_text(json.dumps(res, indent=2))
    for name, amp in res["lattice_amplitude"].items():
        print(f"{name:40s} lattice amplitude {amp:.4f}")
    return res


if __name__ == "__main__":
    main()
