"""spatial_folds: whole clusters per fold, near points together, balance, and errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import cdist

from miso_xr.exceptions import InputError, ObservationError
from miso_xr.training.folds import cluster_points, spatial_folds


def _clustered(n_clusters: int = 12, seed: int = 0) -> pd.DataFrame:
    """Campaign-like points: clusters of 1-20 points (spread 200 m) 5-50 km apart."""
    rng = np.random.default_rng(seed)
    xs, ys, cid = [], [], []
    for c in range(n_clusters):
        cx, cy = c * 50_000.0 + rng.uniform(0, 40_000), rng.uniform(0, 40_000)
        n = int(rng.integers(1, 21))
        xs.append(cx + rng.normal(0, 200, n))
        ys.append(cy + rng.normal(0, 200, n))
        cid += [c] * n
    idx = pd.Index(rng.permutation(10_000)[: len(cid)] + 100, name="pedon")  # not 0..n-1
    return pd.DataFrame({"x": np.concatenate(xs), "y": np.concatenate(ys), "truth": cid}, index=idx)


def _near_pairs_share_fold(obs: pd.DataFrame, folds: pd.Series, distance: float) -> bool:
    d = cdist(obs[["x", "y"]].to_numpy(), obs[["x", "y"]].to_numpy())
    i, j = np.nonzero(d <= distance)
    return bool((folds.to_numpy()[i] == folds.to_numpy()[j]).all())


def test_dbscan_keeps_clusters_whole_and_balances():
    obs = _clustered()
    folds = spatial_folds(obs, distance=1000, k=4)
    assert folds.index.equals(obs.index) and folds.dtype == np.int64 and folds.name == "fold"
    assert set(folds) == {0, 1, 2, 3}
    # the campaign clusters (5+ km apart, 200 m spread) are never split across folds
    assert (folds.groupby(obs["truth"]).nunique() == 1).all()
    assert _near_pairs_share_fold(obs, folds, 1000)
    assert folds.attrs["clusters"] == obs["truth"].nunique()
    # greedy largest-first dealing: fold sizes differ by at most the largest cluster
    sizes = folds.value_counts()
    assert sizes.max() - sizes.min() <= obs["truth"].value_counts().max()
    # same seed, same folds
    assert spatial_folds(obs, distance=1000, k=4, seed=0).equals(folds)


def test_block_and_random_methods():
    obs = _clustered(seed=1)
    folds = spatial_folds(obs, distance=10_000, k=3, method="block")
    block = (
        np.floor(obs["x"] / 10_000).astype(int).astype(str)
        + ","
        + np.floor(obs["y"] / 10_000).astype(int).astype(str)
    )
    assert (folds.groupby(block).nunique() == 1).all()  # one fold per block
    rnd = spatial_folds(obs, k=5, method="random", seed=3)
    counts = rnd.value_counts()
    assert counts.max() - counts.min() <= 1 and len(counts) == 5
    assert not rnd.equals(spatial_folds(obs, k=5, method="random", seed=4))


def test_cluster_points_single_linkage_chains():
    # 0 - 900 - 1800: each within 1000 m of the next, so one cluster though the ends are 1.8 km
    labels = cluster_points(np.array([0.0, 900.0, 1800.0, 5000.0]), np.zeros(4), distance=1000)
    assert labels.tolist() == [0, 0, 0, 1]


@settings(max_examples=25, deadline=None)
@given(
    pts=st.lists(st.tuples(st.floats(0, 20_000), st.floats(0, 20_000)), min_size=6, max_size=40),
    distance=st.floats(100, 3000),
)
def test_points_within_distance_share_a_fold(pts, distance):
    obs = pd.DataFrame(pts, columns=["x", "y"])
    n_clusters = int(cluster_points(obs["x"], obs["y"], distance=distance).max()) + 1
    if n_clusters < 2:
        with pytest.raises(ObservationError, match="only 1 spatial cluster"):
            spatial_folds(obs, distance=distance, k=2)
        return
    k = min(3, n_clusters)
    folds = spatial_folds(obs, distance=distance, k=k)
    assert _near_pairs_share_fold(obs, folds, distance)
    assert folds.nunique() == k


def test_errors():
    obs = _clustered(n_clusters=3)
    with pytest.raises(ObservationError, match=r"only 3 spatial cluster\(s\).*k <= 3"):
        spatial_folds(obs, distance=1000, k=5)
    with pytest.raises(InputError, match="k=1"):
        spatial_folds(obs, k=1)
    with pytest.raises(InputError, match="method='kmeans'"):
        spatial_folds(obs, method="kmeans")
    with pytest.raises(InputError, match="distance=-5"):
        spatial_folds(obs, distance=-5)
    with pytest.raises(ObservationError, match=r"lack column\(s\) \['y'\]"):
        spatial_folds(obs[["x"]])
    bad = obs.copy()
    bad.iloc[2, 0] = np.nan
    with pytest.raises(ObservationError, match="no finite x/y"):
        spatial_folds(bad)
    with pytest.raises(InputError, match="expected an observation table"):
        spatial_folds(obs.to_numpy())


def test_spatial_kfold_is_a_sklearn_splitter_with_the_same_folds():
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import cross_val_score

    from miso_xr import SpatialKFold

    obs = _clustered(seed=4)
    cv = SpatialKFold(4, distance=1000, seed=2)
    expected = spatial_folds(obs, distance=1000, k=4, seed=2).to_numpy()
    splits = list(cv.split(obs))
    assert cv.get_n_splits() == len(splits) == 4
    for f, (train, test) in enumerate(splits):
        assert np.array_equal(test, np.flatnonzero(expected == f))
        assert np.array_equal(train, np.flatnonzero(expected != f))  # no buffer: all the rest
    # an (n, 2) array of coordinates gives the same splits; sklearn takes the splitter as cv=
    same = list(cv.split(obs[["x", "y"]].to_numpy()))
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(splits, same))
    features, target = obs[["x", "y"]].to_numpy(), obs["truth"].to_numpy() % 2
    scores = cross_val_score(
        RandomForestClassifier(n_estimators=5, random_state=0), features, target, cv=cv
    )
    assert scores.shape == (4,)


def test_block_buffer_keeps_points_either_side_of_an_edge_apart():
    from miso_xr import SpatialKFold

    rng = np.random.default_rng(0)
    obs = pd.DataFrame({"x": rng.uniform(0, 10_000, 400), "y": rng.uniform(0, 10_000, 400)})
    plain = SpatialKFold(5, distance=2000, method="block")
    buffered = SpatialKFold(5, distance=2000, method="block", buffer=300)
    xy = obs[["x", "y"]].to_numpy()
    leaked = 0
    for (train0, test0), (train, test) in zip(plain.split(obs), buffered.split(obs)):
        assert np.array_equal(test0, test)
        d_plain = cdist(xy[train0], xy[test]).min(axis=1)
        leaked += int((d_plain < 300).sum())  # without a buffer, neighbours across edges train
        assert cdist(xy[train], xy[test]).min() > 300  # with it, none closer than the buffer
        assert set(train) == set(train0[d_plain > 300])  # and nothing farther is dropped
    assert leaked > 0


def test_spatial_kfold_groups_and_bad_inputs():
    from miso_xr import SpatialKFold

    obs = _clustered(seed=1)
    cv = SpatialKFold(3)
    groups = obs["truth"].to_numpy()
    for train, test in cv.split(obs, groups=groups):
        assert not set(groups[train]) & set(groups[test])  # a group never straddles a split
    with pytest.raises(InputError, match="n_splits=1"):
        SpatialKFold(1)
    with pytest.raises(InputError, match="buffer=-5"):
        SpatialKFold(3, buffer=-5)
    with pytest.raises(InputError, match="method='kmeans'"):
        SpatialKFold(3, method="kmeans")
    with pytest.raises(InputError, match=r"X has shape \(4, 3\)"):
        next(cv.split(np.zeros((4, 3))))
    with pytest.raises(ObservationError, match=r"X lacks column\(s\) \['y'\]"):
        next(cv.split(pd.DataFrame({"x": [1.0, 2.0]})))
    with pytest.raises(ObservationError, match="groups has 2 distinct"):
        next(cv.split(obs, groups=np.arange(len(obs)) % 2))
