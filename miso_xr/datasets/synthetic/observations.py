"""Field observations sampled the way real ones are: near roads and rivers, partly clustered."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ...cube.grid import Grid
from ...spec import SOIL_ORDERS
from .common import _transformer


def _sample_observations(
    rng: np.random.Generator,
    grid: Grid,
    n: int,
    d_access: np.ndarray,
    blocked: np.ndarray,
    permafrost: np.ndarray,
    soil: np.ndarray,
) -> pd.DataFrame:
    h, w = d_access.shape
    # access cost: most sites within a few hundred metres of a road or river, none beyond 2 km
    weight = np.exp(-d_access.astype("float64") / 220.0)
    weight[d_access > 2000] = 0
    weight[blocked] = 0  # nobody digs a pit in the channel or on the road
    flat = weight.ravel()
    if flat.sum() <= 0:
        flat = np.ones_like(flat)
    cdf = np.cumsum(flat)
    cdf /= cdf[-1]
    n_cluster = int(round(0.3 * n))
    n_single = n - n_cluster
    idx = np.searchsorted(cdf, rng.random(n_single), side="right").clip(0, flat.size - 1)
    rows, cols = (idx // w).astype("float64"), (idx % w).astype("float64")
    if n_cluster:
        n_centres = max(1, n_cluster // 12)
        cidx = np.searchsorted(cdf, rng.random(n_centres), side="right").clip(0, flat.size - 1)
        which = rng.integers(0, n_centres, n_cluster)
        spread = 120.0 / grid.resolution  # transects a few hundred metres long
        cr = (cidx[which] // w) + rng.normal(0, spread, n_cluster)
        cc = (cidx[which] % w) + rng.normal(0, spread, n_cluster)
        rows = np.concatenate([rows, np.clip(np.floor(cr), 0, h - 1)])
        cols = np.concatenate([cols, np.clip(np.floor(cc), 0, w - 1)])
    # a point anywhere inside its pixel
    x = grid.left + (cols + rng.random(cols.size)) * grid.resolution
    y = grid.top - (rows + rng.random(rows.size)) * grid.resolution
    r_i, c_i = rows.astype("int64"), cols.astype("int64")
    pf = pd.array(permafrost[r_i, c_i].astype("int8"), dtype="Int8")
    so = np.array([SOIL_ORDERS[k] for k in soil[r_i, c_i]], dtype=object)
    unlabelled = rng.random(rows.size) < 0.02
    pf[unlabelled] = pd.NA
    so[unlabelled] = None
    lon, lat = _transformer(grid.crs, "EPSG:4326").transform(x, y)
    df = pd.DataFrame(
        {
            "x": x,
            "y": y,
            "lon": np.asarray(lon, dtype="float64"),
            "lat": np.asarray(lat, dtype="float64"),
            "permafrost": pf,
            "soil_order": so,
        }
    )
    order = rng.permutation(len(df))  # clusters not all at the end
    df = df.iloc[order].reset_index(drop=True)
    df.attrs["crs"] = grid.crs
    return df
