"""Compare models on field observations: per fold, per region, with honest spatial CV.

:func:`evaluate` scores any number of models on the same observations and returns a
:class:`Report`: a long table (model, fold, region, metric, value), a mean ± std summary over
folds, and a figure.

Two kinds of ``models`` are accepted:

- a **fitted model**: anything with ``predict_points(cube, obs) -> (N, K)`` probabilities
  (:class:`~miso_xr.training.baseline.RandomForestBaseline`, ``MisoModel``), or anything with the
  predictor protocol (``spec`` and ``predict_windows``), which is then applied to a window centred
  on each point. It is scored as it is on every fold: if it was trained on these observations the
  scores are optimistic.
- a **factory**: a callable ``(cube, train_obs) -> fitted model``. It is re-fitted once per fold
  on the other folds and scored on the held-out fold: honest spatial cross-validation when the
  folds come from :func:`~miso_xr.training.folds.spatial_folds`.

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

__all__ = ["Report", "evaluate", "score"]

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
        ``region`` (``"all"`` or a region name), ``metric``, ``value``.
    predictions
        One row per (model, observation): ``model``, ``fold``, ``region``, ``label``,
        ``predicted`` and one ``p_<class>`` column per class.
    classes, task
        The classes (model order) and task.
    """

    table: pd.DataFrame
    predictions: pd.DataFrame
    classes: tuple[str, ...]
    task: str = ""
    models: tuple[str, ...] = field(default=())

    def summary(self) -> pd.DataFrame:
        """Mean ± std over folds per model and metric, and the pooled value.

        Returns a table indexed by (model, metric) with columns ``mean``, ``std``, ``folds``,
        ``pooled`` (all points together) and ``text`` (``"0.812 ± 0.031"``).
        """
        t = self.table[self.table["region"] == "all"]
        per_fold = t[t["fold"] != "all"]
        pooled = t[t["fold"] == "all"].set_index(["model", "metric"])["value"]
        if len(per_fold):
            g = per_fold.groupby(["model", "metric"], sort=False)["value"]
            s = pd.DataFrame({"mean": g.mean(), "std": g.std(ddof=0), "folds": g.count()})
        else:
            s = pd.DataFrame({"mean": pooled, "std": np.nan, "folds": 0})
        s["pooled"] = pooled.reindex(s.index)
        s["text"] = [
            "nan" if np.isnan(m) else (f"{m:.3f}" if np.isnan(sd) else f"{m:.3f} ± {sd:.3f}")
            for m, sd in zip(s["mean"], s["std"])
        ]
        return s

    def plot(
        self, path: str | os.PathLike[str], *, region_metric: str = "balanced_accuracy"
    ) -> str:
        """Save a PNG: main metrics per model (bars, std over folds as error bars), and when
        regions were given a second panel with ``region_metric`` per region and model.

        Returns the path written.
        """
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        s = self.summary().reset_index()
        metrics = [m for m in MAIN_METRICS if m in set(s["metric"])]
        regions = sorted(set(self.table["region"]) - {"all"})
        fig = Figure(figsize=(10, 4 + (0.3 * len(regions) if regions else 0)), dpi=100)
        FigureCanvasAgg(fig)
        axes = fig.subplots(1, 2 if regions else 1, squeeze=False)[0]
        ax = axes[0]
        width = 0.8 / max(1, len(self.models))
        xs = np.arange(len(metrics))
        for i, name in enumerate(self.models):
            row = s[s["model"] == name].set_index("metric").reindex(metrics)
            err = row["std"].fillna(0).to_numpy()
            ax.bar(xs + i * width, row["mean"].to_numpy(), width, yerr=err, capsize=3, label=name)
        ax.set_xticks(xs + width * (len(self.models) - 1) / 2)
        ax.set_xticklabels(metrics, rotation=30, ha="right")
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("score (mean over folds ± std)")
        ax.set_title(f"{self.task}: {len(self.predictions) // max(1, len(self.models))} points")
        ax.legend(fontsize=8)
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
            ax2.set_xlabel(f"{region_metric} (all folds pooled)")
            ax2.set_title("per region")
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
            f"folds={sorted({f for f in self.table['fold'] if f != 'all'})} "
            f"regions={len(regions)}>"
        )
        return head + "\n" + wide.to_string()


def _is_fitted(model: Any) -> bool:
    return hasattr(model, "predict_points") or (
        hasattr(model, "predict_windows") and hasattr(model, "spec")
    )


def _predict_points(
    model: Any, cube: Any, obs: pd.DataFrame, *, batch_size: int = 64
) -> np.ndarray:
    """``(N, K)`` probabilities of a fitted model at observations.

    ``model.predict_points(cube, obs)`` when the model has it; a loaded MISO model (no such
    method) queries the centre of a crop around each point (:func:`miso_xr.training.crops.predict_points`);
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
        from .crops import predict_points

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

    Returns
    -------
    Report

    Examples
    --------
    >>> from miso_xr.training.baseline import RandomForestBaseline
    >>> def rf(cube, train):  # a factory: re-fitted on each fold's training points
    ...     return RandomForestBaseline(n_estimators=50).fit(cube, train)
    >>> report = evaluate([rf], cube, obs, folds=spatial_folds(obs, k=5))  # doctest: +SKIP
    >>> report.summary().loc[("rf", "balanced_accuracy"), "text"]           # doctest: +SKIP
    '0.781 ± 0.042'
    """
    from ..cube.grid import Grid
    from .folds import spatial_folds

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

    rows: list[dict[str, Any]] = []
    preds: list[pd.DataFrame] = []
    for name, model in zip(names, models):
        proba = np.full((len(labelled), len(classes)), np.nan)
        if _is_fitted(model):
            proba[:] = _check_proba(_predict_points(model, cube, labelled), model, name, classes)
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
        ok = np.isfinite(proba).all(axis=1)
        groups: list[tuple[Any, Any, np.ndarray]] = [("all", "all", ok)]
        if fold_l is not None:
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
                "fold": fold_l if fold_l is not None else "all",
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
        preds.append(p)
    table = pd.DataFrame(rows, columns=["model", "fold", "region", "metric", "value"])
    return Report(
        table=table,
        predictions=pd.concat(preds),
        classes=classes,
        task=str(obs.attrs.get("task", "")),
        models=tuple(names),
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
