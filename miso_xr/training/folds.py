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
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..exceptions import InputError, ObservationError

__all__ = ["spatial_folds", "cluster_points"]

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
    rng = np.random.default_rng(seed)
    sizes = np.bincount(clusters)
    # largest clusters first; random order among equal sizes (lexsort: last key is primary)
    order = np.lexsort((rng.permutation(n_clusters), -sizes))
    load = np.zeros(k, dtype="int64")
    fold_of = np.empty(n_clusters, dtype="int64")
    tiebreak = rng.permutation(k) if method == "random" else np.arange(k)
    for c in order:
        # the emptiest fold; among equally empty folds the first in (seeded) tiebreak order
        f = tiebreak[np.argmin(load[tiebreak])]
        fold_of[c] = f
        load[f] += sizes[c]
    folds = pd.Series(fold_of[clusters], index=obs.index, name="fold", dtype="int64")
    folds.attrs["clusters"] = n_clusters
    folds.attrs["method"] = method
    folds.attrs["distance"] = float(distance)
    return folds
