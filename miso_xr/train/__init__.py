"""Training: crops around points, the MISO training loop, folds, the RF baseline, evaluation.

``miso_xr.train(cube, obs, ...)`` is the training function (:func:`miso_xr.train.loop.train`) and
``miso_xr.train`` is also this package: importing any ``miso_xr.train.<module>`` makes Python set
the package as the attribute ``miso_xr.train``, so the package itself is callable and calls
:func:`~miso_xr.train.loop.train`. Names are imported on first use (PEP 562) so
``import miso_xr.train`` does not import torch.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

__all__ = ["Crops", "extract_crops", "predict_points", "train", "validation_split"]

_LAZY = {
    "Crops": "miso_xr.train.crops",
    "extract_crops": "miso_xr.train.crops",
    "predict_points": "miso_xr.train.loop",
    "train": "miso_xr.train.loop",
    "validation_split": "miso_xr.train.loop",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'miso_xr.train' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


class _CallablePackage(types.ModuleType):
    """``miso_xr.train(cube, obs, ...)`` works whether the name holds the function or the package."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from .loop import train

        return train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
