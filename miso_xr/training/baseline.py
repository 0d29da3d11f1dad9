"""The Random Forest baseline MISO is compared with, behind the same predictor protocol.

A :class:`RandomForestBaseline` reads per-pixel features (the cube's values at a pixel) and
predicts class probabilities with scikit-learn's ``RandomForestClassifier``. It follows the
protocol in ``docs/architecture.md`` (``spec``, ``save``, ``from_checkpoint``,
``predict_windows``, ``to``), so ``cube.miso.predict(rf)``, the hub and ``miso_xr.load`` treat it
exactly like MISO.

The defaults are the reference's Random Forest (the MISO authors' ``RF/train_test_RF11.py``):
253 trees, ``max_depth=16``, ``min_samples_split=5``, on point-pixel features.

Feature sets
------------
``"pixel"`` (default): every optical band, every covariate (terrain, and climate layers whether
they sit in ``covariates`` or in a ``climate`` modality): the reference's point-pixel features.
SAR is left out, as in the reference; name it to use it. **No coordinates**: with the defaults a
map does not depend on where the pixels are, only on what they look like, so moving a scene
100 km gives the same map (tested). ``coordinates=True`` adds the pixel's lon/lat as two more
features (the reference's ``RF11`` list does end with lon, lat; it is an option here because
coordinates let a forest memorise the places it was trained on, which flatters it on
neighbouring points and says nothing of ground far away). ``"rf11"`` is ``"pixel"`` with
lon/lat. ``features=`` also takes a list mixing modality names (``"optical"``, ``"covariates"``,
``"sar"``, ``"climate"``), ``"lonlat"``, band names (``"B08"``, ``"elevation"``) and
``"modality:band"``.

Categorical layers (land-cover codes, e.g. NLCD): a band listed in its modality's
``attrs["categorical"]`` (``open_rasters(categorical=...)`` sets it) is used as its raw code.
Trees split on thresholds, so with enough depth they isolate single codes; one-hot columns would
only dilute the features a tree samples at each split. A missing code is filled with the most
frequent training code rather than a mean (a mean of codes is no class at all).

Checkpoints hold no pickle: every tree is stored as its node arrays and rebuilt through
scikit-learn's private tree state (see :mod:`miso_xr.training.forest_state`); the file records
the scikit-learn version and tree layout, and a scikit-learn whose layout differs gets a clear
:class:`~miso_xr.exceptions.CheckpointError` instead of a wrong forest. Predictions after a round
trip are identical.

Missing values: a NaN feature is replaced by the training mean of that feature (the mode for a
categorical one; stored in the checkpoint as the spec's normalisation mean) so a cloudy optical
pixel still gets a prediction from its other features; the inference layer masks NaN pixels
afterwards anyway.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..exceptions import (
    CheckpointError,
    IncompatibleCubeError,
    InputError,
    MissingBandError,
    ObservationError,
)
from ..spec import ModelSpec, Normalisation

__all__ = ["PIXEL", "RF11", "RandomForestBaseline"]

# the reference's point-pixel features: these modalities when the cube has them
PIXEL = ("optical", "covariates", "climate")
# the reference script's RF11 list: the point-pixel features, then lon/lat
RF11 = (*PIXEL, "lonlat")
_PRESETS = {"pixel": PIXEL, "rf11": RF11}
_LONLAT = ("lonlat", "location", "lon/lat")
_local = threading.local()


def _to_lonlat(crs: str, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """lon/lat of projected points; one transformer per thread (dask runs tasks in threads)."""
    cache = getattr(_local, "transformers", None)
    if cache is None:
        cache = _local.transformers = {}
    tr = cache.get(crs)
    if tr is None:
        from pyproj import Transformer

        tr = cache[crs] = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    lon, lat = tr.transform(np.asarray(x, dtype="float64"), np.asarray(y, dtype="float64"))
    return np.asarray(lon), np.asarray(lat)


def _resolve_features(
    cube: Any, features: str | Sequence[str], coordinates: bool = False
) -> tuple[tuple[tuple[str, tuple[str, ...]], ...], bool]:
    """(((modality, bands), ...), uses lon/lat) for a feature request on this cube."""
    from ..cube.grid import band_dim

    have = {
        str(m): [str(b) for b in cube[m][band_dim(str(m))].values]
        for m in cube.data_vars
        if band_dim(str(m)) in cube[m].dims
    }
    if isinstance(features, str):
        preset = _PRESETS.get(features.lower())
        if preset is None:
            raise InputError(
                f"features={features!r}: expected 'pixel' (the default), 'rf11' or a list of "
                "modality names, band names, 'modality:band' or 'lonlat'"
            )
        items: list[str] = [m for m in preset if m in have or m == "lonlat"]
        if not [m for m in items if m != "lonlat"]:
            raise MissingBandError(
                f"features={features!r} needs an 'optical', 'covariates' or 'climate' modality; "
                f"the cube has {sorted(have)}"
            )
    else:
        items = [str(f) for f in features]
        if not items:
            raise InputError("features=[] is empty; give at least one modality, band or 'lonlat'")
    chosen: dict[str, list[str]] = {}
    location = bool(coordinates)
    for item in items:
        if item.lower() in _LONLAT:
            location = True
            continue
        if item in have:
            bands = have[item]
            mod = item
        elif ":" in item:
            mod, band = item.split(":", 1)
            if mod not in have or band not in have[mod]:
                raise MissingBandError(
                    f"feature {item!r}: the cube has no band {band!r} in {mod!r}; it has "
                    + "; ".join(f"{m}: {' '.join(b)}" for m, b in have.items())
                )
            bands = [band]
        else:
            owners = [m for m, b in have.items() if item in b]
            if not owners:
                raise MissingBandError(
                    f"feature {item!r} is neither a modality nor a band of the cube; it has "
                    + "; ".join(f"{m}: {' '.join(b)}" for m, b in have.items())
                    + " (and 'lonlat')"
                )
            if len(owners) > 1:
                raise InputError(
                    f"feature {item!r} is a band of {owners}; write it as 'modality:{item}'"
                )
            mod, bands = owners[0], [item]
        for b in bands:
            if b not in chosen.setdefault(mod, []):
                chosen[mod].append(b)
    # modalities in name order: a spec's JSON (sort_keys) stores modalities as a sorted mapping,
    # so this is the order a checkpoint gives back, and the feature columns must not move
    return tuple((m, tuple(chosen[m])) for m in sorted(chosen)), location


def _categorical(cube: Any, modalities: Sequence[tuple[str, Sequence[str]]]) -> list[str]:
    """``"modality:band"`` names of the chosen bands that a modality marks as categorical."""
    out = []
    for m, bands in modalities:
        marked = cube[m].attrs.get("categorical", ())
        marked = [marked] if isinstance(marked, str) else [str(b) for b in marked]
        out += [f"{m}:{b}" for b in bands if b in marked]
    return out


class RandomForestBaseline:
    """Random Forest on per-pixel features, with the same face as MISO.

    Parameters
    ----------
    features
        ``"pixel"`` (default: optical + covariates + climate, whichever the cube has; see the
        module notes), ``"rf11"`` (``"pixel"`` and lon/lat) or a list of modality names, band
        names, ``"modality:band"`` and ``"lonlat"``.
    coordinates
        Add the pixel centre's lon/lat as two features (default ``False``: a map then depends
        only on the pixels' values, not on where they are). ``True`` is the package's earlier
        default and the reference script's full ``RF11`` list; it lets the forest memorise
        places, which flatters it near its training points and not far from them.
    n_estimators, max_depth, min_samples_split, min_samples_leaf, class_weight
        As in ``sklearn.ensemble.RandomForestClassifier``; the defaults (253, 16, 5, 1, None)
        are the reference's.
    window
        Window side (pixels) the inference layer hands to :meth:`predict_windows`. Pixels are
        independent for a forest, so windows do not overlap (stride = window).
    seed
        Random state of the forest (same seed and data, same trees).
    n_jobs
        Cores for fitting and predicting (``None``: one, which suits Dask workers that already
        run one task per core; ``-1``: all).

    Examples
    --------
    >>> rf = RandomForestBaseline().fit(cube, obs)                 # doctest: +SKIP
    >>> rf.feature_names[:2]                                        # doctest: +SKIP
    ['covariates:elevation', 'covariates:slope']
    >>> rf.predict_points(cube, obs).shape                          # doctest: +SKIP
    (120, 2)
    >>> maps = cube.miso.predict(rf)                                # doctest: +SKIP
    >>> sha = rf.save("rf.safetensors")                             # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        features: str | Sequence[str] = "pixel",
        coordinates: bool = False,
        n_estimators: int = 253,
        max_depth: int | None = 16,
        min_samples_split: int = 5,
        min_samples_leaf: int = 1,
        class_weight: str | dict[Any, float] | None = None,
        window: int = 64,
        seed: int = 0,
        n_jobs: int | None = None,
    ) -> None:
        if int(n_estimators) < 1:
            raise InputError(f"n_estimators={n_estimators!r}: need at least one tree")
        if int(window) < 1:
            raise InputError(f"window={window!r}: need a window of at least one pixel")
        if not isinstance(coordinates, bool):
            raise InputError(f"coordinates={coordinates!r}: expected True or False")
        self.features = features if isinstance(features, str) else tuple(features)
        self.coordinates = coordinates
        self.n_estimators = int(n_estimators)
        self.max_depth = max_depth
        self.min_samples_split = min_samples_split
        self.min_samples_leaf = min_samples_leaf
        self.class_weight = class_weight
        self.window = int(window)
        self.seed = int(seed)
        self.n_jobs = n_jobs
        self.spec: ModelSpec | None = None
        self.sha256: str | None = None
        self.source: str | None = None
        self.training: dict[str, Any] = {}
        self.forest_: Any = None
        self.fill_: np.ndarray | None = None
        self.class_index_: np.ndarray | None = None

    # ------------------------------------------------------------------ description
    @property
    def classes(self) -> tuple[str, ...]:
        return self._fitted_spec().classes

    @property
    def feature_names(self) -> list[str]:
        """Feature names in model order (``"optical:B04"``, ..., ``"lon"``, ``"lat"``)."""
        spec = self._fitted_spec()
        names = [f"{m}:{b}" for m, bands in spec.modalities for b in bands]
        return names + (["lon", "lat"] if spec.location else [])

    def __repr__(self) -> str:
        if self.spec is None:
            return (
                f"RandomForestBaseline(features={self.features!r}, "
                f"coordinates={self.coordinates}, n_estimators={self.n_estimators}, unfitted)"
            )
        return (
            f"RandomForestBaseline(task={self.spec.task!r}, classes={list(self.spec.classes)}, "
            f"{len(self.feature_names)} features, {self.n_estimators} trees)"
        )

    def _fitted_spec(self) -> ModelSpec:
        if self.spec is None or self.forest_ is None:
            raise InputError("this RandomForestBaseline is not fitted; call .fit(cube, obs) first")
        return self.spec

    def _config(self) -> dict[str, Any]:
        return {
            "features": self.features if isinstance(self.features, str) else list(self.features),
            "coordinates": self.coordinates,
            "n_estimators": self.n_estimators,
            "max_depth": self.max_depth,
            "min_samples_split": self.min_samples_split,
            "min_samples_leaf": self.min_samples_leaf,
            "class_weight": self.class_weight,
            "window": self.window,
            "seed": self.seed,
        }

    # ------------------------------------------------------------------ features
    def _point_features(self, cube: Any, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, ...]:
        """(features (N, F) with NaN, True where the cube had no value at all)."""
        from ..cube.grid import band_dim
        from .features import sample_points

        spec = self._spec_or_pending
        mods = [m for m, _ in spec.modalities]
        values = sample_points(cube, x, y, modalities=mods)
        cols = []
        for m, bands in spec.modalities:
            have = [str(b) for b in cube[m][band_dim(m)].values]
            cols.append(values[m][:, [have.index(b) for b in bands]])
        feats = np.concatenate(cols, axis=1) if cols else np.empty((x.size, 0), "float32")
        empty = np.isnan(feats).all(axis=1) if feats.shape[1] else ~np.isfinite(x)
        if spec.location:
            lon, lat = _to_lonlat(spec.crs, x, y)
            feats = np.concatenate([feats, np.column_stack([lon, lat]).astype("float32")], axis=1)
        return feats.astype("float32"), empty

    def _proba(self, feats: np.ndarray) -> np.ndarray:
        """Class probabilities (N, K) from raw features (NaN filled with training means)."""
        spec = self._fitted_spec()
        filled = np.where(np.isnan(feats), self.fill_[None, :], feats).astype("float32")
        out = np.zeros((feats.shape[0], len(spec.classes)), dtype="float32")
        if feats.shape[0]:
            out[:, self.class_index_] = self.forest_.predict_proba(filled)
        return out

    def _check_cube(self, cube: Any) -> Any:
        import xarray as xr

        from ..cube.grid import Grid, require_bands

        if not isinstance(cube, xr.Dataset):
            raise InputError(
                f"cube is a {type(cube).__name__}; expected an xr.Dataset (a MISO cube)"
            )
        spec = self._spec_or_pending
        require_bands(cube, dict(spec.modalities), needed_by="this Random Forest")
        grid = Grid.from_dataset(cube)
        if self.spec is not None:
            from pyproj import CRS

            if CRS.from_user_input(grid.crs) != CRS.from_user_input(self.spec.crs):
                raise IncompatibleCubeError(
                    f"the cube is in {grid.crs}; this Random Forest was trained in "
                    f"{self.spec.crs} (reproject the cube, e.g. open_stac(crs={self.spec.crs!r}))"
                )
        return grid

    # ------------------------------------------------------------------ fitting
    def fit(self, cube: Any, obs: Any) -> RandomForestBaseline:
        """Train on the cube's values at the labelled observations.

        Parameters
        ----------
        cube
            A MISO cube with the modalities of the feature set.
        obs
            An observation table from :func:`miso_xr.read_observations` (``x``, ``y``, and a
            Categorical ``label``; unlabelled rows and rows off the cube are left out).

        Returns
        -------
        RandomForestBaseline
            ``self``, fitted.
        """
        import pandas as pd
        from sklearn.ensemble import RandomForestClassifier

        from ..cube.grid import Grid
        from .features import points_xy
        from .provenance import points_record

        if not isinstance(obs, pd.DataFrame) or "label" not in obs.columns:
            raise ObservationError(
                "obs must be an observation table with a 'label' column (from "
                "miso_xr.read_observations)"
            )
        label = obs["label"]
        if not isinstance(label.dtype, pd.CategoricalDtype):
            raise ObservationError(
                f"obs['label'] is {label.dtype}; expected a Categorical of class names (use "
                "miso_xr.read_observations, which sets the classes in model order)"
            )
        classes = tuple(str(c) for c in label.cat.categories)
        grid = Grid.from_dataset(cube)
        modalities, location = _resolve_features(cube, self.features, self.coordinates)
        self._pending = ModelSpec(
            kind="random_forest",
            task=str(obs.attrs.get("task", "custom")),
            classes=classes,
            modalities=modalities,
            window=self.window,
            stride=self.window,
            resolution=float(grid.resolution),
            crs=grid.crs,
            location=location,
        )
        self._check_cube(cube)
        x, y = points_xy(obs, grid.crs)
        feats, empty = self._point_features(cube, x, y)
        codes = label.cat.codes.to_numpy()
        use = (codes >= 0) & ~empty
        if not use.any():
            raise ObservationError(
                f"no labelled observation has cube values: {int((codes >= 0).sum())} labelled, "
                f"{int(((codes >= 0) & empty).sum())} of them off the cube or on nodata"
            )
        X, yv = feats[use], codes[use]
        with np.errstate(invalid="ignore"):
            # a feature NaN at every training point gets 0 (it then carries no information)
            all_nan = np.isnan(X).all(axis=0)
            safe = np.where(all_nan[None, :], 0.0, X)  # keeps nanmean quiet on empty columns
            fill = np.where(all_nan, 0.0, np.nanmean(safe, axis=0))
            std = np.where(all_nan, 1.0, np.nanstd(safe, axis=0))
        categorical = _categorical(cube, modalities)
        names = self._names(modalities, location)
        for j, name in enumerate(names):
            if name in categorical and not all_nan[j]:
                # a code's mean is no class: a missing code takes the most frequent one
                codes_j, counts_j = np.unique(X[~np.isnan(X[:, j]), j], return_counts=True)
                fill[j] = codes_j[np.argmax(counts_j)]
        fill = np.nan_to_num(fill.astype("float32"))
        forest = RandomForestClassifier(
            n_estimators=self.n_estimators,
            max_depth=self.max_depth,
            min_samples_split=self.min_samples_split,
            min_samples_leaf=self.min_samples_leaf,
            class_weight=self.class_weight,
            random_state=self.seed,
            n_jobs=self.n_jobs,
        )
        forest.fit(np.where(np.isnan(X), fill[None, :], X), yv)
        norm, i = [], 0
        for m, bands in modalities:
            n = len(bands)
            norm.append(
                (
                    m,
                    Normalisation(
                        tuple(map(float, fill[i : i + n])), tuple(map(float, std[i : i + n]))
                    ),
                )
            )
            i += n
        counts = np.bincount(yv, minlength=len(classes))
        self.spec = dataclasses.replace(
            self._pending,
            normalisation=tuple(norm),
            extra=(("features", ",".join(names)),)
            + ((("categorical", ",".join(categorical)),) if categorical else ()),
        )
        self.forest_ = forest
        self.fill_ = fill
        self.class_index_ = forest.classes_.astype("int64")
        self.training = {
            "n_observations": int(use.sum()),
            "n_skipped": int(len(obs) - use.sum()),
            "class_counts": {c: int(n) for c, n in zip(classes, counts)},
            "source": str(obs.attrs.get("source", "")),
            # the points the forest saw: evaluate scores it only away from them
            "points": points_record(x[use], y[use], grid.crs),
        }
        self.sha256 = self.source = None
        del self._pending
        return self

    @staticmethod
    def _names(modalities: Sequence[tuple[str, Sequence[str]]], location: bool) -> list[str]:
        return [f"{m}:{b}" for m, bands in modalities for b in bands] + (
            ["lon", "lat"] if location else []
        )

    @property
    def _spec_or_pending(self) -> ModelSpec:
        pending = getattr(self, "_pending", None)
        return pending if pending is not None else self._fitted_spec()

    # ------------------------------------------------------------------ prediction
    def predict_points(self, cube: Any, obs_or_xy: Any) -> np.ndarray:
        """Class probabilities ``(N, K)`` at points (NaN rows for points off the cube).

        ``obs_or_xy``: an observation table (reprojected to the cube's CRS if needed) or a pair
        ``(x, y)`` of arrays in the cube's CRS.
        """
        from .features import points_xy

        grid = self._check_cube(cube)
        x, y = points_xy(obs_or_xy, grid.crs)
        feats, empty = self._point_features(cube, x, y)
        proba = self._proba(feats)
        proba[empty] = np.nan
        return proba

    def predict_windows(
        self, inputs: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray, *, device: str = "cpu"
    ) -> np.ndarray:
        """Per-pixel class probabilities ``(N, K, W, W)`` of windows (the predictor protocol).

        ``inputs[mod]`` is ``(N, C, W, W)`` raw cube values in spec band order; ``x`` ``(N, W)``
        and ``y`` ``(N, W)`` the pixel-centre coordinates of the windows' columns and rows.
        ``device`` is accepted for the protocol; a forest runs on CPU.
        """
        spec = self._fitted_spec()
        x = np.asarray(x, dtype="float64")
        y = np.asarray(y, dtype="float64")
        if x.ndim != 2 or y.ndim != 2:
            raise InputError(f"x and y must be (N, W); got shapes {x.shape} and {y.shape}")
        n, w = x.shape[0], x.shape[1]
        cols = []
        for m, bands in spec.modalities:
            if m not in inputs:
                raise MissingBandError(
                    f"inputs have no modality {m!r}; this Random Forest needs "
                    f"{[mm for mm, _ in spec.modalities]}"
                )
            arr = np.asarray(inputs[m], dtype="float32")
            if arr.shape != (n, len(bands), y.shape[1], w):
                raise InputError(
                    f"inputs[{m!r}] has shape {arr.shape}; expected {(n, len(bands), y.shape[1], w)}"
                )
            cols.append(arr.transpose(0, 2, 3, 1).reshape(-1, len(bands)))
        h = y.shape[1]
        if spec.location:
            xx = np.broadcast_to(x[:, None, :], (n, h, w)).ravel()
            yy = np.broadcast_to(y[:, :, None], (n, h, w)).ravel()
            lon, lat = _to_lonlat(spec.crs, xx, yy)
            cols.append(np.column_stack([lon, lat]).astype("float32"))
        feats = np.concatenate(cols, axis=1)
        # bounded memory: a forest's predict_proba holds (pixels, trees) work arrays
        out = np.empty((feats.shape[0], len(spec.classes)), dtype="float32")
        step = 1 << 16
        for i in range(0, feats.shape[0], step):
            out[i : i + step] = self._proba(feats[i : i + step])
        return np.ascontiguousarray(out.reshape(n, h, w, -1).transpose(0, 3, 1, 2))

    def to(self, device: Any) -> RandomForestBaseline:
        """The protocol's device move: a forest stays on CPU, so this returns ``self``."""
        return self

    # ------------------------------------------------------------------ checkpoints
    def save(self, path: str | os.PathLike[str]) -> str:
        """Write the forest to a ``.safetensors`` checkpoint (no pickle); return its sha256.

        The file records the scikit-learn version and tree layout it was written with
        (``config["sklearn"]``), which :meth:`from_checkpoint` checks.
        """
        from pathlib import Path

        from ..checkpoint import write_checkpoint
        from .forest_state import forest_tensors

        spec = self._fitted_spec()
        tensors, layout = forest_tensors(self.forest_)
        tensors["fill"] = self.fill_.astype("float32")
        tensors["class_index"] = self.class_index_.astype("int64")
        config = self._config() | {
            "n_features": int(self.forest_.n_features_in_),
            "n_forest_classes": int(self.forest_.n_classes_),
            "feature_names": self.feature_names,
            "sklearn": layout,
        }
        sha = write_checkpoint(path, tensors, spec=spec, config=config, training=self.training)
        self.sha256, self.source = sha, str(Path(path).resolve())
        return sha

    @classmethod
    def from_checkpoint(cls, tensors: dict[str, np.ndarray], info: Any) -> RandomForestBaseline:
        """Rebuild from checkpoint tensors and metadata (see :func:`miso_xr.checkpoint.load_checkpoint`).

        Raises :class:`~miso_xr.exceptions.CheckpointError` when the installed scikit-learn
        stores trees differently from the one that wrote the file (see
        :mod:`miso_xr.training.forest_state`).
        """
        from sklearn.ensemble import RandomForestClassifier
        from sklearn.tree import DecisionTreeClassifier

        from .forest_state import rebuild_trees

        cfg = dict(info.config)
        try:
            n_features = int(cfg["n_features"])
            n_cls = int(cfg["n_forest_classes"])
            # a checkpoint from before the defaults changed states every setting it used
            model = cls(
                features=cfg.get("features", "rf11"),
                coordinates=bool(cfg.get("coordinates", False)),
                n_estimators=len(tensors["max_depth"]),
                max_depth=cfg.get("max_depth"),
                min_samples_split=cfg.get("min_samples_split", 2),
                min_samples_leaf=cfg.get("min_samples_leaf", 1),
                class_weight=cfg.get("class_weight"),
                window=int(info.spec.window),
                seed=int(cfg.get("seed", 0)),
            )
            trees = rebuild_trees(
                tensors,
                n_trees=model.n_estimators,
                n_features=n_features,
                n_classes=n_cls,
                recorded=cfg.get("sklearn"),
            )
            params = dict(
                max_depth=model.max_depth,
                min_samples_split=model.min_samples_split,
                min_samples_leaf=model.min_samples_leaf,
                class_weight=model.class_weight,
            )
            estimators = []
            for tree in trees:
                est = DecisionTreeClassifier(max_features="sqrt", **params)
                est.tree_ = tree
                est.n_features_in_ = n_features
                est.n_outputs_ = 1
                est.n_classes_ = n_cls
                est.classes_ = np.arange(n_cls, dtype="float64")
                est.max_features_ = max(1, int(np.sqrt(n_features)))
                estimators.append(est)
        except (KeyError, ValueError, TypeError) as err:
            raise CheckpointError(
                f"random forest checkpoint is malformed ({err!r}); it needs fill, class_index, "
                "max_depth and tree.NNNNN.<node field> arrays"
            ) from err
        forest = RandomForestClassifier(n_estimators=len(estimators), n_jobs=model.n_jobs, **params)
        forest.estimators_ = estimators
        forest.estimator_ = DecisionTreeClassifier()
        forest.n_features_in_ = n_features
        forest.n_outputs_ = 1
        forest.n_classes_ = n_cls
        forest.classes_ = tensors["class_index"].astype("int64")
        names = cls._names(info.spec.modalities, info.spec.location)
        if cfg.get("feature_names", names) != names:
            raise CheckpointError(
                f"random forest checkpoint lists features {cfg.get('feature_names')} but its spec "
                f"gives {names}; the file was edited or written by an incompatible version"
            )
        model.forest_ = forest
        model.fill_ = np.asarray(tensors["fill"], dtype="float32")
        model.class_index_ = np.asarray(tensors["class_index"], dtype="int64")
        model.spec = info.spec
        model.training = dict(info.training)
        return model
