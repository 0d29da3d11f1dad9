"""MISO vs Random Forest vs the Pastick 2015 map on real permafrost observations (CPCRW, Alaska).

The Caribou-Poker Creeks Research Watershed observation map (Alter, Pradhan & Wagner 2025; 50 m,
EPSG:32606, 40,649 valid cells, 30.8 % permafrost) is the truth. Field work never covers a
watershed, so this benchmark plays a field campaign:

1. the area is cut into square spatial blocks (default 2 km); a seeded ~30 % of them are test
   blocks, never seen in training (their labels, not even for validation);
2. a few "field sites" are drawn on the stream network inside the training blocks, and a few dozen
   cells are sampled around each (a sparse, spatially clustered training set of a few hundred
   cells, like transects walked from a stream);
3. MISO (covariates, with or without location; the tiny architecture with a 32-cell = 1.6 km
   window) is trained on these with a validation set of whole sites held out of the training
   cells. Settings are chosen on that validation loss only (location on/off x lr 5e-4/1e-4, plus
   early stopping), never on the test blocks. The Random Forest (``miso_xr.RandomForestBaseline``)
   gets the same points and the same covariate bands plus lon/lat;
4. both predict dense maps; they and the binarised Pastick et al. (2015) statewide map are scored
   on every valid cell of the test blocks: accuracy, balanced accuracy, F1 (permafrost present) and
   ROC-AUC (Pastick is a 0/1 map, so its AUC equals its balanced accuracy).

Covariates: elevation, slope, aspect as in the data, their circular form (northness = cos aspect,
eastness = sin aspect), and the NLCD land cover one-hot (one band per class present). The cube is
built from the GeoTIFFs with rioxarray and :func:`miso_xr.cube.grid.make_cube` (derived bands need
numpy anyway; ``miso_xr.open_rasters`` reads the same files when only raw bands are wanted).

Run: ``.venv/bin/python benchmarks/bench_cpcrw.py`` (about 5-10 minutes on 2 CPU cores; ``--quick``
for a smoke run). Writes ``benchmarks/results/bench_cpcrw.json`` and ``bench_cpcrw.png``. Exits 0
with a message when ``../shared/data`` is absent.

Second protocol, ``--protocol extrapolation`` (issue 9; ``benchmarks/extrapolation.py`` has the
rules): field points in clusters around stream sites in the western 40 % of the watershed, scored
on every valid cell east of a 2 km gap (about 45 % of the watershed), never seen; settings chosen
on the validation sites nearest the gap; several seeds of the field work, mean and spread. Rows:
MISO from scratch, MISO pretrained (when ``miso_xr.pretrain`` exists), the reference RF
(``RandomForestBaseline`` defaults), a plain scikit-learn RF without coordinates, Pastick 2015.
Fixed settings (full): seeds 0 1 2; 10 sites >= 1 km apart, 30 cells within 400 m of each (300
points), 3 validation sites; MISO ``tiny`` with a 32-cell (1.6 km) crop, 12 epochs, batch 16,
patience 4, candidates location on/off chosen on validation loss; pretraining 5 epochs.
``--quick``: seeds 0 1, MISO ``micro`` (32-cell crop), 3 epochs, one candidate, 8 sites x 25
cells. Writes ``bench_cpcrw_extrapolation[_quick].json`` and ``.png``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "cpcrw_permafrost_alter2025"
RESULTS = ROOT / "benchmarks" / "results"
NLCD = {
    11: "water",
    31: "barren",
    41: "deciduous",
    42: "evergreen",
    43: "mixed_forest",
    51: "dwarf_shrub",
    52: "shrub",
    71: "herbaceous",
    90: "woody_wetland",
}
FILES = {
    "elevation": "cpcrw_elevation_m_50m_epsg32606.tif",
    "slope": "cpcrw_slope_deg_50m_epsg32606.tif",
    "aspect": "cpcrw_aspect_deg_50m_epsg32606.tif",
    "landcover": "cpcrw_landcover_nlcd_50m_epsg32606.tif",
    "truth": "cpcrw_observations_permafrost_50m_epsg32606.tif",
    "pastick": "cpcrw_pastick2015_prediction_50m_epsg32606.tif",
}
STREAMS = "original/Figure_1/CPCRW/Streamlines/CPCRW_arc.shp"


def load(data: Path) -> tuple[Any, dict[str, np.ndarray]]:
    """The grid and every layer as a 2-D float32 array (NaN outside the watershed)."""
    import rioxarray

    from miso_xr.cube.grid import Grid

    layers = {}
    for name, fname in FILES.items():
        da = rioxarray.open_rasterio(data / fname, masked=True).squeeze("band", drop=True)
        layers[name] = np.asarray(da.values, dtype="float32")
        if name == "elevation":
            t = da.rio.transform()
            grid = Grid(
                da.rio.crs.to_string(),
                float(t.c),
                float(t.f),
                float(t.a),
                da.sizes["x"],
                da.sizes["y"],
            )
    return grid, layers


def covariates(layers: dict[str, np.ndarray]) -> tuple[np.ndarray, list[str]]:
    """(band, y, x) covariate stack and band names (NaN wherever any input is NaN)."""
    asp = np.deg2rad(layers["aspect"])
    bands = [layers["elevation"], layers["slope"], layers["aspect"], np.cos(asp), np.sin(asp)]
    names = ["elevation", "slope", "aspect", "northness", "eastness"]
    lc = layers["landcover"]
    for code in sorted(int(c) for c in np.unique(lc[np.isfinite(lc)])):
        bands.append(np.where(np.isfinite(lc), (lc == code).astype("float32"), np.nan))
        names.append(f"nlcd_{NLCD.get(code, code)}")
    arr = np.stack(bands).astype("float32")
    arr[:, ~np.isfinite(arr).all(axis=0)] = np.nan
    return arr, names


def blocks(valid: np.ndarray, size: int, test_fraction: float, rng: np.random.Generator):
    """Block id per cell and a boolean test mask over cells (whole blocks held out)."""
    h, w = valid.shape
    rows, cols = np.meshgrid(np.arange(h) // size, np.arange(w) // size, indexing="ij")
    bid = rows * (w // size + 1) + cols
    ids = np.unique(bid[valid])
    # only blocks with a useful share of valid cells count; partial edge blocks join training
    counts = np.array([(bid[valid] == i).sum() for i in ids])
    big = ids[counts >= 0.25 * size * size]
    n_test = max(1, round(test_fraction * big.size))
    test_ids = rng.choice(big, size=n_test, replace=False)
    return bid, np.isin(bid, test_ids) & valid


def field_sites(
    grid: Any,
    train_mask: np.ndarray,
    truth: np.ndarray,
    data: Path,
    *,
    n_sites: int,
    per_site: int,
    radius: float,
    spacing: float,
    rng: np.random.Generator,
):
    """Sparse clustered training cells: ``per_site`` cells within ``radius`` m of stream sites."""
    import geopandas as gpd
    import pandas as pd

    streams = gpd.read_file(data / STREAMS).to_crs(grid.crs)
    pts = streams.geometry.get_coordinates().to_numpy()  # stream vertices
    r, c = grid.index(pts[:, 0], pts[:, 1])
    ok = (r >= 0) & (r < grid.height) & (c >= 0) & (c < grid.width)
    pts, r, c = pts[ok], r[ok], c[ok]
    pts = pts[train_mask[r, c]]
    sites: list[np.ndarray] = []
    for i in rng.permutation(len(pts)):  # bounded by the vertex count
        if all(np.hypot(*(pts[i] - s)) >= spacing for s in sites):
            sites.append(pts[i])
        if len(sites) == n_sites:
            break
    gx, gy = np.meshgrid(grid.x, grid.y)
    rows = []
    for k, s in enumerate(sites):
        near = np.flatnonzero(((np.hypot(gx - s[0], gy - s[1]) <= radius) & train_mask).ravel())
        take = rng.choice(near, size=min(per_site, near.size), replace=False)
        for cell in take:
            rr, cc = divmod(int(cell), grid.width)
            rows.append((grid.x[cc], grid.y[rr], int(truth[rr, cc]), k))
    df = pd.DataFrame(rows, columns=["x", "y", "code", "site"])
    df["label"] = pd.Categorical.from_codes(df.pop("code"), categories=["absent", "present"])
    df.attrs.update(task="permafrost", crs=grid.crs)
    return df, np.array(sites)


def scores(truth: np.ndarray, prob: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, roc_auc_score

    ok = np.isfinite(prob)
    t, p = truth[ok].astype(int), prob[ok]
    pred = (p >= 0.5).astype(int)
    return {
        "accuracy": float(accuracy_score(t, pred)),
        "balanced_accuracy": float(balanced_accuracy_score(t, pred)),
        "f1_present": float(f1_score(t, pred)),
        "roc_auc": float(roc_auc_score(t, p)),
        "n_cells": int(ok.sum()),
        "n_missing": int((~ok).sum()),
    }


def dense_probability(model: Any, cube: Any) -> tuple[np.ndarray, str]:
    """P(present) map: ``cube.miso.predict`` when the inference room is there, else a local loop."""
    import dask

    try:
        import tempfile

        import miso_xr.infer.predict  # noqa: F401

        with tempfile.TemporaryDirectory() as tmp:
            maps = cube.miso.predict(model, device="cpu", outputs=("probability",), cache_dir=tmp)
            prob = maps["probability"].sel({maps["probability"].dims[0]: "present"})
            with dask.config.set(scheduler="threads", num_workers=1):
                values = np.asarray(prob.compute().values, dtype="float32")
        return values, "cube.miso.predict"
    except ImportError:
        return _windowed(model, cube), "benchmark's own windowed loop"


def _windowed(model: Any, cube: Any) -> np.ndarray:
    """Fallback dense prediction: lattice windows at stride window//2, Gaussian-blended."""
    from miso_xr.cube.grid import Grid

    spec = model.spec
    grid = Grid.from_dataset(cube)
    w, s = spec.window, spec.stride
    mods = [m for m, _ in spec.modalities]
    full = {m: np.asarray(cube[m].values, dtype="float32") for m in mods}
    r0s = range(-s, grid.height, s)
    c0s = range(-s, grid.width, s)
    yy = np.arange(w) - (w - 1) / 2
    weight = np.exp(-(yy[:, None] ** 2 + yy[None, :] ** 2) / (2 * (w / 4) ** 2))
    acc = np.zeros(grid.shape)
    wsum = np.zeros(grid.shape)
    for r0 in r0s:
        for c0 in c0s:
            inputs = {}
            for m in mods:
                pad = np.full((full[m].shape[0], w, w), np.nan, dtype="float32")
                rs, re = max(r0, 0), min(r0 + w, grid.height)
                cs, ce = max(c0, 0), min(c0 + w, grid.width)
                pad[:, rs - r0 : re - r0, cs - c0 : ce - c0] = full[m][:, rs:re, cs:ce]
                inputs[m] = pad[None]
            if not np.isfinite(inputs[mods[0]]).any():
                continue
            x = grid.left + (c0 + np.arange(w) + 0.5) * grid.resolution
            y = grid.top - (r0 + np.arange(w) + 0.5) * grid.resolution
            p = model.predict_windows(inputs, x[None], y[None])[0, -1]
            rs, re = max(r0, 0), min(r0 + w, grid.height)
            cs, ce = max(c0, 0), min(c0 + w, grid.width)
            sub = (slice(rs - r0, re - r0), slice(cs - c0, ce - c0))
            acc[rs:re, cs:ce] += p[sub] * weight[sub]
            wsum[rs:re, cs:ce] += weight[sub]
    out = (acc / np.where(wsum > 0, wsum, np.nan)).astype("float32")
    out[~np.isfinite(full[mods[0]]).all(axis=0)] = np.nan
    return out


