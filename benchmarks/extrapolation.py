"""The extrapolation protocol: train where the field work was, score far away (issue 9).

Shared by ``bench_cpcrw.py --protocol extrapolation`` (real data) and
``bench_extrapolation_synthetic.py`` (the demo's scene). One run of the protocol, per seed:

1. **Parts.** The usable cells are ranked along a direction (``"east"``: by column). The first
   ``train_fraction`` of them form the *training part*; cells more than ``gap`` cells further
   along form the *test part*; the band between is the gap. Every test cell is more than ``gap``
   cells (along the direction, hence in any distance) from every training cell. The parts do not
   depend on the seed.
2. **Field work.** ``n_sites`` sites are drawn at random among candidate positions (stream
   vertices, road or river pixels) inside the training part, at least ``spacing`` metres apart;
   ``per_site`` cells are drawn within ``radius`` metres of each site, inside the training part:
   a few hundred points in clusters, all in one part of the area. The seed moves the sites.
3. **Validation from the training part only.** The sites nearest the test side
   (``val_fraction`` of them, at least one) are validation: MISO's settings (the candidate grid)
   and its early stopping are chosen on them. The test part is not looked at until scoring.
   The Random Forests have no settings to choose and are fitted on every training-part point
   (validation sites included), which favours them, if anything.
4. **Scores** on every usable cell of the test part: balanced accuracy (mean recall over the
   classes present in the test part), the recall of the positive class (permafrost) for binary
   tasks, ROC-AUC (macro one-vs-rest over the classes present for multi-class tasks), accuracy.

Rows: MISO from scratch; MISO pretrained (``miso_xr.pretrain`` on the whole unlabelled cube,
then ``miso_xr.train(..., backbone=...)``; reported as "not available" while the package has no
``pretrain``); the reference RF (``miso_xr.RandomForestBaseline(seed=...)``, its defaults); a plain
scikit-learn ``RandomForestClassifier(random_state=seed)`` on the reference RF's point features
without coordinates; and fixed published maps the caller adds (e.g. Pastick et al. 2015).

MISO's training crops may read pixels of the gap and the test part (unlabelled crops are drawn
from the whole cube, as in any ``train`` call): those are inputs a user has everywhere, never
labels. The gap is wider than a labelled crop reaches (half a crop plus its random shift) in both
benchmarks, so no labelled crop reads a pixel of the test part.
"""

from __future__ import annotations

import inspect
import math
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "DIRECTIONS",
    "Problem",
    "Settings",
    "far_side_split",
    "run_protocol",
    "sample_clusters",
    "score",
    "validation_sites",
]

#: unit step (rows, cols) pointing from the training part towards the test part
DIRECTIONS = {"east": (0, 1), "west": (0, -1), "south": (1, 0), "north": (-1, 0)}
NOT_AVAILABLE = "not available"


# --------------------------------------------------------------------------------------------
# parts, field sites, validation


def far_side_split(
    usable: np.ndarray, *, direction: str = "east", train_fraction: float = 0.4, gap: int = 40
) -> tuple[np.ndarray, np.ndarray]:
    """Boolean (training part, test part) masks of ``usable`` cells, ``gap`` cells apart.

    >>> train, test = far_side_split(np.ones((4, 10), bool), train_fraction=0.3, gap=2)
    >>> train[0].astype(int).tolist(), test[0].astype(int).tolist()
    ([1, 1, 1, 0, 0, 0, 1, 1, 1, 1], [0, 0, 0, 0, 0, 0, 1, 1, 1, 1])
    """
    usable = np.asarray(usable)
    if usable.ndim != 2 or usable.dtype != bool:
        raise ValueError(f"usable must be a 2-D boolean mask, got {usable.dtype} {usable.shape}")
    if direction not in DIRECTIONS:
        raise ValueError(f"direction={direction!r}: expected one of {sorted(DIRECTIONS)}")
    if not 0 < train_fraction < 1:
        raise ValueError(f"train_fraction={train_fraction!r}: expected a share in (0, 1)")
    if int(gap) != gap or gap < 0:
        raise ValueError(f"gap={gap!r}: expected a whole number of cells >= 0")
    dr, dc = DIRECTIONS[direction]
    rows, cols = np.indices(usable.shape)
    u = dr * rows + dc * cols  # position along the direction, in cells
    if not usable.any():
        raise ValueError("usable has no True cell: nothing to split")
    cut = np.sort(u[usable])[max(0, math.ceil(train_fraction * usable.sum()) - 1)]
    train = usable & (u <= cut)
    test = usable & (u > cut + int(gap))
    if not test.any():
        raise ValueError(
            f"no usable cell lies more than gap={gap} cells {direction} of the training part "
            f"(train_fraction={train_fraction}); use a smaller gap or train_fraction"
        )
    return train, test


