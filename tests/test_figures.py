"""maps.miso.plot: a figure of a user's own maps (issue 11)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from miso_xr.cube.grid import Grid, make_cube
from miso_xr.exceptions import InputError
from miso_xr.observations import read_observations
from miso_xr.training.baseline import RandomForestBaseline


@pytest.fixture(scope="module")
def maps_and_obs():
    rng = np.random.default_rng(0)
    grid = Grid("EPSG:3338", 250_000.0, 1_650_000.0, 50.0, 40, 48)
    yy, xx = np.mgrid[0:48, 0:40] / 40
    elevation = 300 + 400 * xx + 20 * rng.standard_normal((48, 40))
    cov = np.stack([elevation, 30 * yy]).astype("float32")
    cube = make_cube({"covariates": (cov, ["elevation", "slope"])}, grid, chunks=24)
    r, c = rng.integers(0, 48, 60), rng.integers(0, 40, 60)
    df = pd.DataFrame({"x": grid.x[c], "y": grid.y[r], "permafrost": elevation[r, c] > 500})
    obs = read_observations(df, crs=grid.crs)
    rf = RandomForestBaseline(n_estimators=5, features=["covariates"], window=8).fit(cube, obs)
    return cube.miso.predict(rf), obs


def test_plot_maps_draws_every_variable_and_points(maps_and_obs, tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    maps, obs = maps_and_obs
    seen = {}
    orig = Figure.savefig

    def spy(self, *a, **k):
        seen["fig"] = self
        return orig(self, *a, **k)

    monkeypatch.setattr(Figure, "savefig", spy)
    path = maps.miso.plot(str(tmp_path / "map.png"), observations=obs)
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    axes = [a for a in seen["fig"].axes if a.get_title()]
    assert [a.get_title() for a in axes] == [
        "label (most probable class)",
        "P(present)",
        "uncertainty (0 sure - 1 unsure)",
    ]
    # the observations on the label panel, one legend entry per class seen
    legend = [t.get_text() for t in axes[0].get_legend().get_texts()]
    assert set(legend) == {f"observed {c}" for c in obs["label"].dropna().unique()}
    # the label colour bar names the classes
    bars = [a for a in seen["fig"].axes if a not in axes]
    assert [t.get_text() for t in bars[0].get_yticklabels()] == ["absent", "present"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.png"]


def test_plot_maps_refuses_clearly(maps_and_obs, tmp_path):
    maps, obs = maps_and_obs
    (tmp_path / "old.png").write_bytes(b"old")
    with pytest.raises(InputError, match=r"old.png' already exists; pass overwrite=True"):
        maps.miso.plot(str(tmp_path / "old.png"))
    assert (tmp_path / "old.png").read_bytes() == b"old"
    with pytest.raises(InputError, match=r"map.jpg' must end in .png"):
        maps.miso.plot(str(tmp_path / "map.jpg"))
    with pytest.raises(InputError, match="none of label, probability, uncertainty"):
        maps[[]].miso.plot(str(tmp_path / "empty.png"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.png"]
