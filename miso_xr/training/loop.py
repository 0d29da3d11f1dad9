"""Train MISO on sparse field observations.

The training set is a few hundred or thousand labelled points, not dense label maps. Each point
gives one crop of every modality (read lazily, see :mod:`miso_xr.training.crops`), shifted at random
each epoch so the point is not always at the crop centre. Every crop is queried at
``1 + n_random + grid**2`` continuous positions (1 + 10 + 6x6 = 47 by default; the brief says 51 for these three parts, which do not add up to 51: docs/model.md):

- the labelled point itself (its label, supervised loss);
- ``n_random`` random positions, filled first with other *training* observations that fall inside
  the crop (their labels), the rest unlabelled;
- a ``grid x grid`` lattice of positions, unlabelled unless an observation sits on one.

Every query feeds the contrastive losses (symmetric InfoNCE, satellite <-> covariate and
visual <-> location); only labelled queries feed the classification loss. Random "unlabelled tiles"
(crops placed anywhere on the cube) add contrastive signal where nobody went in the field.

A validation set is held out from the training observations by whole spatial clusters (DBSCAN
on the points' coordinates with a distance of one crop), so no validation crop overlaps a training
crop; early stopping watches the validation loss and the best weights are restored. Any test set
must be removed from ``obs`` by the caller before training (see ``miso_xr.spatial_folds``).

torch is imported inside the functions here; ``miso_xr.training`` imports this module lazily.
"""

from __future__ import annotations

import copy
import hashlib
import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from .._progress import show_progress
from ..cube.grid import Grid, select_modalities
from ..exceptions import InputError, ObservationError
from ..spec import TASK_CLASSES, ModelSpec, Normalisation
from .crops import Crops, extract_crops
from .features import on_crs, points_xy
from .provenance import points_record

__all__ = ["TASK_CLASSES", "train", "predict_points", "validation_split"]

# classes of the built-in tasks, in model order (see docs/architecture.md)

# --------------------------------------------------------------------------------------------
# inputs


def _check_obs(obs: Any, name: str = "obs") -> pd.DataFrame:
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


def _resolve_task(obs: pd.DataFrame, task: str | None) -> tuple[str, tuple[str, ...]]:
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
    ``fraction`` of the points. So no validation point lies within ``distance`` of a training point.

    Parameters
    ----------
    x, y
        Point coordinates (projected, same units as ``distance``).
    fraction
        Target share of points in the validation set (0 gives an empty validation set).
    distance
        Clustering distance; training uses one crop's extent so crops do not overlap.
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


# --------------------------------------------------------------------------------------------
# batches


class _Queries:
    """Query positions (crop pixel units, continuous) and labels of every crop in a batch."""

    def __init__(self, n_random: int, grid: int, window: int) -> None:
        self.n_random = n_random
        self.grid = grid
        self.window = window
        # grid queries at the centres of a grid x grid partition of the crop
        g = (np.arange(grid) + 0.5) * window / grid
        gr, gc = np.meshgrid(g, g, indexing="ij")
        self.grid_rc = np.column_stack([gr.ravel(), gc.ravel()])

    @property
    def per_crop(self) -> int:
        return 1 + self.n_random + self.grid * self.grid


def _normalise(arr: np.ndarray, stats: Normalisation) -> np.ndarray:
    """(x - mean) / std per band; NaN (nodata, outside the grid) -> 0, the band mean."""
    mean = np.asarray(stats.mean, dtype="float32")[None, :, None, None]
    std = np.asarray(stats.std, dtype="float32")[None, :, None, None]
    out = (arr - mean) / std
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0).astype("float32", copy=False)


def _band_stats(arrays: Sequence[np.ndarray]) -> Normalisation:
    """nan-aware per-band mean and std over crops (float64 sums, so large sets stay exact)."""
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


def _query_tensor(rc: np.ndarray, window: int) -> np.ndarray:
    """Crop pixel units (row, col) -> grid_sample convention (x, y) in [-1, 1]."""
    q = np.empty(rc.shape, dtype="float32")
    q[..., 0] = -1.0 + 2.0 * rc[..., 1] / window
    q[..., 1] = -1.0 + 2.0 * rc[..., 0] / window
    return q


