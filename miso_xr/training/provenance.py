"""What a model was trained on, recorded in its checkpoint so that evaluation stays honest.

Both trainers (``miso_xr.train`` and ``RandomForestBaseline.fit``) put
``training["points"] = points_record(x, y, crs)`` in the model's training summary: the projected
coordinates of every labelled point that shaped the model (validation points that chose the
best epoch included). :func:`miso_xr.evaluate` reads it back with :func:`training_points` and
scores a fixed model only on observations away from these points.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import pandas as pd

from ..exceptions import InputError

__all__ = ["points_record", "training_points"]


def points_record(x: Any, y: Any, crs: str) -> dict[str, Any]:
    """A JSON-able record of training point coordinates (float64, base64; ~22 bytes a point).

    >>> rec = points_record([1.0, 2.0], [3.0, 4.0], "EPSG:3338")
    >>> rec["n"], training_points({"points": rec})[0].tolist()
    (2, [[1.0, 3.0], [2.0, 4.0]])
    """
    xy = np.column_stack([np.asarray(x, "<f8").ravel(), np.asarray(y, "<f8").ravel()])
    return {
        "crs": str(crs),
        "n": int(len(xy)),
        "xy": base64.b64encode(np.ascontiguousarray(xy, dtype="<f8").tobytes()).decode("ascii"),
    }


def training_points(training: dict[str, Any] | None) -> tuple[np.ndarray, str] | None:
    """``((N, 2) x/y, crs)`` of the points a model was trained on, or None when unrecorded."""
    rec = (training or {}).get("points")
    if not isinstance(rec, dict) or "xy" not in rec or "crs" not in rec:
        return None
    try:
        xy = np.frombuffer(base64.b64decode(rec["xy"]), dtype="<f8").reshape(-1, 2)
    except (ValueError, TypeError):
        return None
    return xy, str(rec["crs"])


def _held_out(
    fixed: list[tuple[str, Any]],
    labelled: pd.DataFrame,
    radius: float,
    independent: bool,
    cube_crs: str,
) -> tuple[np.ndarray, dict[str, str]]:
    """Observations no fixed model was trained on (farther than ``radius``), and how each
    fixed model is scored, in words."""
    from scipy.spatial import cKDTree

    from .features import points_xy

    held = np.ones(len(labelled), dtype=bool)
    seen: dict[str, int] = {}
    for name, model in fixed:
        rec = training_points(getattr(model, "training", None))
        if rec is None:
            if independent:
                seen[name] = -1
                continue
            raise InputError(
                f"model {name!r} is already fitted and does not record which points it was "
                "trained on (an older checkpoint, or a model from elsewhere), so scoring it on "
                "these observations may flatter it. If they were not used to train it, say so "
                "with independent=True; for a cross-validated figure refit it per fold: "
                "evaluate([refit_factory(model)], cube, obs, folds=...)"
            )
        xy, crs = rec
        seen[name] = len(xy)
        if not len(xy):
            continue
        frame = labelled
        if frame.attrs.get("crs") is None:
            frame = frame.copy()
            frame.attrs["crs"] = cube_crs
        ox, oy = points_xy(frame, crs)
        d, _ = cKDTree(xy).query(np.column_stack([ox, oy]), k=1)
        held &= ~(d <= radius)
    what = f"its training points, or within {radius:g} m of one"
    if not held.any():
        raise InputError(
            f"every one of the {len(labelled)} labelled observations is one a fixed model was "
            f"trained on ({what}: "
            + ", ".join(f"{n!r} {k} points" for n, k in seen.items() if k >= 0)
            + "); its score here would measure memory, not skill. Score it on independent "
            "observations, or refit it per fold for spatial cross-validation: "
            "evaluate([refit_factory(model)], cube, obs, folds=...)"
        )
    n_held = int(held.sum())
    protocols = {
        name: (
            f"fixed model: {n_held} held-out points (observations declared independent)"
            if k < 0
            else f"fixed model: {n_held} held-out points, {len(held) - n_held} set aside "
            f"(training points of the fixed models, or within {radius:g} m of one)"
        )
        for name, k in seen.items()
    }
    return held, protocols
