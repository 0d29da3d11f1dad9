"""Spatial cross-validation folds: nearby points never sit on both sides of a train/test split.

Field points cluster (a transect, a watershed campaign), and points a few hundred metres apart
share terrain, vegetation and often the label. Random folds then test on near-copies of training
points and overstate accuracy. :func:`spatial_folds` groups points into clusters first and deals
whole clusters to folds:

- ``"dbscan"`` (default): DBSCAN with ``eps=distance`` and ``min_samples=1``, i.e. single-linkage
  chains: two points closer than ``distance`` are always in the same cluster, hence the same fold;
- ``"block"``: square blocks of side ``distance`` on the projected grid (cheaper, the usual
  "spatial block CV");
- ``"random"``: plain random folds, for comparison only.

Clusters are dealt largest first to the fold with the fewest points so far (ties broken at
random with ``seed``), which balances fold sizes as well as whole clusters allow.

:class:`SpatialKFold` is the same as a scikit-learn splitter (``split(X, y, groups)``), with an
optional ``buffer``: training points closer than ``buffer`` to any test point are left out of that
split's training set, so two points either side of a block edge cannot leak into each other.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..exceptions import InputError, ObservationError

__all__ = ["SpatialKFold", "buffered_split", "cluster_points", "spatial_folds"]

_METHODS = ("dbscan", "block", "random")


def cluster_points(
    x: np.ndarray, y: np.ndarray, *, distance: float, method: str = "dbscan"
) -> np.ndarray:
    """Cluster id per point (``int64``); see :func:`spatial_folds` for the methods.

    >>> cluster_points(np.array([0.0, 500.0, 5000.0]), np.zeros(3), distance=1000).tolist()
    [0, 0, 1]
    """
    x = np.asarray(x, dtype="float64")
    y = np.asarray(y, dtype="float64")
    if method == "dbscan":
        from sklearn.cluster import DBSCAN

        xy = np.column_stack([x, y])
        # a point exactly `distance` away joins too (DBSCAN uses <= eps)
        labels = DBSCAN(eps=float(distance), min_samples=1, algorithm="ball_tree").fit_predict(xy)
        return np.unique(labels, return_inverse=True)[1].astype("int64")
    if method == "block":
        bx = np.floor(x / distance).astype("int64")
        by = np.floor(y / distance).astype("int64")
        keys = pd.MultiIndex.from_arrays([bx, by])
        return pd.factorize(keys)[0].astype("int64")
    if method == "random":
        return np.arange(x.size, dtype="int64")
    raise InputError(f"method={method!r}: expected one of {list(_METHODS)}")


def spatial_folds(
    obs: pd.DataFrame,
    *,
    distance: float = 1000,
    k: int = 5,
    method: str = "dbscan",
    seed: int = 0,
) -> pd.Series:
    """Assign each observation to one of ``k`` spatially separated folds.

    Parameters
    ----------
    obs
        An observation table with projected ``x``, ``y`` (as from
        :func:`miso_xr.read_observations`), in metres for the usual CRSs.
    distance
        Points closer than this (CRS units) end in the same fold (``"dbscan"``); block side
        (``"block"``). Ignored by ``"random"``.
    k
        Number of folds (2 or more, at most the number of clusters).
    method
        ``"dbscan"``, ``"block"`` or ``"random"``.
    seed
        Seed of the tie-breaking (and of ``"random"``); same seed, same folds.

    Returns
    -------
    pandas.Series
        ``int64`` fold number ``0..k-1`` per row, index aligned with ``obs``, named ``"fold"``;
        ``attrs["clusters"]`` holds the number of clusters.

    Examples
    --------
    >>> import pandas as pd
    >>> obs = pd.DataFrame({"x": [0.0, 300.0, 5000.0, 5200.0, 9000.0, 20000.0],
    ...                     "y": [0.0] * 6})
    >>> spatial_folds(obs, distance=1000, k=3).tolist()  # two pairs, and two loners together
    [1, 1, 0, 0, 2, 2]
    """
    if not isinstance(obs, pd.DataFrame):
        raise InputError(
            f"obs is a {type(obs).__name__}; expected an observation table (pandas DataFrame "
            "with x and y columns) as read by miso_xr.read_observations"
        )
    missing = [c for c in ("x", "y") if c not in obs.columns]
    if missing:
        raise ObservationError(
            f"observations lack column(s) {missing}; found {[str(c) for c in obs.columns]}. "
            "spatial_folds needs projected x and y (read_observations gives them)"
        )
    if method not in _METHODS:
        raise InputError(f"method={method!r}: expected one of {list(_METHODS)}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2:
        raise InputError(f"k={k!r}: the number of folds must be an integer >= 2")
    if method != "random" and not (np.isfinite(distance) and distance > 0):
        raise InputError(f"distance={distance!r}: must be a positive distance in the CRS's units")
    x = pd.to_numeric(obs["x"], errors="coerce").to_numpy("float64")
    y = pd.to_numeric(obs["y"], errors="coerce").to_numpy("float64")
    bad = ~(np.isfinite(x) & np.isfinite(y))
    if bad.any():
        raise ObservationError(
            f"{int(bad.sum())} observation(s) have no finite x/y (first at row "
            f"{obs.index[np.flatnonzero(bad)[0]]!r}); drop them (read_observations does)"
        )
    if len(obs) < k:
        raise ObservationError(f"{len(obs)} observation(s) cannot fill k={k} folds")
    clusters = cluster_points(x, y, distance=float(distance), method=method)
    n_clusters = int(clusters.max()) + 1
    if n_clusters < k:
        raise ObservationError(
            f"the {len(obs)} observations form only {n_clusters} spatial cluster(s) at "
            f"distance={distance} ({method}); k={k} folds need at least {k}. Use a smaller "
            f"distance or k <= {n_clusters}"
        )
    folds = pd.Series(
        _deal(clusters, k, seed=seed, shuffle=method == "random"),
        index=obs.index,
        name="fold",
        dtype="int64",
    )
    folds.attrs["clusters"] = n_clusters
    folds.attrs["method"] = method
    folds.attrs["distance"] = float(distance)
    return folds


def _deal(clusters: np.ndarray, k: int, *, seed: int, shuffle: bool) -> np.ndarray:
    """Fold per point: whole clusters, largest first, each to the emptiest fold so far."""
    n_clusters = int(clusters.max()) + 1
    rng = np.random.default_rng(seed)
    sizes = np.bincount(clusters)
    # largest clusters first; random order among equal sizes (lexsort: last key is primary)
    order = np.lexsort((rng.permutation(n_clusters), -sizes))
    load = np.zeros(k, dtype="int64")
    fold_of = np.empty(n_clusters, dtype="int64")
    tiebreak = rng.permutation(k) if shuffle else np.arange(k)
    for c in order:
        # the emptiest fold; among equally empty folds the first in (seeded) tiebreak order
        f = tiebreak[np.argmin(load[tiebreak])]
        fold_of[c] = f
        load[f] += sizes[c]
    return fold_of[clusters]


def buffered_split(
    x: np.ndarray, y: np.ndarray, test: np.ndarray, *, buffer: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """``(train, test)`` row positions for one fold: the rest, less points within ``buffer``.

    ``test`` is a boolean mask of the held-out points. A point not held out is left out of
    training too when it lies within ``buffer`` (CRS units) of a held-out point: what a block
    edge would otherwise let leak (a test point and its near neighbour across the edge).

    >>> x = np.array([0.0, 90.0, 110.0, 500.0]); test = np.array([False, True, False, False])
    >>> [t.tolist() for t in buffered_split(x, np.zeros(4), test, buffer=50)]
    [[0, 3], [1]]
    """
    test = np.asarray(test, dtype=bool)
    train = ~test
    if buffer > 0 and test.any() and train.any():
        from scipy.spatial import cKDTree

        pts = np.column_stack([np.asarray(x, "float64"), np.asarray(y, "float64")])
        dist, _ = cKDTree(pts[test]).query(pts[train], k=1, distance_upper_bound=buffer)
        near = np.zeros(test.size, dtype=bool)
        near[np.flatnonzero(train)] = dist <= buffer
        train &= ~near
    return np.flatnonzero(train), np.flatnonzero(test)


@dataclass(frozen=True)
class SpatialKFold:
    """Spatial K-fold cross-validation as a scikit-learn splitter.

    Parameters
    ----------
    n_splits
        Number of folds (``k`` of :func:`spatial_folds`).
    distance
        Cluster distance (``"dbscan"``) or block side (``"block"``), CRS units.
    method
        ``"dbscan"``, ``"block"`` or ``"random"``, as :func:`spatial_folds`.
    buffer
        Training points within this distance (CRS units) of a test point are dropped from that
        split's training set (0: none). With ``"block"``, a buffer of the model's reach (e.g. half
        a crop) keeps points either side of a block edge apart.
    seed
        Seed of the fold dealing.

    Notes
    -----
    ``split(X, y=None, groups=None)`` takes ``X`` as an observation table with ``x``/``y``
    columns (:func:`miso_xr.read_observations`) or an ``(n, 2)`` array of x, y; ``groups``, when
    given, are cluster ids used instead of clustering (as ``GroupKFold``). It yields
    ``(train, test)`` integer positions, so it plugs into ``cross_val_score(..., cv=...)`` and
    ``GridSearchCV`` (pass the coordinates as ``X`` of the splitter there, e.g. via
    ``cv=list(SpatialKFold(...).split(obs))``).

    Examples
    --------
    >>> import pandas as pd
    >>> obs = pd.DataFrame({"x": [0.0, 300.0, 5000.0, 5200.0, 9000.0, 20000.0], "y": [0.0] * 6})
    >>> cv = SpatialKFold(3, distance=1000)
    >>> [test.tolist() for _, test in cv.split(obs)]
    [[2, 3], [0, 1], [4, 5]]
    """

    n_splits: int = 5
    distance: float = 1000.0
    method: str = "dbscan"
    buffer: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        k = self.n_splits
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2:
            raise InputError(f"n_splits={k!r}: the number of folds must be an integer >= 2")
        if self.method not in _METHODS:
            raise InputError(f"method={self.method!r}: expected one of {list(_METHODS)}")
        if not (np.isfinite(self.buffer) and self.buffer >= 0):
            raise InputError(f"buffer={self.buffer!r}: must be a distance >= 0 in the CRS's units")

    def get_n_splits(self, X: Any = None, y: Any = None, groups: Any = None) -> int:
        """The number of folds (scikit-learn's splitter protocol)."""
        return int(self.n_splits)

    def folds(self, X: Any, groups: Any = None) -> np.ndarray:
        """Fold number ``0..n_splits-1`` per row of ``X``."""
        x, y = _coordinates(X)
        table = pd.DataFrame({"x": x, "y": y})
        if groups is None:
            return spatial_folds(
                table, distance=self.distance, k=self.n_splits, method=self.method, seed=self.seed
            ).to_numpy()
        groups = np.asarray(groups)
        if groups.shape != x.shape:
            raise InputError(f"groups has {groups.size} values for {x.size} rows of X")
        ids = pd.factorize(groups)[0].astype("int64")
        if ids.min(initial=0) < 0:
            raise InputError("groups has missing values; give every row a group")
        n_groups = int(ids.max()) + 1 if ids.size else 0
        if n_groups < self.n_splits:
            raise ObservationError(
                f"groups has {n_groups} distinct value(s); n_splits={self.n_splits} needs as many"
            )
        return _deal(ids, self.n_splits, seed=self.seed, shuffle=False)

    def split(
        self, X: Any, y: Any = None, groups: Any = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(train, test)`` row positions, one pair per fold, fold 0 first."""
        x, yy = _coordinates(X)
        fold = self.folds(X, groups)
        for f in range(self.n_splits):
            yield buffered_split(x, yy, fold == f, buffer=float(self.buffer))


def _coordinates(X: Any) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(X, pd.DataFrame):
        if not {"x", "y"} <= set(X.columns):
            raise ObservationError(
                f"X lacks column(s) {sorted({'x', 'y'} - set(X.columns))}; SpatialKFold.split "
                "takes an observation table with x and y (read_observations) or an (n, 2) array"
            )
        xy = X[["x", "y"]].to_numpy("float64")
    else:
        xy = np.asarray(X, dtype="float64")
        if xy.ndim != 2 or xy.shape[1] != 2:
            raise InputError(
                f"X has shape {xy.shape}; SpatialKFold.split takes an observation table with x "
                "and y columns or an (n, 2) array of x, y coordinates"
            )
    if not np.isfinite(xy).all():
        raise ObservationError("X has non-finite coordinates; drop them (read_observations does)")
    return xy[:, 0], xy[:, 1]
