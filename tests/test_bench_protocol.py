"""The extrapolation benchmark's protocol (benchmarks/extrapolation.py): parts, field sites, scores.

These helpers decide what a model is allowed to see, so a bug here would make the benchmark's
"never seen" part a lie; they are tested like package code.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from miso_xr.cube.grid import Grid

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from extrapolation import (  # noqa: E402
    DIRECTIONS,
    far_side_split,
    sample_clusters,
    score,
    validation_sites,
)

RES = 50.0


def _blob(h: int = 60, w: int = 80) -> np.ndarray:
    """An irregular watershed-like mask with a hole."""
    rr, cc = np.mgrid[0:h, 0:w]
    inside = ((rr - h / 2) / (h / 2)) ** 2 + ((cc - w / 2) / (w / 2)) ** 2 < 1.0
    inside[25:30, 10:14] = False
    return inside


def _min_distance(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.spatial import cKDTree

    pa, pb = np.argwhere(a), np.argwhere(b)
    return float(cKDTree(pa).query(pb)[0].min())


@pytest.mark.parametrize("direction", sorted(DIRECTIONS))
def test_parts_are_disjoint_usable_and_a_gap_apart(direction):
    usable = _blob()
    train, test = far_side_split(usable, direction=direction, train_fraction=0.35, gap=12)
    assert not (train & test).any()
    assert not (train & ~usable).any() and not (test & ~usable).any()
    assert train.sum() >= 0.35 * usable.sum()
    assert train.sum() < 0.45 * usable.sum()
    assert _min_distance(train, test) > 12  # in cells, centre to centre
    # every test cell lies further along the direction than every training cell
    dr, dc = DIRECTIONS[direction]
    u = dr * np.indices(usable.shape)[0] + dc * np.indices(usable.shape)[1]
    assert u[test].min() > u[train].max() + 12
    # the gap holds only the cells between: training + gap + test = usable
    gap = usable & ~train & ~test
    assert (u[gap] > u[train].max()).all() and (u[gap] < u[test].min()).all()


def test_split_refuses_a_gap_that_leaves_no_test_part():
    with pytest.raises(ValueError, match="no usable cell lies more than gap=70"):
        far_side_split(_blob(), direction="east", train_fraction=0.4, gap=70)
    with pytest.raises(ValueError, match="direction='up'"):
        far_side_split(_blob(), direction="up")
    with pytest.raises(ValueError, match="2-D boolean"):
        far_side_split(_blob().astype(int))


def _stream(grid: Grid) -> np.ndarray:
    """A meandering 'stream' across the whole grid (both parts), as vertex coordinates."""
    t = np.linspace(0, 1, 400)
    cols = t * (grid.width - 1)
    rows = grid.height / 2 + 0.3 * grid.height * np.sin(6 * t)
    return np.column_stack([grid.x[0] + cols * RES, grid.y[0] - rows * RES])


def test_clusters_lie_in_the_training_part_around_spaced_sites():
    grid = Grid("EPSG:32606", 400_000.0, 7_200_000.0, RES, 80, 60)
    usable = _blob(60, 80)
    train, test = far_side_split(usable, direction="east", train_fraction=0.4, gap=10)
    rng = np.random.default_rng(3)
    pts, sites = sample_clusters(
        _stream(grid), grid, train, n_sites=5, per_site=12, radius=250.0, spacing=600.0, rng=rng
    )
    assert len(sites) >= 2 and len(pts) == 12 * len(sites)
    assert train[pts["row"], pts["col"]].all()
    assert not test[pts["row"], pts["col"]].any()
    # coordinates are the cells' centres, each within radius of its own site
    assert np.allclose(pts["x"], grid.x[pts["col"]]) and np.allclose(pts["y"], grid.y[pts["row"]])
    d = np.hypot(pts["x"] - sites[pts["site"], 0], pts["y"] - sites[pts["site"], 1])
    assert d.max() <= 250.0
    assert not pts.duplicated(["row", "col"]).any()
    pair = np.hypot(*(sites[:, None, :] - sites[None, :, :]).transpose(2, 0, 1))
    assert pair[~np.eye(len(sites), dtype=bool)].min() >= 600.0
    # every site sits in the training part (never on the stream's far-side stretch)
    r, c = grid.index(sites[:, 0], sites[:, 1])
    assert train[r, c].all()


def test_clusters_follow_the_seed():
    grid = Grid("EPSG:32606", 400_000.0, 7_200_000.0, RES, 80, 60)
    train, _ = far_side_split(_blob(60, 80), direction="east", train_fraction=0.4, gap=10)
    kw = {"n_sites": 4, "per_site": 10, "radius": 250.0, "spacing": 600.0}
    a, _ = sample_clusters(_stream(grid), grid, train, rng=np.random.default_rng(1), **kw)
    b, _ = sample_clusters(_stream(grid), grid, train, rng=np.random.default_rng(1), **kw)
    c, _ = sample_clusters(_stream(grid), grid, train, rng=np.random.default_rng(2), **kw)
    assert a.equals(b)
    assert not a[["row", "col"]].equals(c[["row", "col"]])


def test_too_few_sites_is_an_error():
    grid = Grid("EPSG:32606", 400_000.0, 7_200_000.0, RES, 80, 60)
    train, _ = far_side_split(_blob(60, 80), direction="east", train_fraction=0.4, gap=10)
    far_east = np.array([[grid.x[-3], grid.y[30]]])  # the only candidate lies in the test part
    with pytest.raises(ValueError, match="only 0 field site"):
        sample_clusters(
            far_east,
            grid,
            train,
            n_sites=3,
            per_site=5,
            radius=100.0,
            spacing=200.0,
            rng=np.random.default_rng(0),
        )


def test_validation_takes_the_sites_nearest_the_test_side():
    grid = Grid("EPSG:32606", 0.0, 1000.0, 10.0, 100, 100)
    sites = np.array([[105.0, 500.0], [505.0, 505.0], [305.0, 505.0], [705.0, 505.0]])
    assert validation_sites(sites, grid, direction="east", fraction=0.25).tolist() == [3]
    assert validation_sites(sites, grid, direction="west", fraction=0.5).tolist() == [0, 2]
    # never every site: one is left to train on
    assert len(validation_sites(sites[:2], grid, direction="east", fraction=0.9)) == 1


def test_scores_of_known_predictions():
    truth = np.array([0, 0, 0, 1, 1])
    good = np.array([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.3, 0.7], [0.45, 0.55]])
    s = score(truth, good, ("absent", "present"), "present")
    assert s["balanced_accuracy"] == 1.0 and s["roc_auc"] == 1.0 and s["recall_present"] == 1.0
    s = score(truth, good[:, ::-1], ("absent", "present"), "present")
    assert s["balanced_accuracy"] == 0.0 and s["roc_auc"] == 0.0
    # all 'absent': accuracy 0.6 but balanced accuracy 0.5 and no permafrost found
    s = score(truth, np.tile([0.9, 0.1], (5, 1)), ("absent", "present"), "present")
    assert s["accuracy"] == pytest.approx(0.6) and s["balanced_accuracy"] == 0.5
    assert s["recall_present"] == 0.0
    # multi-class: a class absent from the test part does not count in balanced accuracy
    truth3 = np.array([0, 0, 2, 2])
    prob3 = np.array([[0.7, 0.2, 0.1], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8], [0.1, 0.1, 0.8]])
    s = score(truth3, prob3, ("a", "b", "c"))
    assert s["balanced_accuracy"] == pytest.approx(0.75)
    assert set(s["recall_per_class"]) == {"a", "c"}


def test_real_watershed_split_keeps_the_field_work_away_from_the_test_part(shared_data):
    """On the CPCRW grid and its streams: every training point > 2 km from every test cell."""
    import geopandas as gpd

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import bench_cpcrw

    data = shared_data / "cpcrw_permafrost_alter2025"
    grid, layers = bench_cpcrw.load(data)
    usable = np.isfinite(layers["truth"])
    train, test = far_side_split(usable, direction="east", train_fraction=0.4, gap=40)
    streams = gpd.read_file(data / bench_cpcrw.STREAMS).to_crs(grid.crs)
    pts, sites = sample_clusters(
        streams.geometry.get_coordinates().to_numpy(),
        grid,
        train,
        n_sites=10,
        per_site=30,
        radius=400.0,
        spacing=1000.0,
        rng=np.random.default_rng(0),
    )
    assert len(sites) == 10 and len(pts) == 300
    rows, cols = np.nonzero(test)
    from scipy.spatial import cKDTree

    d, _ = cKDTree(np.column_stack([grid.x[cols], grid.y[rows]])).query(pts[["x", "y"]])
    assert d.min() > 2000.0


def test_the_pretrained_row_calls_pretrain_with_the_arguments_it_takes(monkeypatch):
    import extrapolation

    import miso_xr

    calls = []

    def pretrain(cube, *, config, epochs, seed):  # no window, device or progress
        calls.append((cube, config, epochs, seed))
        return "backbone.safetensors"

    monkeypatch.setattr(miso_xr, "pretrain", pretrain, raising=False)
    cube = object()
    settings = extrapolation.Settings(config="micro", pretrain_epochs=2, window=32)
    backbone, how = extrapolation._pretrain(cube, settings, 7)
    assert backbone == "backbone.safetensors" and calls == [(cube, "micro", 2, 7)]
    assert "'epochs': 2" in how
    # the tasks of one scene share the cube: pretrained once
    assert extrapolation._pretrain(cube, settings, 7)[0] == "backbone.safetensors"
    assert len(calls) == 1


def test_without_pretrain_the_row_is_not_available_and_says_why(monkeypatch):
    import extrapolation

    import miso_xr

    monkeypatch.delattr(miso_xr, "pretrain", raising=False)
    monkeypatch.setattr(
        miso_xr, "_LAZY", {k: v for k, v in miso_xr._LAZY.items() if k != "pretrain"}
    )
    backbone, why = extrapolation._pretrain(object(), extrapolation.Settings(), 0)
    assert backbone is None and "miso_xr.pretrain does not exist" in why
