"""MISO probabilities at points: the centre query of a crop around each point.

Used by evaluation, validation and ``model.predict_points``; one lazy read for all points, one
forward pass per point (no dense map). torch is imported inside the functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from ..cube.grid import Grid
from ..exceptions import InputError
from .batches import query_tensor
from .crops import Crops, check_bands, extract_crops, select_bands
from .features import points_xy

__all__ = ["attach_predict_points", "pick_device", "predict_crops", "predict_points"]


def pick_device(device: str) -> Any:
    """``"auto"`` -> CUDA when present, else CPU; an unavailable CUDA device is an error."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device={device!r} but CUDA is not available here; use 'cpu' or 'auto'")
    return dev


def autocast(dev: Any) -> Any:
    """bf16/fp16 autocast on CUDA only; CPU stays fp32 (CPU bf16 is far slower here)."""
    import contextlib

    import torch

    if dev.type != "cuda":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


def probabilities(logits: Any, n_classes: int) -> Any:
    """(..., 1) binary logits or (..., K) logits -> (..., K) probabilities."""
    import torch

    if n_classes == 2:
        p = torch.sigmoid(logits[..., 0].float())
        return torch.stack([1 - p, p], dim=-1)
    return torch.softmax(logits.float(), dim=-1)


def predict_crops(
    model: Any,
    crops: Crops,
    rc: np.ndarray,
    *,
    batch_size: int = 64,
    device: str | Any = "auto",
) -> np.ndarray:
    """Probabilities ``(N, K)`` at crop pixel-unit position ``rc[i]`` (row, col) of each crop.

    ``model`` is a :class:`~miso_xr.model.miso.MisoModel` (or a network with its ``spec`` and
    ``prepare``: the validation loop passes the model being trained).
    """
    import torch

    spec = model.spec
    net = model.net
    dev = device if isinstance(device, torch.device) else pick_device(device)
    mods = [m for m, _ in spec.modalities]
    k = len(spec.classes)
    window = crops.size
    rc = np.asarray(rc, dtype="float64").reshape(len(crops), 1, 2)
    was_training = net.training
    net.eval()
    if hasattr(model, "to"):
        model.to(dev)  # keeps the model's own record of its device in step
    out = np.empty((len(crops), k), dtype="float32")
    try:
        with torch.no_grad():
            for s in range(0, len(crops), batch_size):
                sl = slice(s, s + batch_size)
                images = {
                    m: torch.from_numpy(model.prepare(m, crops.arrays[m][sl])).to(dev) for m in mods
                }
                q = torch.from_numpy(query_tensor(rc[sl], window)).to(dev)
                loc = None
                if spec.location:  # only the location prior needs coordinates
                    loc = _relative_xy(crops, sl, rc[sl], model.origin)
                    loc = torch.from_numpy(loc).to(dev)
                with autocast(dev):
                    logits = net(images, q, loc).logits
                out[sl] = probabilities(logits, k)[:, 0].cpu().numpy()
    finally:
        net.train(was_training)
    return out


def _relative_xy(
    crops: Crops, sl: slice, rc: np.ndarray, origin: tuple[float, float]
) -> np.ndarray:
    """Metres from the model's region centre of positions ``rc`` in crops of any cube."""
    g = crops.grid
    loc = np.empty(rc.shape, dtype="float64")
    loc[..., 0] = g.left + (crops.col0[sl, None] + rc[..., 1]) * g.resolution - origin[0]
    loc[..., 1] = g.top - (crops.row0[sl, None] + rc[..., 0]) * g.resolution - origin[1]
    return loc


def predict_points(
    model: Any,
    cube: xr.Dataset,
    x: np.ndarray | Sequence[float] | pd.DataFrame,
    y: np.ndarray | Sequence[float] | None = None,
    *,
    batch_size: int = 64,
    device: str = "auto",
) -> np.ndarray:
    """Class probabilities ``(N, K)`` of a MISO model at points (crops centred on them).

    ``x`` may be an observations table (its ``x``/``y`` columns are used), so
    ``predict_points(model, cube, obs)`` works as ``model.predict_points(cube, obs)`` does on
    models returned by :func:`miso_xr.train`.

    Examples
    --------
    >>> p = predict_points(model, cube, obs)  # doctest: +SKIP
    >>> p.shape == (len(obs), len(model.spec.classes))  # doctest: +SKIP
    True
    """
    if isinstance(x, pd.DataFrame):  # in the table's CRS: projected onto the cube's
        x, y = points_xy(x, Grid.from_dataset(cube).crs)
    if y is None:
        raise InputError("predict_points needs y coordinates (or an observations table as x)")
    spec = model.spec
    mods = [m for m, _ in spec.modalities]
    check_bands(cube, spec.bands)
    crops = select_bands(extract_crops(cube, x, y, window=spec.window, modalities=mods), spec.bands)
    centre = spec.window // 2 + 0.5
    rc = np.full((len(crops), 2), centre)
    return predict_crops(model, crops, rc, batch_size=batch_size, device=device)


def attach_predict_points(model: Any) -> Any:
    """Give a trained model the ``model.predict_points(cube, obs)`` method."""
    import types

    def _method(self: Any, cube: xr.Dataset, obs: Any, **kw: Any) -> np.ndarray:
        return predict_points(self, cube, obs, **kw)

    try:
        model.predict_points = types.MethodType(_method, model)
    except AttributeError:  # a class with __slots__ or a property of that name: leave it
        pass
    return model
