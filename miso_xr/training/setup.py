"""What a training run starts from: checked observations, a validation set, normalisation.

Kept apart from the epoch loop (:mod:`miso_xr.training.loop`) so training and self-supervised
pretraining (:mod:`miso_xr.training.pretraining`) share it. Nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..cube.grid import Grid
from ..exceptions import InputError, ObservationError
from ..spec import TASK_CLASSES, Normalisation

__all__ = [
    "ValidationPlan",
    "band_stats",
    "check_obs",
    "plan_validation",
    "resolve_task",
    "validation_split",
]


def check_obs(obs: Any, name: str = "obs") -> pd.DataFrame:
    """The observations table, or one error naming what is wrong with it."""
    if not isinstance(obs, pd.DataFrame):
        raise ObservationError(
            f"{name} is a {type(obs).__name__}; expected the table of miso_xr.read_observations "
            "(columns x, y, label)"
        )
    missing = [c for c in ("x", "y", "label") if c not in obs.columns]
    if missing:
        raise ObservationError(
            f"{name} has no column {missing[0]!r}; it needs x, y (cube CRS) and label "
            f"(it has {list(map(str, obs.columns))})"
        )
    if not isinstance(obs["label"].dtype, pd.CategoricalDtype):
        raise ObservationError(
            f"{name}['label'] is {obs['label'].dtype}; expected a pandas Categorical whose "
            "categories are the class names in model order (use miso_xr.read_observations)"
        )
    if obs["label"].notna().sum() == 0:
        raise ObservationError(
            f"{name} has no labelled observation ({len(obs)} rows, all labels NaN); training needs "
            "labels"
        )
    return obs


def resolve_task(obs: pd.DataFrame, task: str | None) -> tuple[str, tuple[str, ...]]:
    """The task name and its classes in model order, checked against the built-in tasks."""
    classes = tuple(str(c) for c in obs["label"].cat.categories)
    obs_task = obs.attrs.get("task")
    if task is None:
        task = str(obs_task) if obs_task else "custom"
    elif obs_task and str(obs_task) != task:
        raise ObservationError(
            f"task={task!r} but the observations were read for task {obs_task!r}; read them "
            f"with label task {task!r} or pass task={obs_task!r}"
        )
    want = TASK_CLASSES.get(task)
    if want is not None and classes != want:
        raise ObservationError(
            f"task {task!r} has classes {list(want)} in this order; obs['label'] has categories "
            f"{list(classes)}"
        )
    if len(classes) < 2:
        raise ObservationError(
            f"obs['label'] has {len(classes)} class {list(classes)}; a classifier needs at least 2"
        )
    return task, classes


def validation_split(
    x: np.ndarray,
    y: np.ndarray,
    *,
    fraction: float = 0.15,
    distance: float,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Split points into training and validation by whole spatial clusters.

    Points closer than ``distance`` (chained, DBSCAN with ``min_samples=1``) share a cluster;
    clusters are drawn in a seeded random order into the validation set until it holds about
    ``fraction`` of the points. So no validation point lies within ``distance`` of a training
    point.

    Parameters
    ----------
    x, y
        Point coordinates (projected, same units as ``distance``).
    fraction
        Target share of points in the validation set (0 gives an empty validation set).
    distance
        Clustering distance.
    seed
        Seed of the cluster order.

    Returns
    -------
    train_idx, val_idx
        Positional indices into ``x``/``y``; empty ``val_idx`` when the points form one cluster.

    Examples
    --------
    >>> xs = np.array([0.0, 1.0, 100.0, 101.0, 200.0])
    >>> tr, va = validation_split(xs, np.zeros(5), fraction=0.4, distance=5.0, seed=0)
    >>> sorted(np.concatenate([tr, va]).tolist()) == list(range(5))
    True
    """
    from .folds import cluster_points

    x = np.asarray(x, dtype="float64")
    y = np.asarray(y, dtype="float64")
    n = x.size
    if not 0 <= fraction < 1:
        raise InputError(f"val_fraction={fraction!r}: must be in [0, 1)")
    if n == 0 or fraction == 0:
        return np.arange(n), np.zeros(0, dtype="int64")
    labels = cluster_points(x, y, distance=float(distance), method="dbscan")
    ids, sizes = np.unique(labels, return_counts=True)
    if ids.size < 2:
        return np.arange(n), np.zeros(0, dtype="int64")
    rng = np.random.default_rng(seed)
    order = rng.permutation(ids.size)
    target = fraction * n
    chosen: list[int] = []
    taken = 0
    for k in order:
        if taken >= target:
            break
        # skip a cluster that would overshoot a lot, unless nothing is chosen yet
        if chosen and taken + sizes[k] > 1.5 * target:
            continue
        if taken + sizes[k] >= n:  # never leave training empty
            continue
        chosen.append(int(ids[k]))
        taken += int(sizes[k])
    is_val = np.isin(labels, chosen)
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


@dataclass(frozen=True)
class ValidationPlan:
    """Which labelled points validate, and how that was decided (said in the summary)."""

    train_idx: np.ndarray
    val_idx: np.ndarray
    distance: float | None
    description: str

    @property
    def active(self) -> bool:
        return self.val_idx.size > 0


