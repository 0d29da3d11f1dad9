"""Rebuild a model from a local checkpoint file, whatever its kind (no network, no cache).

``miso_xr.load`` (in :mod:`miso_xr.hub`) resolves names and URLs to a local verified file and then
calls :func:`load_checkpoint`.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

from .checkpoint import read_checkpoint, sha256_file
from .exceptions import CheckpointError

__all__ = ["KINDS", "load_checkpoint"]

# kind -> "module:Class" whose classmethod from_checkpoint(tensors, info) rebuilds the model
KINDS = {
    "miso": "miso_xr.model.miso:MisoModel",
    "random_forest": "miso_xr.training.baseline:RandomForestBaseline",
}


def load_checkpoint(
    path: str | os.PathLike[str], *, sha256: str | None = None, source: str | None = None
) -> Any:
    """Load a checkpoint file into its model; sets ``sha256``, ``source`` and ``checkpoint_path``.

    ``sha256``, when given, is the already-verified hash of the file (saves hashing it twice).
    """
    path = Path(path)
    tensors, info = read_checkpoint(path)
    target = KINDS.get(info.kind)
    if target is None:
        raise CheckpointError(
            f"{str(path)!r} holds a model of kind {info.kind!r}; this miso_xr loads {sorted(KINDS)}"
        )
    module, cls_name = target.split(":")
    cls = getattr(importlib.import_module(module), cls_name)
    try:
        model = cls.from_checkpoint(tensors, info)
    except CheckpointError as err:
        # the model's class knows what is wrong; the user needs to know which file
        raise CheckpointError(f"{str(path)!r}: {err}") from err
    model.sha256 = sha256 or sha256_file(path)
    model.source = source or str(path.resolve())
    model.checkpoint_path = str(path.resolve())
    return model
