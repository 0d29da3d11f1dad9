"""Datasets the project makes itself: the synthetic Alaska-like scene (the embedded default).

Names are imported on first use, so the loopback servers here (``python -m
miso_xr.datasets.range_server``) start without loading numpy, pandas or xarray.

>>> from miso_xr.datasets import make_scene
>>> scene = make_scene(seed=0, size=64)
>>> scene.permafrost.shape
(64, 64)
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "OPTICAL_BANDS",
    "SAR_BANDS",
    "SCENE_CRS",
    "SOIL_ORDERS",
    "TRUTH_NAMES",
    "Scene",
    "SceneFiles",
    "make_scene",
    "write_scene",
    "write_stac",
]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'miso_xr.datasets' has no attribute {name!r}")
    value = getattr(importlib.import_module("miso_xr.datasets.synthetic"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
