"""Training: crops around points, the MISO training loop, folds, the RF baseline, evaluation.

The room is called ``training`` (not ``train``) so that the public function ``miso_xr.train`` and
this package never share a name: importing ``miso_xr.train.<module>`` would otherwise replace the
function with the package as the attribute ``miso_xr.train``. Names are imported on first use
(PEP 562) so ``import miso_xr.training`` does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["Crops", "extract_crops", "predict_points", "pretrain", "train", "validation_split"]

_LAZY = {
    "Crops": "miso_xr.training.crops",
    "extract_crops": "miso_xr.training.crops",
    "predict_points": "miso_xr.training.points",
    "pretrain": "miso_xr.training.pretraining",
    "train": "miso_xr.training.loop",
    "validation_split": "miso_xr.training.setup",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'miso_xr.training' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