def figure(path: Path, maps: dict[str, np.ndarray], test: np.ndarray, obs: Any, grid: Any) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(maps), figsize=(4.2 * len(maps), 4.0), constrained_layout=True)
    ext = (grid.bounds[0], grid.bounds[2], grid.bounds[1], grid.bounds[3])
    for ax, (name, m) in zip(axes, maps.items()):
        im = ax.imshow(m, extent=ext, cmap="RdYlBu_r", vmin=0, vmax=1, interpolation="nearest")
        ax.contour(grid.x, grid.y, test.astype(float), levels=[0.5], colors="k", linewidths=0.6)
        ax.set_title(name, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0].scatter(obs["x"], obs["y"], s=2, c="k", label="training cells")
    axes[0].legend(loc="lower left", fontsize=7)
    fig.colorbar(im, ax=axes, shrink=0.8, label="permafrost (probability / class)")
    fig.suptitle(
        "CPCRW near-surface permafrost: black outlines = held-out test blocks", fontsize=10
    )
    fig.savefig(path, dpi=110)
    plt.close(fig)


def extrapolation(args: argparse.Namespace) -> int:
    """The extrapolation protocol on the watershed (see the module notes)."""
    import geopandas as gpd

    from miso_xr.cube.grid import make_cube
    from miso_xr.model.config import MisoConfig

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from extrapolation import Problem, Settings, figure, run_protocol, table

    grid, layers = load(args.data)
    truth, pastick = layers["truth"], layers["pastick"]
    arr, names = covariates(layers)
    cube = make_cube({"covariates": (arr, names)}, grid, chunks=128)
    usable = np.isfinite(truth) & np.isfinite(arr).all(axis=0)
    streams = gpd.read_file(args.data / STREAMS).to_crs(grid.crs)
    fixed = np.stack([1 - pastick, pastick]).astype("float32")  # a 0/1 map as probabilities
    problem = Problem(
        name="CPCRW permafrost (Alter et al. 2025), west -> east",
        task="permafrost",
        classes=("absent", "present"),
        cube=cube,
        grid=grid,
        truth=np.where(np.isfinite(truth), truth, -1).astype("int64"),
        usable=usable,
        site_xy=streams.geometry.get_coordinates().to_numpy(),  # stream vertices
        positive="present",
        fixed_maps={"Pastick et al. 2015": fixed},
    )
    if args.quick:
        settings = Settings(
            seeds=(0, 1),
            n_sites=8,
            per_site=25,
            config="micro",
            epochs=3,
            patience=None,
            pretrain_epochs=1,
        )
    else:
        tiny = MisoConfig.named("tiny").replace(name="tiny_50m", crop=args.window)
        settings = Settings(
            seeds=(0, 1, 2),
            n_sites=10,
            per_site=30,
            config=tiny,
            epochs=12,
            patience=4,
            candidates=({"location": True}, {"location": False}),
            pretrain_epochs=5,
        )
    settings.direction, settings.train_fraction, settings.gap = args.direction, 0.4, 40
    settings.radius, settings.spacing, settings.val_fraction = 400.0, 1000.0, 0.25
    if args.seeds:
        settings.seeds = tuple(args.seeds)
    if args.epochs is not None:
        settings.epochs = args.epochs
    t0 = time.perf_counter()
    print(f"{problem.name}: {len(settings.seeds)} seed(s)", flush=True)
    result = run_protocol(problem, settings)
    tag = "_quick" if args.quick else ""
    args.out.mkdir(parents=True, exist_ok=True)
    png = args.out / f"bench_cpcrw_extrapolation{tag}.png"
    figure(png, result, problem)
    result.pop("_figure")
    result.update(command=" ".join(sys.argv), bands=names, figure=str(png))
    path = args.out / f"bench_cpcrw_extrapolation{tag}.json"
    path.write_text(json.dumps(result, indent=2, default=str))
    print(table(result))
    print(f"wrote {path} and {png.name} in {time.perf_counter() - t0:.0f} s")
    return 0


