"""The MISO network in torch (no xarray, no Dask here).

Names are reached lazily (PEP 562), so ``from miso_xr.model import MisoConfig`` does not import
torch; the network classes do.

>>> from miso_xr.model import MisoConfig, MisoNet
>>> net = MisoNet(MisoConfig.named("tiny"), {"optical": 9, "covariates": 6}, num_outputs=1)
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> submodule defining it
_LAZY = {
    "MisoConfig": "config",
    "NAMED_CONFIGS": "config",
    "LIIF": "liif",
    "MultiScaleLIIF": "liif",
    "pixel_centres": "liif",
    "GridCellEncoding": "location",
    "LocationEncoder": "location",
    "UNLABELLED": "losses",
    "info_nce": "losses",
    "miso_loss": "losses",
    "supervised_loss": "losses",
    "MisoModel": "miso",
    "MisoNet": "net",
    "MisoOutput": "net",
    "count_parameters": "net",
    "flops_per_crop": "net",
    "SwinLoadReport": "swin",
    "SwinV2Encoder": "swin",
    "load_swin_v2_state_dict": "swin",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'miso_xr.model' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
