"""The lattice texture of MISO maps: window plans and blendings side by side, on one model.

Trains a tiny MISO on the synthetic demo scene (or loads ``--checkpoint``), predicts the scene's
map with the Gaussian blending of before (sigma W/8, stride W/2), with Hann (stride W/2), with the
default of new models (stride 5W/8, Tukey cross-fade; ``miso_xr.spec.default_stride``) and with
a stride of 3/4 of the window (Tukey), and draws them side by side with a zoom and the *lattice
component*: the map folded onto one ``stride x stride`` tile of its window lattice (the mean over
every tile). A map without lattice texture folds to a flat tile; the amplitude (max - min of the
folded tile, in probability) is printed and written to JSON. The fold of a map also keeps some of
the scene; ``--reference`` subtracts a map with windows every W/8 px (the lattice averaged out)
before folding, which leaves the lattice's part alone, and folds the same difference on the
neighbouring periods ``stride - 1`` and ``stride + 1``, where no lattice lines up: the *noise
floor* of that amplitude (it grows with the period, as fewer tiles are averaged). A lattice shows
as a ``lattice_to_noise`` ratio well above 1; the mean |map - reference| says how far each plan's
map lies from the many-window average. ``--holdout`` trains on the demo's split and scores each
map at the held-out points. Each map's difference from the Hann map (max, mean, label agreement)
and, for a trained model, its accuracy against the scene's hidden truth are reported too.

    python benchmarks/fig_lattice.py --epochs 8 --holdout --reference   # trains (minutes)
    python benchmarks/fig_lattice.py --epochs 0 --size 256 [--location]   # an untrained tiny

Writes ``--out`` (default ``benchmarks/results/lattice.png``) and a JSON beside it. Results
kept in docs/img: ``lattice_images_only.png`` (untrained, no location branch),
``lattice_with_location.png`` (untrained, with the location branch at its 20 m wavelength) and
``lattice_trained.png`` (trained 8 epochs, ``--holdout --reference``; ``--save`` then
``--checkpoint`` reuses the trained model).
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


def amplitude(tile: np.ndarray) -> float:
    """Max - min of a folded tile."""
    return float(np.nanmax(tile) - np.nanmin(tile))


def agreement(maps: dict, ref: str) -> dict:
    """Per map: max and mean |P - P_ref| (every class) and the share of equal labels."""
    a = maps[ref]
    out = {}
    for k, m in maps.items():
        if k == ref:
            continue
        d = np.abs(m.probability.values - a.probability.values)
        out[k] = {
            "max_abs_prob_diff": float(np.nanmax(d)),
            "mean_abs_prob_diff": float(np.nanmean(d)),
            "label_agreement": float(np.mean(m.label.values == a.label.values)),
        }
    return out


def heldout_balanced_accuracy(maps, obs) -> float:
    """Balanced accuracy of a map's labels at the observations' pixels (mean recall)."""
    label = maps.label.sel(x=obs.x.to_xarray(), y=obs.y.to_xarray(), method="nearest").values
    truth = obs.label.cat.codes.to_numpy()  # -1: unlabelled
    recalls = [np.mean(label[truth == c] == c) for c in np.unique(truth[truth >= 0])]
    return float(np.mean(recalls))


def main(argv: list[str] | None = None) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import miso_xr
    from miso_xr.infer.predict import predict
    from miso_xr.spec import default_stride

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", help="a trained tiny MISO of the demo scene")
    ap.add_argument("--epochs", type=int, default=8, help="0: an untrained (random) tiny MISO")
    ap.add_argument("--size", type=int, default=384)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--location", action="store_true", help="untrained model: with a location branch"
    )
    ap.add_argument(
        "--holdout",
        action="store_true",
        help="train on the demo's split (spatial blocks of 500 m, fold 0 held out) and score "
        "each map at the held-out points",
    )
    ap.add_argument("--save", help="write the trained model to this checkpoint")
    ap.add_argument(
        "--reference",
        action="store_true",
        help="also predict with windows every W/8 px (the lattice averaged out) and fold each "
        "map's difference from it: its lattice part without the scene's content",
    )
    ap.add_argument("--out", default=str(HERE / "results" / "lattice.png"))
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    scene, cube = scene_cube(args.size, args.seed)
    test_obs = None
    if args.holdout or (args.epochs and not args.checkpoint):
        obs = miso_xr.read_observations(scene.observations, label="permafrost", cube=cube)
        if args.holdout:  # the demo's evaluation split (miso_xr.demo.run_demo)
            folds = miso_xr.spatial_folds(obs, distance=500, k=5, method="block", seed=args.seed)
            test_obs = obs[(folds == 0).to_numpy()]
            obs = obs[(folds != 0).to_numpy()]
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
        model = miso_xr.train(
            cube, obs, task="permafrost", config="tiny", epochs=args.epochs, seed=args.seed
        )
        if args.save:
            model.save(args.save)
    win = model.spec.window
    half, long = win // 2, 3 * win // 4
    default = default_stride(win)
    plans = {  # name -> (stride, sigma)
        f"before: Gaussian sigma={win / 8:g}, stride {half} px": (half, win / 8),
        f"Hann, stride {half} px": (half, None),
        # the default of new models: (8/5)^2 windows per pixel, cross-faded over 3W/8
        f"Tukey, stride {default} px (default)": (default, None),
        # (4/3)^2 windows per pixel, cross-faded over W/4
        f"Tukey, stride {long} px": (long, None),
    }
    strides = {k: st for k, (st, _) in plans.items()}
    maps = {k: predict(cube, model, stride=st, sigma=sg).compute() for k, (st, sg) in plans.items()}
    probs = {k: m.probability.values[1] for k, m in maps.items()}
    ref = None
    if args.reference:
        # windows every W/8 px (64 a pixel), Hann: the window lattice averaged out. A map minus
        # this reference keeps its own lattice's part and drops the scene's content
        ref = predict(cube, model, stride=max(1, win // 8)).probability.values[1]
    res: dict = {
        "location_branch": bool(model.spec.location),
        "command": "python benchmarks/fig_lattice.py " + " ".join(argv or sys.argv[1:]),
        "window": win,
        "strides": strides,
        "lattice_amplitude": {},
        "seconds": None,
    }
    hann = f"Hann, stride {half} px"
    res["agreement_with_hann"] = agreement(maps, hann)
    if args.epochs or args.checkpoint:
        truth = scene.truth("permafrost").values
        res["map_accuracy_vs_truth"] = {
            k: float(np.mean(m.label.values == truth)) for k, m in maps.items()
        }
    if test_obs is not None:
        res["heldout_points"] = int(test_obs.label.notna().sum())
        res["heldout_balanced_accuracy"] = {
            k: heldout_balanced_accuracy(m, test_obs) for k, m in maps.items()
        }
    if ref is not None:
        res["reference_stride"] = max(1, win // 8)
        res["lattice_amplitude_vs_reference"] = {}
        res["noise_floor_vs_reference"] = {}
        res["lattice_to_noise"] = {}
        res["mean_abs_diff_vs_reference"] = {
            k: float(np.nanmean(np.abs(p - ref))) for k, p in probs.items()
        }
    fig, axes = plt.subplots(len(probs), 3, figsize=(15, 5 * len(probs)), constrained_layout=True)
    z = slice(args.size // 4, args.size // 4 + 3 * half)
    folds = {k: folded(p, strides[k]) for k, p in probs.items()}
    lattice = {k: folded(p - ref, strides[k]) for k, p in probs.items()} if ref is not None else {}
    # a random model's probabilities span little: stretch every map over the same range
    lo, hi = np.nanpercentile(np.stack(list(probs.values())), [1, 99])
    shown = lattice or folds
    lim = max(float(np.nanmax(np.abs(g - np.nanmean(g)))) for g in shown.values())
    for row, (name, p) in zip(axes, probs.items()):
        stride = strides[name]
        f = folds[name]
        res["lattice_amplitude"][name] = amplitude(f)
        if lattice:
            g = lattice[name]
            a = amplitude(g)
            res["lattice_amplitude_vs_reference"][name] = a
            # the same fold on the neighbouring periods, where no lattice lines up: what the
            # map's noise alone folds to with as many tiles (the amplitude grows with the period)
            noise = [amplitude(folded(p - ref, q)) for q in (stride - 1, stride + 1)]
            res["noise_floor_vs_reference"][name] = float(np.mean(noise))
            res["lattice_to_noise"][name] = a / float(np.mean(noise))
        row[0].imshow(p, vmin=lo, vmax=hi, cmap="viridis", interpolation="nearest")
        row[0].set_title(f"{name}: P(permafrost)")
        row[1].imshow(p[z, z], vmin=lo, vmax=hi, cmap="viridis", interpolation="nearest")
        for k in range(1, 3 * half // stride + 1):
            for ax_line in (row[1].axhline, row[1].axvline):
                ax_line(k * stride - 0.5 - (z.start % stride), color="w", lw=0.5, ls=":")
        row[1].set_title(f"zoom {z.stop - z.start} px, dotted: the {stride} px lattice")
        g = shown[name]
        im = row[2].imshow(g - np.nanmean(g), cmap="RdBu_r", vmin=-lim, vmax=lim)
        what = "map - reference" if lattice else "map"
        a = amplitude(g)
        floor = res.get("noise_floor_vs_reference", {}).get(name)
        extra = f" (noise {floor:.4f})" if floor is not None else ""
        row[2].set_title(f"{what}, folded: amplitude {a:.4f}{extra}")
        fig.colorbar(im, ax=row[2], shrink=0.8)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    res["seconds"] = time.perf_counter() - t0
    out.with_suffix(".json").write_text(json.dumps(res, indent=2))
    for name, amp in res["lattice_amplitude"].items():
        print(f"{name:40s} lattice amplitude {amp:.4f}")
    keys = (
        "lattice_amplitude_vs_reference",
        "noise_floor_vs_reference",
        "lattice_to_noise",
        "mean_abs_diff_vs_reference",
        "agreement_with_hann",
        "map_accuracy_vs_truth",
        "heldout_balanced_accuracy",
    )
    for key in keys:
        if key in res:
            print(key, json.dumps(res[key], indent=1))
    return res


if __name__ == "__main__":
    main()