def sample_clusters(
    site_xy: np.ndarray,
    grid: Any,
    part: np.ndarray,
    *,
    n_sites: int,
    per_site: int,
    radius: float,
    spacing: float,
    rng: np.random.Generator,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Clustered field points in ``part``: (table of ``x y row col site``, sites ``(S, 2)``).

    Sites are drawn in random order from the candidates ``site_xy`` (projected x/y) that fall in
    ``part``, each kept when at least ``spacing`` m from those kept before, up to ``n_sites``.
    Around each, ``per_site`` distinct cells of ``part`` within ``radius`` m (pixel centres).
    """
    site_xy = np.asarray(site_xy, dtype="float64").reshape(-1, 2)
    r, c = grid.index(site_xy[:, 0], site_xy[:, 1])
    r, c = np.asarray(r), np.asarray(c)
    ok = (r >= 0) & (r < grid.height) & (c >= 0) & (c < grid.width)
    ok[ok] = part[r[ok], c[ok]]
    cand = site_xy[ok]
    sites: list[np.ndarray] = []
    for i in rng.permutation(len(cand)):
        if all(math.hypot(*(cand[i] - s)) >= spacing for s in sites):
            sites.append(cand[i])
            if len(sites) == n_sites:
                break
    if len(sites) < 2:
        raise ValueError(
            f"only {len(sites)} field site(s) fit in the training part ({len(cand)} candidates, "
            f"spacing {spacing} m); need at least 2 (one for validation)"
        )
    reach = int(math.ceil(radius / grid.resolution))
    rows = []
    for k, (sx, sy) in enumerate(sites):
        sr, sc = (int(v[0]) for v in grid.index(np.array([sx]), np.array([sy])))
        r0, r1 = max(0, sr - reach), min(grid.height, sr + reach + 1)
        c0, c1 = max(0, sc - reach), min(grid.width, sc + reach + 1)
        rr, cc = np.mgrid[r0:r1, c0:c1]
        near = np.hypot(grid.x[cc] - sx, grid.y[rr] - sy) <= radius
        near &= part[rr, cc]
        cells = np.flatnonzero(near)
        take = rng.choice(cells, size=min(per_site, cells.size), replace=False)
        for cell in take.tolist():
            pr, pc = int(rr.flat[cell]), int(cc.flat[cell])
            rows.append((float(grid.x[pc]), float(grid.y[pr]), pr, pc, k))
    table = pd.DataFrame(rows, columns=["x", "y", "row", "col", "site"])
    return table, np.array(sites)


def validation_sites(
    sites: np.ndarray, grid: Any, *, direction: str, fraction: float = 0.25
) -> np.ndarray:
    """Indices of the sites nearest the test side: ``ceil(fraction * S)``, at least 1, < S."""
    dr, dc = DIRECTIONS[direction]
    r, c = grid.index(sites[:, 0], sites[:, 1])
    u = dr * np.asarray(r) + dc * np.asarray(c)
    n_val = min(len(sites) - 1, max(1, math.ceil(fraction * len(sites))))
    return np.argsort(-u, kind="stable")[:n_val]


def labelled(points: pd.DataFrame, truth: np.ndarray, classes: tuple, task: str, crs: str):
    """An observation table (``x``, ``y``, Categorical ``label``) from class codes of ``truth``."""
    codes = truth[points["row"].to_numpy(), points["col"].to_numpy()].astype("int64")
    obs = points[["x", "y", "site"]].copy()
    obs["label"] = pd.Categorical.from_codes(codes, categories=list(classes))
    obs.attrs.update(task=task, crs=crs)
    return obs


# --------------------------------------------------------------------------------------------
# scores


def score(truth: np.ndarray, prob: np.ndarray, classes: tuple, positive: str | None = None):
    """Scores of probabilities ``prob`` ``(N, K)`` against class codes ``truth`` ``(N,)``."""
    from sklearn.metrics import roc_auc_score

    truth = np.asarray(truth, dtype="int64")
    pred = prob.argmax(axis=1)
    present = [k for k in range(len(classes)) if (truth == k).any()]
    recall = {classes[k]: float((pred[truth == k] == k).mean()) for k in present}
    aucs = [
        float(roc_auc_score(truth == k, prob[:, k]))
        for k in present
        if (truth != k).any()  # a class covering every test cell has no AUC
    ]
    out = {
        "balanced_accuracy": float(np.mean(list(recall.values()))),
        "accuracy": float((pred == truth).mean()),
        "roc_auc": float(np.mean(aucs)) if aucs else float("nan"),
        "n_cells": int(truth.size),
    }
    if positive is not None:
        out[f"recall_{positive}"] = recall.get(positive, float("nan"))
    else:
        out["recall_per_class"] = recall
    return out


# --------------------------------------------------------------------------------------------
# the problem, the settings, the run


@dataclass
class Problem:
    """What one extrapolation benchmark is about (built by the calling script)."""

    name: str
    task: str
    classes: tuple[str, ...]
    cube: Any  # the MISO cube (in memory or lazy; small)
    grid: Any  # its miso_xr.cube.grid.Grid
    truth: np.ndarray  # (H, W) int class codes, -1 where unknown
    usable: np.ndarray  # (H, W) bool: truth known and every input finite
    site_xy: np.ndarray  # (M, 2) candidate field-site positions (projected x/y)
    positive: str | None = None  # the class whose recall is reported ("present")
    fixed_maps: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (K, H, W)


@dataclass
class Settings:
    """Every setting of a run; stored in the JSON."""

    seeds: tuple[int, ...] = (0, 1, 2)
    direction: str = "east"
    train_fraction: float = 0.4
    gap: int = 40
    n_sites: int = 10
    per_site: int = 30
    radius: float = 400.0
    spacing: float = 1000.0
    val_fraction: float = 0.25
    config: Any = "tiny"
    window: int | None = None
    epochs: int = 20
    batch_size: int = 16
    patience: int | None = 6
    candidates: tuple[dict[str, Any], ...] = ({},)
    pretrain_epochs: int = 5
    progress: bool = True

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        cfg = self.config
        d["config"] = cfg if isinstance(cfg, str) else cfg.to_dict()
        return d


def _dense(model: Any, cube: Any) -> np.ndarray:
    """Class probabilities ``(K, H, W)`` of a predictor-protocol model over the whole cube."""
    import dask

    with tempfile.TemporaryDirectory() as tmp:
        maps = cube.miso.predict(model, device="cpu", outputs=("probability",), cache_dir=tmp)
        with dask.config.set(scheduler="threads", num_workers=1):
            return np.asarray(maps["probability"].values, dtype="float32")


def _features(cube: Any, modalities: tuple) -> np.ndarray:
    """``(F, H, W)`` cube values of ``((modality, bands), ...)`` in that order."""
    from miso_xr.cube.grid import band_dim

    parts = [cube[m].sel({band_dim(m): list(b)}).values for m, b in modalities]
    return np.concatenate(parts, axis=0).astype("float32")


# id(cube) -> (cube, backbone, how): the tasks of one scene share a cube and its pretraining
_BACKBONES: dict[int, tuple[Any, Any, str]] = {}


def _pretrain(cube: Any, settings: Settings, seed: int) -> tuple[Any, str]:
    """A backbone from ``miso_xr.pretrain`` when the package has it; else (None, why not)."""
    import miso_xr

    cached = _BACKBONES.get(id(cube))
    if cached is not None and cached[0] is cube:
        return cached[1], cached[2]
    if not hasattr(miso_xr, "pretrain"):
        return None, "miso_xr.pretrain does not exist yet on this checkout (issue 9)"
    params = inspect.signature(miso_xr.pretrain).parameters
    wanted = {
        "config": settings.config,
        "epochs": settings.pretrain_epochs,
        "window": settings.window,
        "seed": seed,
        "device": "cpu",
        "progress": settings.progress,
    }
    kw = {k: v for k, v in wanted.items() if k in params and v is not None}
    t = time.perf_counter()
    backbone = miso_xr.pretrain(cube, **kw)
    shown = {k: getattr(v, "name", v) for k, v in kw.items()}  # a config by its name
    how = f"pretrained on the whole cube with {shown} in {time.perf_counter() - t:.0f} s"
    _BACKBONES[id(cube)] = (cube, backbone, how)
    return backbone, how


def _train_miso(problem, fit_obs, val_obs, settings, seed, backbone=None):
    """Train each candidate; keep the lowest validation loss. (model, record of the tries)."""
    import miso_xr

    best, tried = None, []
    for cand in settings.candidates:
        kw: dict[str, Any] = {
            "task": problem.task,
            "config": settings.config,
            "epochs": settings.epochs,
            "batch_size": settings.batch_size,
            "patience": settings.patience,
            "val_obs": val_obs,
            "seed": seed,
            "device": "cpu",
            "progress": settings.progress,
            **cand,
        }
        if settings.window is not None:
            kw["window"] = settings.window
        if backbone is not None:
            kw["backbone"] = backbone
        m = miso_xr.train(problem.cube, fit_obs, **kw)
        tr = m.training
        tried.append(
            {
                **cand,
                "val_loss": tr.get("val_loss"),
                "val_balanced_accuracy": tr.get("val_balanced_accuracy"),
                "best_epoch": tr.get("best_epoch"),
                "epochs_run": tr.get("epochs"),
            }
        )
        if best is None or tr["best_loss"] < best.training["best_loss"]:
            best = m
    return best, tried


def _one_seed(problem: Problem, settings: Settings, seed: int, parts, backbone, why_not):
    """Scores (and maps) of every row for one seed of the field work."""
    from sklearn.ensemble import RandomForestClassifier

    import miso_xr

    train_part, test_part = parts
    rng = np.random.default_rng(seed)
    points, sites = sample_clusters(
        problem.site_xy,
        problem.grid,
        train_part,
        n_sites=settings.n_sites,
        per_site=settings.per_site,
        radius=settings.radius,
        spacing=settings.spacing,
        rng=rng,
    )
    obs = labelled(points, problem.truth, problem.classes, problem.task, problem.grid.crs)
    val = np.isin(
        obs["site"].to_numpy(),
        validation_sites(
            sites, problem.grid, direction=settings.direction, fraction=settings.val_fraction
        ),
    )
    k = len(problem.classes)
    maps: dict[str, np.ndarray | None] = {}
    info: dict[str, Any] = {
        "seed": seed,
        "n_points": len(obs),
        "n_sites": len(sites),
        "n_validation_points": int(val.sum()),
        "class_counts": {str(c): int(n) for c, n in obs["label"].value_counts().items()},
        "seconds": {},
    }

    t = time.perf_counter()
    model, tried = _train_miso(problem, obs[~val], obs[val], settings, seed)
    maps["MISO from scratch"] = _dense(model, problem.cube)
    info["seconds"]["MISO from scratch"] = round(time.perf_counter() - t, 1)
    info["miso_from_scratch"] = {"candidates": tried, "chosen_location": model.spec.location}

    if backbone is not None:
        t = time.perf_counter()
        model, tried = _train_miso(problem, obs[~val], obs[val], settings, seed, backbone)
        maps["MISO pretrained"] = _dense(model, problem.cube)
        info["seconds"]["MISO pretrained"] = round(time.perf_counter() - t, 1)
        info["miso_pretrained"] = {"candidates": tried}
    else:
        maps["MISO pretrained"] = None
        info["miso_pretrained"] = {NOT_AVAILABLE: why_not}

    t = time.perf_counter()
    rf = miso_xr.RandomForestBaseline(seed=seed).fit(problem.cube, obs)
    maps["reference RF"] = _dense(rf, problem.cube)
    info["seconds"]["reference RF"] = round(time.perf_counter() - t, 1)
    params = rf.forest_.get_params()  # what was fitted, whatever the defaults of the day
    info["reference_rf"] = {
        "features": rf.feature_names,
        **{
            p: params[p]
            for p in ("n_estimators", "max_depth", "min_samples_split", "min_samples_leaf")
        },
    }

    # the plain forest: the reference RF's point features, never lon/lat, scikit-learn defaults
    t = time.perf_counter()
    feats = _features(problem.cube, rf.spec.modalities)
    x_fit = feats[:, points["row"].to_numpy(), points["col"].to_numpy()].T
    plain = RandomForestClassifier(random_state=seed, n_jobs=1)
    plain.fit(x_fit, obs["label"].cat.codes.to_numpy())
    flat = feats.reshape(feats.shape[0], -1).T
    ok = np.isfinite(flat).all(axis=1)
    prob = np.full((k, flat.shape[0]), np.nan, dtype="float32")
    prob[:, ok] = 0.0
    prob[np.asarray(plain.classes_)[:, None], np.flatnonzero(ok)[None, :]] = plain.predict_proba(
        flat[ok]
    ).T
    maps["scikit-learn RF (no coordinates)"] = prob.reshape(k, *feats.shape[1:])
    info["seconds"]["scikit-learn RF (no coordinates)"] = round(time.perf_counter() - t, 1)
    info["plain_rf_features"] = [f"{m}:{b}" for m, bands in rf.spec.modalities for b in bands]

    for name, m in problem.fixed_maps.items():
        maps[name] = m

    scores: dict[str, Any] = {}
    t_codes = problem.truth[test_part]
    for name, m in maps.items():
        if m is None:
            scores[name] = NOT_AVAILABLE
            continue
        p = m[:, test_part].T
        if not np.isfinite(p).all():
            raise RuntimeError(
                f"{name}: {int((~np.isfinite(p)).any(1).sum())} test cells lack a value"
            )
        scores[name] = score(t_codes, p, problem.classes, problem.positive)
    return scores, maps, obs, info


def run_protocol(problem: Problem, settings: Settings) -> dict[str, Any]:
    """Every seed of the protocol; the summary (mean, spread) and what the figure needs."""
    import miso_xr  # noqa: F401 - registers .miso

    t0 = time.perf_counter()
    parts = far_side_split(
        problem.usable,
        direction=settings.direction,
        train_fraction=settings.train_fraction,
        gap=settings.gap,
    )
    backbone, why = _pretrain(problem.cube, settings, settings.seeds[0])
    per_seed, first = [], None
    for seed in settings.seeds:
        scores, maps, obs, info = _one_seed(problem, settings, seed, parts, backbone, why)
        per_seed.append({"scores": scores, **info})
        if first is None:
            first = {"maps": maps, "obs": obs}
        print(f"  seed {seed}: " + ", ".join(f"{n} {_ba(s)}" for n, s in scores.items()))
    rows = list(per_seed[0]["scores"])
    summary: dict[str, Any] = {}
    for name in rows:
        vals = [s["scores"][name] for s in per_seed]
        if vals[0] == NOT_AVAILABLE:
            summary[name] = NOT_AVAILABLE
            continue
        summary[name] = {
            metric: {
                "mean": float(np.mean([v[metric] for v in vals])),
                "std": float(np.std([v[metric] for v in vals], ddof=1)) if len(vals) > 1 else 0.0,
            }
            for metric, value in vals[0].items()
            if isinstance(value, float)
        }
    train_part, test_part = parts
    return {
        "problem": problem.name,
        "task": problem.task,
        "classes": list(problem.classes),
        "settings": settings.to_json(),
        "parts": {
            "train_cells": int(train_part.sum()),
            "test_cells": int(test_part.sum()),
            "gap_cells": int(problem.usable.sum() - train_part.sum() - test_part.sum()),
            "test_class_share": {
                c: float((problem.truth[test_part] == k).mean())
                for k, c in enumerate(problem.classes)
            },
        },
        "pretraining": why,
        "summary": summary,
        "per_seed": per_seed,
        "seconds": round(time.perf_counter() - t0, 1),
        "_figure": {**first, "parts": parts},
    }


def _ba(s: Any) -> str:
    return s if isinstance(s, str) else f"{s['balanced_accuracy']:.3f}"


# --------------------------------------------------------------------------------------------
# output


def table(result: dict[str, Any]) -> str:
    """The summary as a fixed-width text table (mean ± spread over seeds)."""
    pos = [
        k
        for k in next(v for v in result["summary"].values() if isinstance(v, dict))
        if k.startswith("recall_")
    ]
    cols = ["balanced_accuracy", *pos, "roc_auc"]
    heads = ["bal. acc.", *(p.replace("recall_", "recall ") for p in pos), "ROC-AUC"]
    n = len(result["per_seed"])
    lines = [
        f"{result['problem']}: {result['parts']['test_cells']} test cells, "
        f"mean ± sd over {n} seed(s)",
        f"{'model':34s}" + "".join(f"{h:>17s}" for h in heads),
    ]
    for name, s in result["summary"].items():
        if not isinstance(s, dict):
            lines.append(f"{name:34s}{s:>17s}")
            continue
        lines.append(
            f"{name:34s}" + "".join(f"{s[c]['mean']:>10.3f} ± {s[c]['std']:.3f}" for c in cols)
        )
    return "\n".join(lines)


def figure(path: Any, result: dict[str, Any], problem: Problem) -> None:
    """One PNG: the truth with the parts and the training points, then each model's map."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    fig_data = result["_figure"]
    maps, obs = fig_data["maps"], fig_data["obs"]
    train_part, test_part = fig_data["parts"]
    g = problem.grid
    # outline each part as a region of the area (holes of unusable cells filled)
    dr, dc = DIRECTIONS[result["settings"]["direction"]]
    u = dr * np.indices(g.shape)[0] + dc * np.indices(g.shape)[1]
    known = problem.truth >= 0
    train_region = known & (u <= u[train_part].max())
    test_region = known & (u >= u[test_part].min())
    ext = (g.bounds[0], g.bounds[2], g.bounds[1], g.bounds[3])
    binary = len(problem.classes) == 2
    k = len(problem.classes)
    cmap = "RdYlBu_r" if binary else ListedColormap(plt.get_cmap("tab10").colors[:k])

    def show(m: np.ndarray) -> np.ndarray:  # P(positive) or the most probable class
        if m.ndim == 2:
            return m
        if binary:
            return m[-1]
        return np.where(np.isfinite(m).all(0), np.nan_to_num(m).argmax(0), np.nan)

    truth = np.where(problem.truth >= 0, problem.truth, np.nan).astype("float32")
    panels = [("truth, parts and training points", truth)] + list(maps.items())
    ncol = min(3, len(panels))
    nrow = math.ceil(len(panels) / ncol)
    aspect = g.height / g.width
    fig, axes = plt.subplots(
        nrow,
        ncol,
        figsize=(4.6 * ncol + 1.2, (4.6 * aspect + 0.7) * nrow),
        squeeze=False,
        constrained_layout=True,
    )
    axes = axes.ravel()
    for ax in axes[len(panels) :]:
        ax.axis("off")
    seed0 = result["per_seed"][0]
    vmax = 1 if binary else k - 0.5
    vmin = 0 if binary else -0.5
    for ax, (name, m) in zip(axes, panels):
        ax.set_xticks([])
        ax.set_yticks([])
        if m is None:  # keep the panel's size: an empty map, then the words
            ax.imshow(np.full(g.shape, np.nan), extent=ext)
            ax.text(0.5, 0.5, NOT_AVAILABLE, ha="center", va="center", transform=ax.transAxes)
            ax.set_title(name, fontsize=9)
            continue
        im = ax.imshow(
            show(m), extent=ext, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest"
        )
        for part, colour in ((train_region, "k"), (test_region, "m")):
            ax.contour(g.x, g.y, part.astype(float), levels=[0.5], colors=colour, linewidths=0.8)
        s, s0 = result["summary"].get(name), seed0["scores"].get(name)
        sub = (
            f"\nbal. acc. {s0['balanced_accuracy']:.3f} (seed {seed0['seed']}), "
            f"mean {s['balanced_accuracy']['mean']:.3f}"
            if isinstance(s, dict)
            else ""
        )
        ax.set_title(name + sub, fontsize=9)
    axes[0].scatter(
        obs["x"],
        obs["y"],
        s=2,
        c="lime",
        label=f"training points (seed {seed0['seed']})",
    )
    axes[0].legend(loc="upper left", bbox_to_anchor=(0.0, 0.0), fontsize=7, frameon=False)
    cb = fig.colorbar(im, ax=axes.tolist(), shrink=0.6)
    if binary:
        cb.set_label(f"P({problem.positive}) / class")
    else:
        cb.set_ticks(range(k))
        cb.set_ticklabels(problem.classes, fontsize=7)
    fig.suptitle(
        f"{problem.name}: trained inside the black outline, scored inside the magenta one "
        f"(maps of seed {seed0['seed']})",
        fontsize=10,
    )
    fig.savefig(path, dpi=100)
    plt.close(fig)