def _location(grid: Grid, row0: np.ndarray, col0: np.ndarray, rc: np.ndarray) -> np.ndarray:
    """Projected x/y (metres) of queries at crop pixel units ``rc`` of crops at ``row0, col0``.

    float64, as the model's dense prediction uses: float32 loses ~0.5 m at Alaska's northings.
    """
    loc = np.empty(rc.shape, dtype="float64")
    loc[..., 0] = grid.left + (col0[:, None] + rc[..., 1]) * grid.resolution
    loc[..., 1] = grid.top - (row0[:, None] + rc[..., 0]) * grid.resolution
    return loc


# --------------------------------------------------------------------------------------------
# model pieces


def _resolve_config(config: Any) -> Any:
    from ..model.config import MisoConfig

    if isinstance(config, (str, MisoConfig)):
        return MisoConfig.named(config)
    raise InputError(f"config={config!r}: expected 'tiny', 'base' or a miso_xr.MisoConfig instance")


def _config_dict(cfg: Any) -> dict[str, Any]:
    import dataclasses

    if hasattr(cfg, "to_dict"):
        return dict(cfg.to_dict())
    return dataclasses.asdict(cfg)


def _pick_device(device: str) -> Any:
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device={device!r} but CUDA is not available here; use 'cpu' or 'auto'")
    return dev


def _has_contrastive(mods: Sequence[str], location: bool) -> bool:
    """Whether :func:`miso_xr.model.losses.miso_loss` has a contrastive term for these inputs."""
    satellite = "optical" in mods or "sar" in mods
    return (satellite and "covariates" in mods) or ("optical" in mods and location)


def _supervised_loss(logits: Any, labels: Any, n_classes: int) -> Any:
    from ..model.losses import supervised_loss

    return supervised_loss(logits, labels, binary=n_classes == 2)


def _probabilities(logits: Any, n_classes: int) -> Any:
    import torch

    if n_classes == 2:
        p = torch.sigmoid(logits[..., 0].float())
        return torch.stack([1 - p, p], dim=-1)
    return torch.softmax(logits.float(), dim=-1)


def _predict_crops(
    model: Any,
    crops: Crops,
    qr: np.ndarray,
    qc: np.ndarray,
    *,
    batch_size: int = 64,
    device: str = "auto",
) -> np.ndarray:
    """Probabilities ``(N, K)`` of the query at pixel ``(qr[i, 0], qc[i, 0])`` of each crop."""
    import torch

    spec = model.spec
    net = model.net
    dev = _pick_device(device)
    stats = spec.stats
    mods = [m for m, _ in spec.modalities]
    k = len(spec.classes)
    window = crops.size
    rc = np.stack([qr[:, :1] + 0.5, qc[:, :1] + 0.5], axis=-1).astype("float64")
    was_training = net.training
    net.eval()
    if hasattr(model, "to"):
        model.to(dev)  # keeps the model's own record of its device in step
    else:
        net.to(dev)
    out = np.empty((len(crops), k), dtype="float32")
    try:
        with torch.no_grad():
            for s in range(0, len(crops), batch_size):
                sl = slice(s, s + batch_size)
                images = {
                    m: torch.from_numpy(_normalise(crops.arrays[m][sl], stats[m])).to(dev)
                    for m in mods
                }
                q = torch.from_numpy(_query_tensor(rc[sl], window)).to(dev)
                loc = None
                if spec.location:
                    loc = torch.from_numpy(
                        _location(crops.grid, crops.row0[sl], crops.col0[sl], rc[sl])
                    ).to(dev)
                with _autocast(dev):
                    logits = net(images, q, loc).logits
                out[sl] = _probabilities(logits, k)[:, 0].cpu().numpy()
    finally:
        net.train(was_training)
    return out


def _autocast(dev: Any) -> Any:
    """bf16/fp16 autocast on CUDA only; CPU stays fp32 (CPU bf16 is far slower here)."""
    import contextlib

    import torch

    if dev.type != "cuda":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


def predict_points(
    model: Any,
    cube: xr.Dataset,
    x: np.ndarray | Sequence[float] | pd.DataFrame,
    y: np.ndarray | Sequence[float] | None = None,
    *,
    batch_size: int = 64,
    device: str = "auto",
) -> np.ndarray:
    """Class probabilities ``(N, K)`` of a MISO model at points (crops centred on them).

    ``x`` may be an observations table (its ``x``/``y`` columns are used), so
    ``predict_points(model, cube, obs)`` works as ``model.predict_points(cube, obs)`` does on
    models returned by :func:`train`.

    Examples
    --------
    >>> p = predict_points(model, cube, obs)  # doctest: +SKIP
    >>> p.shape == (len(obs), len(model.spec.classes))  # doctest: +SKIP
    True
    """
    from .crops import predict_points as _pp

    if isinstance(x, pd.DataFrame):  # in the table's CRS: projected onto the cube's
        x, y = points_xy(x, Grid.from_dataset(cube).crs)
    if y is None:
        raise InputError("predict_points needs y coordinates (or an observations table as x)")
    return _pp(model, cube, x, y, batch_size=batch_size, device=device)


