"""miso_xr: fine-scale permafrost and soil-taxonomy maps with MISO on lazy xarray/Dask cubes.

``import miso_xr`` registers the ``.miso`` accessor and stays fast: torch, scikit-learn,
pystac-client and stackstac are imported only by the functions that need them.

>>> import miso_xr
>>> cube = miso_xr.open_rasters({"covariates": {"elevation": "dem.tif"}})  # doctest: +SKIP
>>> maps = cube.miso.predict(miso_xr.load("perm.safetensors"))             # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

from . import accessor as _accessor  # noqa: F401 - registers .miso on Dataset and DataArray
from .exceptions import (
    CatalogError,
    CatalogUnreachableError,
    CheckpointError,
    HubError,
    IncompatibleCubeError,
    InputError,
    IntegrityError,
    MisoError,
    MisoWarning,
    MissingBandError,
    NoItemsFoundError,
    ObservationError,
    OfflineError,
    RechunkWarning,
    UnsafeCheckpointError,
)
from .spec import ModelSpec

__version__ = "0.1.0"

# public name -> module that defines it, imported on first use (PEP 562) to keep import fast
_LAZY = {
    "open_stac": "miso_xr.cube.stac",
    "open_rasters": "miso_xr.cube.rasters",
    "Grid": "miso_xr.cube.grid",
    "make_cube": "miso_xr.cube.grid",
    "read_observations": "miso_xr.observations",
    "spatial_folds": "miso_xr.training.folds",
    "SpatialKFold": "miso_xr.training.folds",
    "train": "miso_xr.training.loop",
    "pretrain": "miso_xr.training.pretraining",
    "RandomForestBaseline": "miso_xr.training.baseline",
    "evaluate": "miso_xr.training.evaluate",
    "MisoModel": "miso_xr.model.miso",
    "MisoConfig": "miso_xr.model.config",
    "load": "miso_xr.hub",
    "predict": "miso_xr.infer.predict",
    "suggest_samples": "miso_xr.infer.uncertainty",
    "make_scene": "miso_xr.datasets.synthetic",
}

__all__ = [
    "CatalogError",
    "CatalogUnreachableError",
    "CheckpointError",
    "Grid",
    "HubError",
    "IncompatibleCubeError",
    "InputError",
    "IntegrityError",
    "MisoConfig",
    "MisoError",
    "MisoModel",
    "MisoWarning",
    "MissingBandError",
    "ModelSpec",
    "NoItemsFoundError",
    "ObservationError",
    "OfflineError",
    "RandomForestBaseline",
    "RechunkWarning",
    "SpatialKFold",
    "UnsafeCheckpointError",
    "__version__",
    "evaluate",
    "load",
    "make_cube",
    "make_scene",
    "open_rasters",
    "open_stac",
    "predict",
    "pretrain",
    "read_observations",
    "spatial_folds",
    "suggest_samples",
    "train",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'miso_xr' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