def plan_validation(
    x: np.ndarray,
    y: np.ndarray,
    *,
    fraction: float,
    distance: float | None,
    preferred: float,
    resolution: float,
    seed: int = 0,
    min_points: int = 5,
) -> ValidationPlan:
    """A spatial validation set wherever one is possible, and a sentence that says what it is.

    With ``distance`` given, that grouping only (any validation set it leaves). Otherwise the crop extent ``preferred`` first
    (no validation crop then overlaps a training crop); when it chains every point into one
    cluster (dense field campaigns at coarse resolution) or leaves a validation set of more than
    twice the wanted share, halve the distance down to two pixels and take the first that leaves
    at least ``min_points`` validation points. With none, the weights are chosen on the training
    loss, and the description says so.

    >>> plan = plan_validation(np.arange(40.0) * 30, np.zeros(40), fraction=0.2, distance=None,
    ...                        preferred=5000.0, resolution=10.0)
    >>> plan.active, plan.description.split(";")[0]
    (True, 'spatial clusters at 625 m (the crop extent, 5000 m, chains the points into one cluster)')
    """
    n = np.asarray(x).size
    if fraction == 0:
        return ValidationPlan(
            np.arange(n),
            np.zeros(0, "int64"),
            None,
            "off (val_fraction=0): weights chosen on the training loss",
        )
    candidates = [float(distance)] if distance is not None else []
    if distance is None:
        d = float(preferred)
        while d >= 2 * resolution:
            candidates.append(d)
            d /= 2
    for d in candidates:
        tr, va = validation_split(x, y, fraction=fraction, distance=d, seed=seed)
        # a distance the user gave is used as it is; an automatic one must leave a useful set
        too_big = distance is None and va.size > max(2 * fraction * n, min_points)
        need = 1 if distance is not None else min(min_points, max(1, n // 2))
        if va.size >= need and not too_big:
            if d == preferred or distance is not None:
                how = f"spatial clusters at {d:.0f} m"
            else:
                how = (
                    f"spatial clusters at {d:.0f} m (the crop extent, {preferred:.0f} m, chains "
                    "the points into one cluster)"
                )
            return ValidationPlan(tr, va, d, f"{how}; {va.size} points")
    why = (
        f"every grouping from {candidates[0]:.0f} m down to {candidates[-1]:.0f} m"
        if candidates
        else "no grouping"
    )
    return ValidationPlan(
        np.arange(n),
        np.zeros(0, "int64"),
        None,
        f"off: {why} leaves no validation set of at least {min_points} points; weights chosen "
        "on the training loss",
    )


def band_stats(arrays: Sequence[np.ndarray]) -> Normalisation:
    """nan-aware per-band mean and std over ``(N, C, H, W)`` arrays (float64 sums)."""
    c = arrays[0].shape[1]
    s = np.zeros(c)
    s2 = np.zeros(c)
    cnt = np.zeros(c)
    for a in arrays:
        v = a.transpose(1, 0, 2, 3).reshape(c, -1).astype("float64")
        ok = np.isfinite(v)
        v = np.where(ok, v, 0.0)
        s += v.sum(1)
        s2 += (v * v).sum(1)
        cnt += ok.sum(1)
    mean = np.where(cnt > 0, s / np.maximum(cnt, 1), 0.0)
    var = np.where(cnt > 0, s2 / np.maximum(cnt, 1) - mean**2, 1.0)
    std = np.sqrt(np.maximum(var, 0.0))
    std = np.where(std > 1e-6, std, 1.0)  # constant band: leave it centred, unscaled
    return Normalisation(mean=tuple(float(v) for v in mean), std=tuple(float(v) for v in std))


#: SatlasPretrain's Sentinel-2 input scaling, as reflectance divisors (DN / 3000 for the RGB
#: bands of its 8-bit TCI product, DN / 8160 for the others; DN = reflectance x 10000)
SATLAS_S2_SCALE = {"B04": 0.3, "B03": 0.3, "B02": 0.3}
SATLAS_S2_OTHER = 0.816


def satlas_normalisation(features: Sequence[str]) -> Normalisation:
    """The scaling a SatlasPretrain Sentinel-2 backbone was trained with (no z-scores)."""
    return Normalisation(
        mean=tuple(0.0 for _ in features),
        std=tuple(SATLAS_S2_SCALE.get(b, SATLAS_S2_OTHER) for b in features),
    )


def categorical_bands(cube: Any, modalities: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Bands a cube marks categorical (``cube[m].attrs["categorical"]``), per modality."""
    out: dict[str, tuple[str, ...]] = {}
    for m in modalities:
        cats = cube[m].attrs.get("categorical") or ()
        if isinstance(cats, str):
            cats = (cats,)
        if cats:
            out[m] = tuple(str(c) for c in cats)
    return out


def spec_extra(grid: Grid, encoding: Any) -> tuple[tuple[str, str], ...]:
    """``ModelSpec.extra`` of a run: the region centre and, when any, the input encoding."""
    from ..model.inputs import EXTRA_KEY

    origin = region_origin(grid)
    extra = [("location_origin", f"{origin[0]!r},{origin[1]!r}")]
    if encoding.rules:
        extra.append((EXTRA_KEY, encoding.to_json()))
    return tuple(sorted(extra))


def region_origin(grid: Grid) -> tuple[float, float]:
    """Centre of the cube's bounds: location features are taken relative to it."""
    return (
        grid.left + grid.width * grid.resolution / 2,
        grid.top - grid.height * grid.resolution / 2,
    )