def _attach_predict_points(model: Any) -> Any:
    import types

    def _method(self: Any, cube: xr.Dataset, obs: Any, **kw: Any) -> np.ndarray:
        return predict_points(self, cube, obs, **kw)

    try:
        model.predict_points = types.MethodType(_method, model)
    except AttributeError:  # a class with __slots__ or a property of that name: leave it
        pass
    return model


# --------------------------------------------------------------------------------------------
# train


def train(
    cube: xr.Dataset,
    obs: pd.DataFrame,
    *,
    task: str | None = None,
    config: Any = "tiny",
    modalities: Sequence[str] | None = None,
    location: bool = True,
    window: int | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    weight_decay: float | None = None,
    warmup: float | None = None,
    grad_clip: float | None = None,
    val_fraction: float = 0.15,
    val_obs: pd.DataFrame | None = None,
    val_distance: float | None = None,
    patience: int | None = 5,
    n_random: int | None = None,
    grid: int | None = None,
    unlabelled_crops: int | None = None,
    contrastive_weight: float | None = None,
    max_shift: int | None = None,
    seed: int = 0,
    device: str = "auto",
    progress: bool | None = None,
) -> Any:
    """Train a MISO model on sparse labelled points of a cube.

    Parameters
    ----------
    cube
        A MISO cube (lazy is fine: only crops around the points and the unlabelled tiles are read).
    obs
        Observations table (``miso_xr.read_observations``): ``x``, ``y`` in the cube's CRS and a
        Categorical ``label`` whose categories are the classes in model order. Rows with NaN label
        only label nothing; rows outside the cube are dropped (counted in the summary).
    task
        Task name; default ``obs.attrs["task"]``. ``"permafrost"`` and ``"soil_order"`` check the
        classes against the built-in ones.
    config
        ``"tiny"``, ``"base"`` or a :class:`~miso_xr.model.config.MisoConfig`.
    modalities
        Image modalities to use, in this order (default: all of the cube's).
    location
        Use the location encoder (projected x/y of each query).
    window
        Crop side in pixels (default ``config.crop``; a multiple of ``config.reduction`` that
        fits in the cube).
    epochs, batch_size, lr, weight_decay
        AdamW settings; unset ones come from the config (``"base"`` is the paper's: 40 epochs,
        batch 32, lr 5e-5, weight decay 0.01).
    warmup, grad_clip
        Linear warm-up in epochs (may be fractional) before a cosine decay to 0 (default
        ``config.warmup_epochs``); gradient-norm clip (default ``config.grad_clip``; 0: none).
    val_fraction, val_obs, val_distance
        Validation: ``val_obs`` if given, else ``val_fraction`` of the labelled points drawn by
        whole spatial clusters (points closer than ``val_distance``, default one crop extent).
    patience
        Epochs without a better validation loss before stopping (None: never stop early).
    n_random, grid
        Queries per crop besides the labelled centre: ``n_random`` random positions (other
        observations inside the crop first) and a ``grid x grid`` lattice (default
        ``config.query_random`` and ``config.query_grid``: the paper's 10 and 6).
    unlabelled_crops
        Random tiles with no labelled point per epoch (contrastive losses only); default a quarter
        of the labelled crops.
    contrastive_weight
        Weight of the contrastive losses against the classification loss (default the config's).
    max_shift
        Largest random shift (pixels) of a crop around its point; default ``window // 4``.
    seed
        Seeds initialisation, shifts, queries and batch order: on CPU the same seed gives
        bit-identical weights.
    device
        ``"auto"`` (CUDA when present, with mixed precision), ``"cpu"`` or ``"cuda[:i]"``.
    progress
        Show a tqdm progress bar over epochs; default: in a terminal or notebook, not in logs
        (:func:`miso_xr._progress.show_progress`).

    Returns
    -------
    MisoModel
        With its :class:`~miso_xr.spec.ModelSpec` (classes, bands, normalisation, window, CRS)
        and ``training`` summary; ``model.predict_points(cube, obs)`` gives ``(N, K)``
        probabilities at points.

    Examples
    --------
    >>> import miso_xr
    >>> scene = miso_xr.make_scene(size=128)  # doctest: +SKIP
    >>> model = miso_xr.train(scene.cube, scene.observations, config="tiny", epochs=3)  # doctest: +SKIP
    >>> model.save("perm.safetensors")  # doctest: +SKIP
    """
    import torch
    from tqdm.auto import tqdm

    from ..model.losses import miso_loss
    from ..model.miso import MisoModel, MisoNet

    t_start = time.perf_counter()
    obs = _check_obs(obs)
    task, classes = _resolve_task(obs, task)
    mods = select_modalities(cube, modalities)
    gridspec = Grid.from_dataset(cube)
    obs = on_crs(obs, gridspec.crs)  # observations in another CRS: projected onto the cube
    cfg = _resolve_config(config)
    cfg_name = cfg.name
    window = int(cfg.crop if window is None else window)
    if window < cfg.reduction or window % cfg.reduction:
        raise InputError(
            f"window={window} px: the {cfg_name!r} encoders need a multiple of {cfg.reduction} "
            f"px (patch_size x 2**(stages-1)), e.g. {max(1, round(window / cfg.reduction)) * cfg.reduction}"
        )
    if window > min(gridspec.height, gridspec.width):
        raise InputError(
            f"window={window} px is larger than the cube ({gridspec.height} x {gridspec.width} "
            f"px); use window <= {min(gridspec.height, gridspec.width)}"
        )
    # unset training settings come from the config (tiny: from scratch; base: the paper's)
    epochs = int(cfg.epochs if epochs is None else epochs)
    batch_size = int(cfg.batch_size if batch_size is None else batch_size)
    lr = float(cfg.lr if lr is None else lr)
    weight_decay = float(cfg.weight_decay if weight_decay is None else weight_decay)
    warmup = float(cfg.warmup_epochs if warmup is None else warmup)
    grad_clip = cfg.grad_clip if grad_clip is None else grad_clip
    n_random = int(cfg.query_random if n_random is None else n_random)
    grid = int(cfg.query_grid if grid is None else grid)
    contrastive_weight = float(
        cfg.contrastive_weight if contrastive_weight is None else contrastive_weight
    )
    if epochs < 1 or batch_size < 1 or not lr > 0:
        raise InputError(f"epochs={epochs}, batch_size={batch_size}, lr={lr}: all must be positive")
    if n_random < 0 or grid < 0:
        raise InputError(f"n_random={n_random}, grid={grid}: must be >= 0")
    max_shift = int(window // 4 if max_shift is None else max_shift)
    if not 0 <= max_shift < window // 2:
        raise InputError(
            f"max_shift={max_shift}: must be in [0, {window // 2 - 1}] so the labelled point "
            "stays inside its crop"
        )
    dev = _pick_device(device)
    k = len(classes)
    res = gridspec.resolution

    # labelled points inside the cube
    lab = obs[obs["label"].notna()]
    inside = gridspec.contains(lab["x"].to_numpy(), lab["y"].to_numpy())
    n_outside = int((~inside).sum())
    lab = lab[inside]
    if len(lab) == 0:
        raise ObservationError(
            f"none of the {n_outside} labelled observations falls inside the cube (bounds "
            f"{gridspec.bounds} in {gridspec.crs}); are x/y in the cube's CRS?"
        )
    codes = lab["label"].cat.codes.to_numpy().astype("int64")
    lx, ly = lab["x"].to_numpy("float64"), lab["y"].to_numpy("float64")

    if val_obs is not None:
        val_obs = _check_obs(val_obs, "val_obs")
        vclasses = tuple(str(c) for c in val_obs["label"].cat.categories)
        if vclasses != classes:
            raise ObservationError(
                f"val_obs classes {list(vclasses)} differ from obs classes {list(classes)}"
            )
        val_obs = on_crs(val_obs, gridspec.crs)
        vl = val_obs[val_obs["label"].notna()]
        vl = vl[gridspec.contains(vl["x"].to_numpy(), vl["y"].to_numpy())]
        tr_idx = np.arange(len(lab))
        vx, vy = vl["x"].to_numpy("float64"), vl["y"].to_numpy("float64")
        vcodes = vl["label"].cat.codes.to_numpy().astype("int64")
        val_index = list(vl.index)
    else:
        dist = float(val_distance) if val_distance is not None else (window + 2 * max_shift) * res
        tr_idx, va_idx = validation_split(lx, ly, fraction=val_fraction, distance=dist, seed=seed)
        vx, vy, vcodes = lx[va_idx], ly[va_idx], codes[va_idx]
        val_index = list(lab.index[va_idx])
    tx, ty, tcodes = lx[tr_idx], ly[tr_idx], codes[tr_idx]
    n_tr = tx.size

    rng = np.random.default_rng(seed)
    # crops: labelled (with a margin for shifts), validation (centred), unlabelled tiles
    lab_crops = extract_crops(cube, tx, ty, window=window, margin=max_shift, modalities=mods)
    val_crops = extract_crops(cube, vx, vy, window=window, modalities=mods) if vx.size else None
    n_unl = int(max(0, n_tr // 4 if unlabelled_crops is None else unlabelled_crops))
    if not _has_contrastive(mods, location):
        n_unl = 0  # unlabelled tiles feed only contrastive terms, and these inputs have none
    unl_crops = None
    if n_unl:
        size = window + 2 * max_shift
        r0 = rng.integers(-max_shift, gridspec.height - size + max_shift + 1, size=2 * n_unl)
        c0 = rng.integers(-max_shift, gridspec.width - size + max_shift + 1, size=2 * n_unl)
        cand = extract_crops(
            cube, None, None, window=window, margin=max_shift, modalities=mods, origins=(r0, c0)
        )
        # keep tiles that are mostly data (the cube may be a watershed inside NaN)
        frac = np.mean([np.isfinite(cand.arrays[m]).mean(axis=(1, 2, 3)) for m in mods], axis=0)
        keep = np.flatnonzero(frac >= 0.5)[:n_unl]
        n_unl = int(keep.size)
        if n_unl:
            unl_crops = Crops(
                {m: a[keep] for m, a in cand.arrays.items()},
                cand.row0[keep],
                cand.col0[keep],
                cand.x0[keep],
                cand.y0[keep],
                cand.size,
                gridspec,
                cand.bands,
            )

    # normalisation from the training crops only (labelled and unlabelled), nan-aware
    stats = {
        m: _band_stats(
            [lab_crops.arrays[m]] + ([unl_crops.arrays[m]] if unl_crops is not None else [])
        )
        for m in mods
    }
    bands = lab_crops.bands

    # training observations by pixel, to label random/grid queries that land on them
    trow, tcol = gridspec.index(tx, ty)
    pix_label: dict[tuple[int, int], int] = {}
    for r, c, v in zip(trow.tolist(), tcol.tolist(), tcodes.tolist()):
        pix_label.setdefault((r, c), v)
    from scipy.spatial import cKDTree

    tree = cKDTree(np.column_stack([trow, tcol]))
    reach = window + max_shift  # any obs within this Chebyshev radius may fall in a shifted crop
    neighbours = tree.query_ball_point(np.column_stack([trow, tcol]), r=reach, p=np.inf)

    queries = _Queries(int(n_random), int(grid), window)
    nq = queries.per_crop

    def make_batch(items: np.ndarray) -> dict[str, Any]:
        """Crops, queries and labels of one batch; items >= n_tr are unlabelled tiles."""
        b = items.size
        imgs = {m: np.empty((b, len(bands[m]), window, window), dtype="float32") for m in mods}
        rc = np.empty((b, nq, 2), dtype="float64")
        labels = np.full((b, nq), -1, dtype="int64")
        row0 = np.empty(b, dtype="int64")
        col0 = np.empty(b, dtype="int64")
        for j, it in enumerate(items.tolist()):
            src, i = (lab_crops, it) if it < n_tr else (unl_crops, it - n_tr)
            dr, dc = rng.integers(0, 2 * max_shift + 1, size=2)
            for m in mods:
                imgs[m][j] = src.arrays[m][i, :, dr : dr + window, dc : dc + window]
            r_org, c_org = src.row0[i] + dr, src.col0[i] + dc
            row0[j], col0[j] = r_org, c_org
            q = 0
            if it < n_tr:
                # the labelled point, at its pixel centre (not always the crop centre)
                rc[j, 0] = (trow[it] - r_org + 0.5, tcol[it] - c_org + 0.5)
                labels[j, 0] = tcodes[it]
                others = [
                    o
                    for o in neighbours[it]
                    if o != it and 0 <= trow[o] - r_org < window and 0 <= tcol[o] - c_org < window
                ]
                if len(others) > n_random:
                    others = rng.choice(others, size=n_random, replace=False).tolist()
                for o in others:
                    q += 1
                    rc[j, q] = (trow[o] - r_org + 0.5, tcol[o] - c_org + 0.5)
                    labels[j, q] = tcodes[o]
            else:
                rc[j, 0] = rng.uniform(0, window, size=2)
            n_free = n_random - q
            if n_free:
                rc[j, q + 1 : q + 1 + n_free] = rng.uniform(0, window, size=(n_free, 2))
            rc[j, 1 + n_random :] = queries.grid_rc
            # unlabelled slots that land on an observed pixel take its label
            for s in range(q + 1, nq) if it < n_tr else range(nq):
                key = (int(r_org + rc[j, s, 0]), int(c_org + rc[j, s, 1]))
                if key in pix_label:
                    labels[j, s] = pix_label[key]
        return {
            "images": {m: torch.from_numpy(_normalise(imgs[m], stats[m])) for m in mods},
            "query": torch.from_numpy(_query_tensor(rc, window)),
            "location": torch.from_numpy(_location(gridspec, row0, col0, rc)),
            "labels": torch.from_numpy(labels),
        }

    n_items = n_tr + n_unl
    steps_per_epoch = max(1, math.ceil(n_items / batch_size))
    total_steps = epochs * steps_per_epoch
    warm = int(round(warmup * steps_per_epoch))

    def lr_factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        t = (step - warm) / max(1, total_steps - warm)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))

    n_out = 1 if k == 2 else k
    history: list[dict[str, float]] = []
    best: dict[str, Any] = {"loss": math.inf, "epoch": 0, "state": None, "metrics": {}}
    use_scaler = dev.type == "cuda" and not torch.cuda.is_bf16_supported()

    cuda_ids = (
        [dev.index if dev.index is not None else torch.cuda.current_device()]
        if (dev.type == "cuda")
        else []
    )
    with torch.random.fork_rng(devices=cuda_ids):
        torch.manual_seed(seed)
        net = MisoNet(
            cfg, bands={m: len(bands[m]) for m in mods}, num_outputs=n_out, location=location
        )
        net.to(dev)
        opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
        scaler = torch.amp.GradScaler("cuda") if use_scaler else None
        bar = tqdm(
            range(epochs), desc="train MISO", unit="epoch", disable=not show_progress(progress)
        )
        stale = 0
        for epoch in bar:
            net.train()
            order = rng.permutation(n_items)
            sums = {"loss": 0.0, "supervised": 0.0, "contrastive": 0.0}
            n_labelled_q = 0
            for s in range(steps_per_epoch):
                items = order[s * batch_size : (s + 1) * batch_size]
                if items.size == 0:
                    continue
                batch = make_batch(items)
                images = {m: v.to(dev) for m, v in batch["images"].items()}
                qry = batch["query"].to(dev)
                loc = batch["location"].to(dev) if location else None
                labels = batch["labels"].to(dev)
                with _autocast(dev):
                    out = net(images, qry, loc)
                loss, parts = miso_loss(
                    out,
                    labels,
                    binary=k == 2,
                    contrastive_weight=contrastive_weight,
                    temperature=cfg.temperature,
                )
                sup = parts["supervised"]
                con = sum((v for n, v in parts.items() if n != "supervised"), start=sup * 0.0)
                opt.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.unscale_(opt)
                else:
                    loss.backward()
                if grad_clip:
                    torch.nn.utils.clip_grad_norm_(net.parameters(), grad_clip)
                if scaler is not None:
                    scaler.step(opt)
                    scaler.update()
                else:
                    opt.step()
                sched.step()
                sums["loss"] += float(loss.detach())
                sums["supervised"] += float(sup.detach())
                sums["contrastive"] += float(con.detach())
                n_labelled_q += int((labels >= 0).sum())
            rec = {key: v / steps_per_epoch for key, v in sums.items()}
            rec["epoch"] = epoch + 1
            rec["labelled_queries_per_crop"] = n_labelled_q / n_items
            if val_crops is not None:
                rec.update(
                    _validate(net, val_crops, vcodes, stats, mods, k, location, dev, batch_size)
                )
            history.append(rec)
            bar.set_postfix(
                loss=f"{rec['loss']:.3f}",
                **({"val": f"{rec['val_loss']:.3f}"} if "val_loss" in rec else {}),
            )
            watch = rec.get("val_loss", rec["loss"])
            if watch < best["loss"]:
                best = {
                    "loss": watch,
                    "epoch": epoch + 1,
                    "state": copy.deepcopy(net.state_dict()),
                    "metrics": {kk: v for kk, v in rec.items() if kk.startswith("val_")},
                }
                stale = 0
            else:
                stale += 1
                if patience is not None and val_crops is not None and stale >= patience:
                    break
        bar.close()
        if best["state"] is not None:
            net.load_state_dict(best["state"])
    net.eval()
    net.to("cpu")

    counts = np.bincount(tcodes, minlength=k)
    summary = {
        "task": task,
        "n_points": int(n_tr),
        "class_counts": {c: int(v) for c, v in zip(classes, counts)},
        "n_validation": int(vx.size),
        "validation": "val_obs" if val_obs is not None else "spatial clusters",
        "validation_index_sha256": hashlib.sha256(
            ",".join(map(str, sorted(map(str, val_index)))).encode()
        ).hexdigest(),
        "validation_index": [str(v) for v in val_index] if len(val_index) <= 2000 else None,
        "n_outside_cube": n_outside,
        # every labelled point that shaped the model (validation chose the epoch): evaluate
        # scores this model only away from them
        "points": points_record(np.r_[lx, vx], np.r_[ly, vy], gridspec.crs)
        if val_obs is not None
        else points_record(lx, ly, gridspec.crs),
        "n_unlabelled_tiles": n_unl,
        "queries_per_crop": nq,
        "epochs": len(history),
        "epochs_asked": epochs,
        "best_epoch": int(best["epoch"]),
        "best_loss": float(best["loss"]),
        **{kk: float(v) for kk, v in best["metrics"].items()},
        "history": history,
        "batch_size": batch_size,
        "lr": lr,
        "weight_decay": weight_decay,
        "max_shift": max_shift,
        "seed": seed,
        "device": str(dev),
        "config": cfg_name,
        "seconds": round(time.perf_counter() - t_start, 3),
    }
    spec = ModelSpec(
        kind="miso",
        task=task,
        classes=classes,
        modalities=tuple((m, tuple(bands[m])) for m in mods),
        window=window,
        stride=max(1, window // 2),
        resolution=float(res),
        crs=gridspec.crs,
        # sorted by name: the spec's JSON sorts keys, so this order survives a checkpoint
        normalisation=tuple((m, stats[m]) for m in sorted(mods)),
        location=bool(location),
    )
    model = MisoModel(net, spec, cfg, summary)
    return _attach_predict_points(model)


def _validate(
    net: Any,
    crops: Crops,
    codes: np.ndarray,
    stats: dict[str, Normalisation],
    mods: Sequence[str],
    k: int,
    location: bool,
    dev: Any,
    batch_size: int,
) -> dict[str, float]:
    """Validation loss and accuracies at the centre query of centred crops."""
    import torch

    window = crops.size
    c = window // 2 + 0.5
    net.eval()
    losses, probs = [], []
    with torch.no_grad():
        for s in range(0, len(crops), batch_size):
            sl = slice(s, s + batch_size)
            n = len(crops.row0[sl])
            rc = np.full((n, 1, 2), c)
            images = {
                m: torch.from_numpy(_normalise(crops.arrays[m][sl], stats[m])).to(dev) for m in mods
            }
            q = torch.from_numpy(_query_tensor(rc, window)).to(dev)
            loc = (
                torch.from_numpy(_location(crops.grid, crops.row0[sl], crops.col0[sl], rc)).to(dev)
                if location
                else None
            )
            with _autocast(dev):
                logits = net(images, q, loc).logits.reshape(n, -1)
            lab = torch.from_numpy(codes[sl]).to(dev)
            losses.append(float(_supervised_loss(logits, lab, k)) * n)
            probs.append(_probabilities(logits, k).cpu().numpy())
    net.train()
    p = np.concatenate(probs)
    pred = p.argmax(1)
    recalls = [float((pred[codes == j] == j).mean()) for j in range(k) if (codes == j).any()]
    return {
        "val_loss": float(np.sum(losses) / len(codes)),
        "val_accuracy": float((pred == codes).mean()),
        "val_balanced_accuracy": float(np.mean(recalls)),
    }