def _rank(model: Any, select_on: str) -> tuple[float, ...]:
    """Candidates compared as train compares epochs: validation loss, or balanced accuracy
    (higher first) with the loss breaking ties."""
    tr = model.training
    if select_on == "val_balanced_accuracy" and "val_balanced_accuracy" in tr:
        return (-tr["val_balanced_accuracy"], tr["best_loss"])
    return (tr["best_loss"],)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--protocol",
        choices=("blocks", "extrapolation"),
        default="blocks",
        help="held-out blocks (default) or train on one part, score a distant part",
    )
    ap.add_argument(
        "--direction",
        choices=("east", "west", "north", "south"),
        default="east",
        help="extrapolation: where the test part lies from the training part",
    )
    ap.add_argument("--seeds", type=int, nargs="+", default=None, help="extrapolation seeds")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sites", type=int, default=10)
    ap.add_argument("--per-site", type=int, default=40)
    ap.add_argument("--block", type=int, default=40, help="block side in cells (40 = 2 km)")
    ap.add_argument("--window", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=None, help="default: 30 (blocks)")
    ap.add_argument("--lr", type=float, default=None, help="AdamW lr (default: the config's)")
    ap.add_argument("--no-location", action="store_true", help="MISO without location encoder")
    ap.add_argument(
        "--select-on",
        choices=("val_loss", "val_balanced_accuracy"),
        default="val_loss",
        help="what chooses MISO's kept epoch on the validation sites (train's select_on)",
    )
    ap.add_argument(
        "--no-select",
        dest="select",
        action="store_false",
        help="train once with --lr/--no-location instead of choosing location x lr on validation",
    )
    ap.add_argument(
        "--min-wavelength",
        type=float,
        default=None,
        help="location encoder's shortest wavelength, m (default: the config's, km-scale)",
    )
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 suits a busy box)")
    ap.add_argument("--quick", action="store_true", help="few points and epochs: a smoke run")
    args = ap.parse_args(argv)
    if not args.data.is_dir():
        print(f"skipped: shared data not found at {args.data} (see ../shared/data/README.md)")
        return 0
    if args.protocol == "extrapolation":
        import torch

        torch.set_num_threads(args.threads)
        return extrapolation(args)
    if args.quick:
        args.sites, args.per_site, args.epochs, args.select = 4, 15, 2, False
    if args.epochs is None:
        args.epochs = 30

    import torch

    import miso_xr
    from miso_xr.cube.grid import make_cube
    from miso_xr.model.config import MisoConfig

    torch.set_num_threads(args.threads)
    # the tiny architecture at 50 m: a 32-cell (1.6 km) window; location sinusoids from the
    # config's km-scale shortest wavelength (the paper's) to 100 km (the watershed is ~15 km)
    config = MisoConfig.named("tiny").replace(
        name="tiny_50m", crop=args.window, location_max_wavelength=100_000.0
    )
    if args.min_wavelength is not None:
        config = config.replace(location_min_wavelength=args.min_wavelength)

    t0 = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    grid, layers = load(args.data)
    truth, pastick = layers["truth"], layers["pastick"]
    valid = np.isfinite(truth)
    arr, names = covariates(layers)
    cube = make_cube({"covariates": (arr, names)}, grid, chunks=128)
    _, test = blocks(valid, args.block, 0.3, rng)
    train_mask = valid & ~test & np.isfinite(arr).all(axis=0)
    obs, sites = field_sites(
        grid,
        train_mask,
        truth,
        args.data,
        n_sites=args.sites,
        per_site=args.per_site,
        radius=400.0,
        spacing=2000.0,
        rng=rng,
    )
    print(
        f"{len(obs)} training cells at {len(sites)} stream sites "
        f"({obs['label'].value_counts().to_dict()}); {int(test.sum())} test cells "
        f"({100 * truth[test].mean():.1f} % permafrost)"
    )

    # settings chosen on the training blocks only: every candidate is trained with the same
    # validation sites (whole sites held out of the training cells) and the lowest validation
    # loss (or --select-on's score) wins; the test blocks are not looked at until the table
    if args.select:
        candidates = [
            {"location": loc, "lr": lr} for loc in ("contrastive", "off") for lr in (5e-4, 1e-4)
        ]
    else:
        loc = "off" if args.no_location else "contrastive"
        candidates = [{"location": loc, "lr": args.lr or config.lr}]
    t = time.perf_counter()
    tried = []
    model = None
    for cand in candidates:
        m = miso_xr.train(
            cube,
            obs,
            task="permafrost",
            config=config,
            epochs=args.epochs,
            batch_size=16,
            patience=8,
            val_distance=1000.0,  # sites are >= 2 km apart: validation holds out whole sites
            seed=args.seed,
            device="cpu",
            progress=True,
            select_on=args.select_on,
            **cand,
        )
        tried.append(
            {
                **cand,
                "val_loss": m.training.get("val_loss"),
                "val_balanced_accuracy": m.training.get("val_balanced_accuracy"),
                "best_epoch": m.training["best_epoch"],
            }
        )
        print(f"candidate {cand}: validation loss {tried[-1]['val_loss']:.4f}")
        if model is None or _rank(m, args.select_on) < _rank(model, args.select_on):
            model = m
    t_miso = time.perf_counter() - t
    t = time.perf_counter()
    # the reference RF (its defaults: point-pixel features, no lon/lat, 253 trees, depth 16)
    rf = miso_xr.RandomForestBaseline(seed=args.seed, window=args.window).fit(cube, obs)
    t_rf = time.perf_counter() - t
    rf_xy = miso_xr.RandomForestBaseline(coordinates=True, seed=args.seed, window=args.window).fit(
        cube, obs
    )
    # a plain scikit-learn forest on the same point features, without coordinates
    from sklearn.ensemble import RandomForestClassifier

    feats = arr.reshape(arr.shape[0], -1).T
    rows, cols = grid.index(obs["x"].to_numpy(), obs["y"].to_numpy())
    plain = RandomForestClassifier(random_state=args.seed, n_jobs=1).fit(
        arr[:, rows, cols].T, obs["label"].cat.codes.to_numpy()
    )
    ok = np.isfinite(feats).all(axis=1)
    p_plain = np.full(feats.shape[0], np.nan)
    p_plain[ok] = plain.predict_proba(feats[ok])[:, list(plain.classes_).index(1)]
    p_plain = p_plain.reshape(arr.shape[1:])

    t = time.perf_counter()
    p_miso, how = dense_probability(model, cube)
    p_rf, _ = dense_probability(rf, cube)
    p_rf_xy, _ = dense_probability(rf_xy, cube)
    t_pred = time.perf_counter() - t

    results = {
        f"MISO (tiny, location {model.training['location']})": scores(truth[test], p_miso[test]),
        "Random Forest (reference: no lon/lat)": scores(truth[test], p_rf[test]),
        "Random Forest + lon/lat (old default)": scores(truth[test], p_rf_xy[test]),
        "plain scikit-learn RF, no coordinates": scores(truth[test], p_plain[test]),
        "Pastick et al. 2015": scores(truth[test], pastick[test]),
    }
    pastick_all = float((pastick[valid] == truth[valid]).mean())
    print(f"\nheld-out test blocks ({int(test.sum())} cells), dense maps by {how}")
    print(f"{'model':38s} {'acc':>6s} {'bal.acc':>8s} {'F1':>6s} {'AUC':>6s}")
    for name, s in results.items():
        print(
            f"{name:38s} {s['accuracy']:6.3f} {s['balanced_accuracy']:8.3f} "
            f"{s['f1_present']:6.3f} {s['roc_auc']:6.3f}"
        )
    print(f"(Pastick agreement over all {int(valid.sum())} valid cells: {pastick_all:.3f})")
    tr = model.training
    summary = {
        "data": str(args.data.name),
        "seed": args.seed,
        "n_train_cells": len(obs),
        "n_sites": len(sites),
        "n_test_cells": int(test.sum()),
        "test_permafrost_share": float(truth[test].mean()),
        "bands": names,
        "window": args.window,
        "miso": {
            "chosen": {"location": tr["location"], "lr": tr["lr"]},
            "chosen_on": tr["chosen_on"],
            "candidates": tried,
            "epochs_run": tr["epochs"],
            "best_epoch": tr["best_epoch"],
            "val_loss": tr.get("val_loss"),
            "val_balanced_accuracy": tr.get("val_balanced_accuracy"),
            "n_validation": tr["n_validation"],
            "history": tr["history"],
            "train_seconds": round(t_miso, 1),
        },
        "rf_fit_seconds": round(t_rf, 1),
        "predict_seconds": round(t_pred, 1),
        "dense_prediction": how,
        "scores_test_blocks": results,
        "pastick_agreement_all_valid_cells": pastick_all,
        "total_seconds": round(time.perf_counter() - t0, 1),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_cpcrw.json").write_text(json.dumps(summary, indent=2))
    figure(
        args.out / "bench_cpcrw.png",
        {
            "truth (Alter et al. 2025)": np.where(valid, truth, np.nan),
            "MISO P(permafrost)": p_miso,
            "Random Forest P(permafrost)": p_rf,
            "Pastick et al. 2015": np.where(valid, pastick, np.nan),
        },
        test,
        obs,
        grid,
    )
    print(
        f"wrote {args.out / 'bench_cpcrw.json'} and bench_cpcrw.png in {summary['total_seconds']} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
