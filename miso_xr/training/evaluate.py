"""Compare models on field observations: per fold, per region, with honest spatial CV.

:func:`evaluate` scores any number of models on the same observations and returns a
:class:`Report`: a long table (model, fold, region, metric, value), a mean ± std summary over
folds, and a figure.

Two kinds of ``models`` are accepted:

- a **factory**: a callable ``(cube, train_obs) -> fitted model``. It is re-fitted once per fold
  on the other folds and scored on the held-out fold: honest spatial cross-validation when the
  folds come from :func:`~miso_xr.training.folds.spatial_folds`. Its summary is a mean ± std
  over folds. :func:`refit_factory` turns a saved model into the factory that retrains it with
  the settings its checkpoint records (``miso-xr evaluate --refit``).
- a **fixed model** (already fitted): anything with ``predict_points(cube, obs) -> (N, K)``
  probabilities (:class:`~miso_xr.training.baseline.RandomForestBaseline`, ``MisoModel``), or
  anything with the predictor protocol (``spec`` and ``predict_windows``), which is then applied
  to a window centred on each point. A fixed model cannot be cross-validated, so it is scored
  once, on *held-out points*: the observations farther than ``distance`` from every point any
  of the fixed models was trained on (models record these points in ``training["points"]``;
  all fixed models share one set of held-out points, so they compare on the same ground). A
  model that records no training points is refused unless ``independent=True`` says the
  observations are independent of it; no held-out point left is refused too.

Why held-out points and not the same numbers with a warning: a soil scientist reads a score as
the accuracy to expect where the model has not been told the answer. A model scored on its own
training points reports how well it remembers them (a Random Forest scores ~0.95 where honest
spatial CV gives ~0.76), and no caveat printed beside that number stops it being quoted.

Metrics: ``accuracy``, ``balanced_accuracy`` (mean recall over the classes present),
``f1_macro`` and ``f1_weighted``, per class ``precision_<class>``, ``recall_<class>``,
``f1_<class>``, and for binary tasks ``roc_auc`` and ``pr_auc`` (average precision of the second
class, e.g. ``present``), plus ``n`` (points scored). A metric a fold cannot define (ROC-AUC with
one class) is NaN, never a warning.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..exceptions import InputError, ObservationError
from .provenance import _held_out
from .refit import refit_factory

__all__ = ["Report", "evaluate", "refit_factory", "score"]

MAIN_METRICS = ("accuracy", "balanced_accuracy", "f1_macro", "f1_weighted", "roc_auc", "pr_auc")


def score(y_true: np.ndarray, proba: np.ndarray, classes: Sequence[str]) -> dict[str, float]:
    """Metrics of class probabilities against true class codes (see the module notes).

    >>> score(np.array([0, 1, 1]), np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]),
    ...       ["absent", "present"])["accuracy"]  # doctest: +ELLIPSIS
    0.666...
    """
    y_true = np.asarray(y_true, dtype="int64")
    proba = np.asarray(proba, dtype="float64")
    k = len(classes)
    out: dict[str, float] = {"n": float(y_true.size)}
    if y_true.size == 0:
        return out
    pred = proba.argmax(axis=1)
    cm = np.bincount(y_true * k + pred, minlength=k * k).reshape(k, k)
    support = cm.sum(axis=1).astype("float64")
    predicted = cm.sum(axis=0).astype("float64")
    tp = np.diag(cm).astype("float64")
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    out["accuracy"] = float(tp.sum() / y_true.size)
    present = support > 0
    out["balanced_accuracy"] = float(recall[present].mean())
    seen = present | (predicted > 0)  # like sklearn: labels in y_true or y_pred
    out["f1_macro"] = float(f1[seen].mean())
    out["f1_weighted"] = float((f1 * support).sum() / support.sum())
    for i, c in enumerate(classes):
        # undefined for a class absent from both truth and prediction
        out[f"precision_{c}"] = float(precision[i]) if seen[i] else np.nan
        out[f"recall_{c}"] = float(recall[i]) if present[i] else np.nan
        out[f"f1_{c}"] = float(f1[i]) if seen[i] else np.nan
    if k == 2:
        if present.all():
            from sklearn.metrics import average_precision_score, roc_auc_score

            out["roc_auc"] = float(roc_auc_score(y_true, proba[:, 1]))
            out["pr_auc"] = float(average_precision_score(y_true, proba[:, 1]))
        else:
            out["roc_auc"] = out["pr_auc"] = np.nan
    return out


@dataclass
class Report:
    """Scores of several models on the same observations.

    Attributes
    ----------
    table
        Long table: ``model``, ``fold`` (fold number, or ``"all"`` for all points pooled),
        ``region`` (``"all"`` or a region name), ``metric``, ``value``. Fixed models have
        ``"all"`` rows only: they were not cross-validated.
    predictions
        One row per (model, observation scored): ``model``, ``fold``, ``region``, ``label``,
        ``predicted`` and one ``p_<class>`` column per class.
    classes, task
        The classes (model order) and task.
    protocols
        Model name -> how it was scored, in words (``"spatial CV: 5 folds, refit per fold"``,
        ``"fixed model: 40 held-out points (>= 1000 m from its 200 training points)"``).
    """

    table: pd.DataFrame
    predictions: pd.DataFrame
    classes: tuple[str, ...]
    task: str = ""
    models: tuple[str, ...] = field(default=())
    protocols: dict[str, str] = field(default_factory=dict)

    def _folds(self, name: str) -> int:
        t = self.table
        return len({f for f in t[(t["model"] == name)]["fold"] if f != "all"})

    def summary(self) -> pd.DataFrame:
        """Mean ± std over folds per cross-validated model and metric, and the pooled value.

        Returns a table indexed by (model, metric) with columns ``mean``, ``std``, ``folds``,
        ``pooled`` (all points together), ``text`` (``"0.812 ± 0.031"`` over folds; a fixed
        model's single held-out score has no ±) and ``protocol``.
        """
        t = self.table[self.table["region"] == "all"]
        parts = []
        for name in self.models:
            tm = t[t["model"] == name]
            pooled = tm[tm["fold"] == "all"].set_index(["model", "metric"])["value"]
            per_fold = tm[tm["fold"] != "all"]
            if len(per_fold):
                g = per_fold.groupby(["model", "metric"], sort=False)["value"]
                s = pd.DataFrame({"mean": g.mean(), "std": g.std(ddof=0), "folds": g.count()})
            else:
                s = pd.DataFrame({"mean": pooled, "std": np.nan, "folds": 0})
            s["pooled"] = pooled.reindex(s.index)
            parts.append(s)
        s = pd.concat(parts) if parts else pd.DataFrame(columns=["mean", "std", "folds", "pooled"])
        s["text"] = [
            "nan" if np.isnan(m) else (f"{m:.3f}" if np.isnan(sd) else f"{m:.3f} ± {sd:.3f}")
            for m, sd in zip(s["mean"], s["std"])
        ]
        s["protocol"] = [self.protocols.get(m, "") for m, _ in s.index]
        return s

    def plot(
        self, path: str | os.PathLike[str], *, region_metric: str = "balanced_accuracy"
    ) -> str:
        """Save a PNG: main metrics per model (bars; error bars are the std over folds of
        cross-validated models), and when regions were given a second panel with
        ``region_metric`` per region and model. Each panel's legend sits above it, off the bars.

        Returns the path written.
        """
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        s = self.summary().reset_index()
        metrics = [m for m in MAIN_METRICS if m in set(s["metric"])]
        regions = sorted(set(self.table["region"]) - {"all"})
        fig = Figure(figsize=(11, 4.6 + (0.3 * len(regions) if regions else 0)), dpi=100)
        FigureCanvasAgg(fig)
        axes = fig.subplots(1, 2 if regions else 1, squeeze=False)[0]
        ax = axes[0]
        width = 0.8 / max(1, len(self.models))
        xs = np.arange(len(metrics))
        top = 1.0
        labels = {}
        for i, name in enumerate(self.models):
            row = s[s["model"] == name].set_index("metric").reindex(metrics)
            k = self._folds(name)
            mean = row["mean"].to_numpy(dtype="float64")
            err = row["std"].to_numpy(dtype="float64") if k > 1 else None
            if err is not None:
                top = max(top, float(np.nanmax(np.r_[mean + np.nan_to_num(err), 0])))
            n_scored = int((self.predictions["model"] == name).sum())
            labels[name] = (
                f"{name}: spatial CV, mean ± std over {k} folds"
                if k > 1
                else f"{name}: fixed model, {n_scored} held-out points"
                if name in self.protocols
                else f"{name}: {n_scored} points"
            )
            ax.bar(
                xs + i * width, mean, width, yerr=err, capsize=3 if err is not None else 0,
                label=labels[name],
            )  # fmt: skip
        ax.set_xticks(xs + width * (len(self.models) - 1) / 2)
        ax.set_xticklabels(metrics, rotation=30, ha="right")
        # never clip an error bar: the axis grows past 1 when mean + std does
        ax.set_ylim(0, top + 0.05)
        cv = [self._folds(n) > 1 for n in self.models]
        ax.set_ylabel(
            "score (mean over folds ± std)"
            if all(cv)
            else ("score on held-out points" if not any(cv) else "score")
        )
        ax.legend(
            loc="lower left", bbox_to_anchor=(0, 1.01), fontsize=8, frameon=False, borderaxespad=0
        )
        n_obs = len(set(self.predictions.index))
        fig.suptitle(f"{self.task or 'scores'}: {n_obs} labelled points scored", fontsize=11)
        if regions:
            ax2 = axes[1]
            t = self.table[(self.table["fold"] == "all") & (self.table["metric"] == region_metric)]
            ys = np.arange(len(regions))
            h = 0.8 / max(1, len(self.models))
            for i, name in enumerate(self.models):
                vals = t[t["model"] == name].set_index("region")["value"].reindex(regions)
                ax2.barh(ys + i * h, vals.to_numpy(dtype="float64"), h, label=name)
            n = (
                self.table[(self.table["fold"] == "all") & (self.table["metric"] == "n")]
                .groupby("region")["value"]
                .max()
            )
            ax2.set_yticks(ys + h * (len(self.models) - 1) / 2)
            ax2.set_yticklabels([f"{r} (n={int(n.get(r, 0))})" for r in regions], fontsize=7)
            ax2.set_xlim(0, 1.05)
            ax2.set_xlabel(f"{region_metric} per region (points pooled)")
            ax2.legend(
                loc="lower left", bbox_to_anchor=(0, 1.01), fontsize=8, frameon=False,
                borderaxespad=0, ncol=min(3, len(self.models)),
            )  # fmt: skip
        fig.tight_layout()
        path = str(path)
        fig.savefig(path, format="png")
        return path

    def __repr__(self) -> str:
        s = self.summary().reset_index()
        s = s[s["metric"].isin(MAIN_METRICS)]
        wide = s.pivot(index="metric", columns="model", values="text")
        wide = wide.reindex([m for m in MAIN_METRICS if m in wide.index])[list(self.models)]
        regions = sorted(set(self.table["region"]) - {"all"})
        head = (
            f"<Report task={self.task!r} classes={list(self.classes)} models={list(self.models)} "
            f"regions={len(regions)}>"
        )
        how = "".join(f"\n  {n}: {self.protocols.get(n, '')}" for n in self.models)
        return head + how + "\n" + wide.to_string()


def _is_fitted(model: Any) -> bool:
    return hasattr(model, "predict_points") or (
        hasattr(model, "predict_windows") and hasattr(model, "spec")
    )


def _predict_points(
    model: Any, cube: Any, obs: pd.DataFrame, *, batch_size: int = 64
) -> np.ndarray:
    """``(N, K)`` probabilities of a fitted model at observations.

    ``model.predict_points(cube, obs)`` when the model has it; a loaded MISO model (no such
    method) queries the centre of a crop around each point (:func:`miso_xr.training.points.predict_points`);
    anything else with the predictor protocol gets a ``spec.window`` crop centred on each point
    through ``predict_windows``, keeping the centre pixel (NaN where the cube has no value).
    """
    if hasattr(model, "predict_points"):
        return np.asarray(model.predict_points(cube, obs), dtype="float64")
    from ..cube.grid import Grid, band_dim
    from .crops import extract_crops
    from .features import points_xy

    spec = model.spec
    grid = Grid.from_dataset(cube)
    x, y = points_xy(obs, grid.crs)
    mods = [m for m, _ in spec.modalities]
    for m, want in spec.modalities:
        have = [str(b) for b in cube[m][band_dim(m)].values] if m in cube.data_vars else []
        missing = [b for b in want if b not in have]
        if missing:
            from ..exceptions import MissingBandError

            raise MissingBandError(
                f"the cube has no band {missing[0]!r} in {m!r}; the model needs {' '.join(want)}"
            )
    if getattr(spec, "kind", None) == "miso":
        # MISO queries the crop centre directly (one query per point, as in training) rather
        # than decoding a whole window
        from .points import predict_points

        return np.asarray(predict_points(model, cube, x, y), dtype="float64")
    crops = extract_crops(cube, x, y, window=spec.window, modalities=mods)
    arrays = {}
    for m, want in spec.modalities:
        have = list(crops.bands[m])
        arrays[m] = crops.arrays[m][:, [have.index(b) for b in want]]
    cx, cy = crops.coords()
    c = spec.window // 2
    out = np.full((len(x), len(spec.classes)), np.nan)
    for i in range(0, len(x), batch_size):
        sl = slice(i, i + batch_size)
        p = model.predict_windows({m: a[sl] for m, a in arrays.items()}, cx[sl], cy[sl])
        out[sl] = p[:, :, c, c]
    nodata = np.zeros(len(x), dtype=bool)
    for a in arrays.values():
        nodata |= np.isnan(a[:, :, c, c]).all(axis=1)
    out[nodata] = np.nan
    return out


def _region_names(
    obs: pd.DataFrame, regions: Any, region_field: str, cube_crs: str | None
) -> pd.Series:
    """Region name per observation ("" outside every polygon)."""
    import geopandas as gpd

    from .features import points_xy

    if isinstance(regions, (str, os.PathLike)):
        if not os.path.exists(regions):
            raise InputError(f"regions file {str(regions)!r} does not exist")
        regions = gpd.read_file(regions, engine="pyogrio")
    if not isinstance(regions, gpd.GeoDataFrame):
        raise InputError(
            f"regions is a {type(regions).__name__}; expected a GeoDataFrame of polygons or a "
            "path to a vector file (e.g. ecoregions.shp)"
        )
    if region_field not in regions.columns:
        raise InputError(
            f"regions have no field {region_field!r}; they have "
            f"{[c for c in regions.columns if c != regions.geometry.name]} (pass region_field=)"
        )
    if regions.crs is None:
        raise InputError("regions have no CRS; set one (regions.set_crs('EPSG:3338'))")
    crs = regions.crs.to_string()
    if obs.attrs.get("crs") is None and cube_crs is not None:
        obs = obs.copy()
        obs.attrs["crs"] = cube_crs
    x, y = points_xy(obs, crs)
    pts = gpd.GeoDataFrame(
        {"_pos": np.arange(len(obs))}, geometry=gpd.points_from_xy(x, y), crs=regions.crs
    )
    joined = gpd.sjoin(pts, regions[[region_field, regions.geometry.name]], predicate="within")
    joined = joined.drop_duplicates("_pos")  # overlapping polygons: the first one wins
    names = np.full(len(obs), "", dtype=object)
    names[joined["_pos"].to_numpy()] = joined[region_field].astype(str).to_numpy()
    return pd.Series(names, index=obs.index, name="region")


def _name_of(model: Any) -> str:
    name = getattr(model, "name", None)
    if isinstance(name, str) and name:
        return name
    if _is_fitted(model):
        return type(model).__name__
    return getattr(model, "__name__", type(model).__name__)


def evaluate(
    models: Sequence[Any] | Any,
    cube: Any,
    obs: pd.DataFrame,
    *,
    folds: pd.Series | Sequence[int] | None = None,
    regions: Any = None,
    region_field: str = "name",
    names: Sequence[str] | None = None,
    distance: float | None = None,
    independent: bool = False,
) -> Report:
    """Score models on labelled observations, per fold and per region.

    Parameters
    ----------
    models
        Fitted models (with ``predict_points(cube, obs)`` or the predictor protocol) and/or
        factories ``(cube, train_obs) -> fitted model`` re-fitted per fold (see module notes).
        One model alone is accepted too.
    cube
        The cube the models read.
    obs
        Observation table from :func:`miso_xr.read_observations`; unlabelled rows are ignored.
    folds
        Fold per observation (a Series aligned with ``obs``, e.g. from
        :func:`~miso_xr.training.folds.spatial_folds`). Default: one pooled evaluation for fitted
        models; ``spatial_folds(obs)`` (DBSCAN, 1 km, k=5) when a factory is given.
    regions
        Polygons (GeoDataFrame or a vector file path) for a per-region breakdown.
    region_field
        The regions' name field.
    names
        Display names, one per model (default: class or function names).
    distance
        Fixed models are scored only on observations farther than this (cube CRS units, metres)
        from every point a fixed model was trained on. Default: half a pixel, i.e. only the
        training points themselves are left out; pass the spatial-CV distance (e.g. 1000) for
        spatially independent held-out points.
    independent
        Declare the observations independent of every fixed model that records no training
        points (e.g. a hub model trained elsewhere); without it such a model is refused.

    Returns
    -------
    Report

    Raises
    ------
    InputError
        A fixed model records no training points and ``independent`` is False, or no
        observation is left once its training points are set aside.

    Examples
    --------
    >>> from miso_xr.training.baseline import RandomForestBaseline
    >>> def rf(cube, train):  # a factory: re-fitted on each fold's training points
    ...     return RandomForestBaseline(n_estimators=50).fit(cube, train)
    >>> report = evaluate([rf], cube, obs, folds=spatial_folds(obs, k=5))  # doctest: +SKIP
    >>> report.summary().loc[("rf", "balanced_accuracy"), "text"]           # doctest: +SKIP
    '0.781 ± 0.042'
    """
    from .._files import check_finished
    from ..cube.grid import Grid
    from .folds import spatial_folds

    check_finished(cube, "the cube")
    if not isinstance(models, (list, tuple)):
        models = [models]
    models = list(models)
    if not models:
        raise InputError("models=[] is empty; give at least one fitted model or factory")
    for i, m in enumerate(models):
        if not (_is_fitted(m) or callable(m)):
            raise InputError(
                f"models[{i}] is a {type(m).__name__}: expected a fitted model (with "
                "predict_points or predict_windows) or a factory (cube, train_obs) -> model"
            )
    if names is None:
        names = [_name_of(m) for m in models]
        seen: dict[str, int] = {}
        for i, n in enumerate(names):
            seen[n] = seen.get(n, 0) + 1
            if seen[n] > 1:
                names[i] = f"{n}#{seen[n]}"
    else:
        names = [str(n) for n in names]
        if len(names) != len(models) or len(set(names)) != len(names):
            raise InputError(f"names={names}: need {len(models)} distinct names, one per model")
    if not isinstance(obs, pd.DataFrame) or "label" not in obs.columns:
        raise ObservationError(
            "obs must be an observation table with a 'label' column (miso_xr.read_observations)"
        )
    if not isinstance(obs["label"].dtype, pd.CategoricalDtype):
        raise ObservationError(
            f"obs['label'] is {obs['label'].dtype}; expected a Categorical of class names "
            "(miso_xr.read_observations sets it)"
        )
    classes = tuple(str(c) for c in obs["label"].cat.categories)
    grid = Grid.from_dataset(cube)

    fold_values: np.ndarray | None = None
    if folds is not None:
        if isinstance(folds, pd.Series):
            if not folds.index.equals(obs.index):
                missing = obs.index.difference(folds.index)
                if len(missing):
                    raise InputError(
                        f"folds has no fold for {len(missing)} observation(s) (first index "
                        f"{missing[0]!r}); give a Series aligned with obs (spatial_folds(obs))"
                    )
                folds = folds.reindex(obs.index)
            fold_values = folds.to_numpy()
        else:
            fold_values = np.asarray(folds)
            if fold_values.shape != (len(obs),):
                raise InputError(f"folds has {fold_values.size} values for {len(obs)} observations")
        if pd.isna(fold_values).any():
            raise InputError("folds has missing values; every observation needs a fold number")
        fold_values = fold_values.astype("int64")

    is_labelled = obs["label"].notna().to_numpy()
    labelled = obs[is_labelled]
    if len(labelled) == 0:
        raise ObservationError("obs has no labelled observation to evaluate on")
    if fold_values is None and any(not _is_fitted(m) for m in models):
        try:
            fold_values = spatial_folds(obs).to_numpy()
        except ObservationError as err:
            raise ObservationError(
                f"a factory is re-fitted per fold, and the default folds (spatial_folds(obs), "
                f"1 km, k=5) do not fit these observations: {err}. Pass "
                "folds=spatial_folds(obs, distance=..., k=...)"
            ) from err
    fold_l = None if fold_values is None else fold_values[is_labelled]
    y_true = labelled["label"].cat.codes.to_numpy().astype("int64")
    region_l = (
        _region_names(labelled, regions, region_field, grid.crs).to_numpy()
        if regions is not None
        else None
    )

    fixed = [i for i, m in enumerate(models) if _is_fitted(m)]
    for i in fixed:  # a wrong class list is the first thing to say, before any point is set aside
        _check_proba(np.zeros((0, len(classes))), models[i], names[i], classes)
    held = np.ones(len(labelled), dtype=bool)
    radius = grid.resolution / 2 if distance is None else float(distance)
    protocols: dict[str, str] = {}
    if fixed:
        held, protocols = _held_out(
            [(names[i], models[i]) for i in fixed], labelled, radius, independent, grid.crs
        )
    if fold_l is not None:
        k = len(np.unique(fold_l))
        for name, model in zip(names, models):
            if not _is_fitted(model):
                protocols[name] = f"spatial CV: {k} folds, refit per fold"

    rows: list[dict[str, Any]] = []
    preds: list[pd.DataFrame] = []
    for name, model in zip(names, models):
        proba = np.full((len(labelled), len(classes)), np.nan)
        scored = np.ones(len(labelled), dtype=bool)
        if _is_fitted(model):
            scored = held
            proba[held] = _check_proba(
                _predict_points(model, cube, labelled[held]), model, name, classes
            )
        else:
            for f in np.unique(fold_l):
                test = fold_l == f
                # every other fold trains, unlabelled points included (they may feed
                # self-supervision); nothing from the held-out fold does
                train = obs[fold_values != f]
                fitted = model(cube, train)
                if not _is_fitted(fitted):
                    raise InputError(
                        f"factory {name!r} returned a {type(fitted).__name__}, not a fitted "
                        "model with predict_points or predict_windows"
                    )
                proba[test] = _check_proba(
                    _predict_points(fitted, cube, labelled[test]), fitted, name, classes
                )
        ok = np.isfinite(proba).all(axis=1) & scored
        groups: list[tuple[Any, Any, np.ndarray]] = [("all", "all", ok)]
        # a fixed model was not cross-validated: its scores are not split by fold
        if fold_l is not None and not _is_fitted(model):
            groups += [(int(f), "all", ok & (fold_l == f)) for f in np.unique(fold_l)]
        if region_l is not None:
            groups += [("all", r, ok & (region_l == r)) for r in sorted(set(region_l) - {""})]
        for fold, region, m in groups:
            for metric, value in score(y_true[m], proba[m], classes).items():
                rows.append(
                    {
                        "model": name,
                        "fold": fold,
                        "region": region,
                        "metric": metric,
                        "value": value,
                    }
                )
        p = pd.DataFrame(
            {
                "model": name,
                "fold": fold_l if fold_l is not None and not _is_fitted(model) else "all",
                "region": region_l if region_l is not None else "all",
                "label": labelled["label"].to_numpy(),
                "predicted": pd.Categorical.from_codes(
                    np.where(ok, np.nan_to_num(proba).argmax(axis=1), -1), categories=list(classes)
                ),
            },
            index=labelled.index,
        )
        for i, c in enumerate(classes):
            p[f"p_{c}"] = proba[:, i]
        preds.append(p[scored])
    table = pd.DataFrame(rows, columns=["model", "fold", "region", "metric", "value"])
    return Report(
        table=table,
        predictions=pd.concat(preds),
        classes=classes,
        task=str(obs.attrs.get("task", "")),
        models=tuple(names),
        protocols=protocols,
    )


def _check_proba(proba: np.ndarray, model: Any, name: str, classes: tuple[str, ...]) -> np.ndarray:
    spec = getattr(model, "spec", None)
    model_classes = tuple(getattr(spec, "classes", ()) or ())
    if model_classes and model_classes != classes:
        raise InputError(
            f"model {name!r} predicts classes {list(model_classes)}; the observations have "
            f"{list(classes)} (read them with the same classes, in the same order)"
        )
    proba = np.asarray(proba, dtype="float64")
    if proba.ndim != 2 or proba.shape[1] != len(classes):
        raise InputError(
            f"model {name!r} returned probabilities of shape {proba.shape}; expected "
            f"(points, {len(classes)})"
        )
    return proba
