"""Cube values at points: the per-point features of the Random Forest and of evaluation.

A point reads its nearest pixel (the pixel that holds it). All points of all modalities are read
with one vectorised index per modality and one ``dask.compute``, so a cube over all of Alaska
costs only the chunks that hold a point.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..observations import _sample_points

__all__ = ["on_crs", "points_xy", "sample_points"]


def sample_points(
    cube: Any,
    x: np.ndarray | Sequence[float],
    y: np.ndarray | Sequence[float],
    *,
    modalities: Sequence[str] | None = None,
) -> dict[str, np.ndarray]:
    """Nearest-pixel values of a cube at points.

    Parameters
    ----------
    cube
        A MISO cube (``xr.Dataset`` with ``(<modality>_band, y, x)`` variables), Dask- or
        numpy-backed.
    x, y
        Point coordinates in the cube's CRS (1-D, same length).
    modalities
        Modalities to read (default: all of the cube's, in cube order).

    Returns
    -------
    dict
        Modality -> ``(N, C)`` float32 values in the cube's band order; NaN for points outside
        the grid (and wherever the cube is NaN).

    Examples
    --------
    >>> import numpy as np
    >>> from miso_xr.cube.grid import Grid, make_cube
    >>> g = Grid("EPSG:3338", 0.0, 40.0, 10.0, 4, 4)
    >>> cube = make_cube({"covariates": (np.arange(16.0).reshape(1, 4, 4), ["elevation"])}, g,
    ...                  chunks=2)
    >>> sample_points(cube, [15.0, 39.0, 99.0], [35.0, 1.0, 5.0])["covariates"].ravel().tolist()
    [1.0, 15.0, nan]
    """
    return _sample_points(cube, np.asarray(x), np.asarray(y), modalities)


def points_xy(obs: Any, crs: str) -> tuple[np.ndarray, np.ndarray]:
    """Projected ``x, y`` of observations in ``crs`` (reprojected when the table's CRS differs).

    ``obs`` is an observation table (``x``, ``y`` in ``obs.attrs["crs"]``; ``lon``/``lat`` used
    when that is missing) or a pair of arrays ``(x, y)`` already in ``crs``.

    >>> import pandas as pd
    >>> obs = pd.DataFrame({"x": [1.0], "y": [2.0]})
    >>> obs.attrs["crs"] = "EPSG:3338"
    >>> points_xy(obs, "EPSG:3338")
    (array([1.]), array([2.]))
    """
    import pandas as pd
    from pyproj import CRS

    from ..exceptions import InputError
    from ..observations import _project

    if isinstance(obs, tuple) and len(obs) == 2:
        x, y = (np.atleast_1d(np.asarray(v, dtype="float64")) for v in obs)
        if x.shape != y.shape or x.ndim != 1:
            raise InputError(f"x and y must be 1-D of the same length; got {x.shape}, {y.shape}")
        return x, y
    if not isinstance(obs, pd.DataFrame):
        raise InputError(
            f"points are a {type(obs).__name__}; expected an observation table (DataFrame with "
            "x, y) or a pair of arrays (x, y) in the cube's CRS"
        )
    src = obs.attrs.get("crs")
    same = src is not None and CRS.from_user_input(src) == CRS.from_user_input(crs)
    if {"x", "y"} <= set(obs.columns) and (same or src is None):
        # no CRS recorded: x/y are taken to be in the cube's CRS already
        return obs["x"].to_numpy("float64"), obs["y"].to_numpy("float64")
    if {"lon", "lat"} <= set(obs.columns):
        return _project(obs["lon"].to_numpy(), obs["lat"].to_numpy(), "EPSG:4326", crs)
    if {"x", "y"} <= set(obs.columns):
        return _project(obs["x"].to_numpy(), obs["y"].to_numpy(), str(src), crs)
    raise InputError(
        f"the observation table has no x/y or lon/lat columns (found {list(obs.columns)}); "
        "read it with miso_xr.read_observations"
    )


def on_crs(obs: Any, crs: str) -> Any:
    """The observation table with ``x``/``y`` in ``crs`` (a projected copy when its CRS differs).

    Training, evaluation and the Random Forest call this, so observations read in any CRS
    (``obs.attrs["crs"]``) land on the cube's grid. A table without a recorded CRS is taken to be
    in ``crs`` already, and returned as is.

    >>> import pandas as pd
    >>> obs = pd.DataFrame({"x": [500000.0], "y": [7200000.0], "label": ["present"]})
    >>> obs.attrs["crs"] = "EPSG:32606"
    >>> moved = on_crs(obs, "EPSG:3338")
    >>> moved.attrs["crs"], [round(v) for v in moved[["x", "y"]].iloc[0]]
    ('EPSG:3338', [330507, 1680031])
    """
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    from ..exceptions import InputError

    src = obs.attrs.get("crs")
    if src is None:
        return obs
    try:
        same = CRS.from_user_input(src) == CRS.from_user_input(crs)
    except CRSError as err:
        raise InputError(
            f"observations have CRS {src!r} (obs.attrs['crs']) that pyproj cannot read ({err}); "
            "set it to an EPSG code or WKT, e.g. 'EPSG:4326'"
        ) from None
    if same:
        return obs
    x, y = points_xy(obs, crs)
    out = obs.copy()
    out["x"], out["y"] = x, y
    out.attrs = {**obs.attrs, "crs": crs, "projected_from": str(src)}
    return out
