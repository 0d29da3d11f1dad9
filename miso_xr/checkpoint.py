"""One room for "a checkpoint file <-> a model of its kind": format, read, write, digest, rebuild.

A checkpoint is one ``.safetensors`` file that describes itself.

Tensors are stored with safetensors (no code runs on load). The file's string metadata holds:

``format``          ``"miso_xr"``
``format_version``  ``"1"``
``kind``            which model rebuilds from it (``"miso"``, ``"random_forest"``)
``spec``            JSON of :class:`miso_xr.spec.ModelSpec` (bands, classes, window, CRS, ...)
``config``          JSON of the model's architecture configuration
``training``        JSON summary of the training data and run
``miso_xr_version`` the package version that wrote it
``tensors_sha256``  sha256 of the tensors (names, dtypes, shapes and bytes, in name order),
                    checked on every load: a file changed on disk after it was written (a flipped
                    sector, an edit) is refused as corrupt or tampered with, naming the path

This module knows numpy and safetensors only; model classes turn tensors into torch or sklearn.
It names the model classes of each kind (:data:`KINDS`, ``"module:Class"`` strings) and imports
them only when a file is loaded, so this bottom room imports no model room. Names and URLs are
the hub's business (:mod:`miso_xr.hub`): it turns them into verified local files, and
:func:`miso_xr.load` hands those to :func:`load_checkpoint`.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._files import atomic_write
from .exceptions import CheckpointError, UnsafeCheckpointError, UnverifiedCheckpointWarning
from .spec import ModelSpec

__all__ = [
    "KINDS",
    "CheckpointInfo",
    "FORMAT_VERSION",
    "PICKLE_SUFFIXES",
    "load_checkpoint",
    "read_checkpoint",
    "read_info",
    "sha256_file",
    "tensors_digest",
    "write_checkpoint",
]

FORMAT_VERSION = "1"
PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".bin", ".joblib")

# kind -> "module:Class" whose classmethod from_checkpoint(tensors, info) rebuilds the model
KINDS = {
    "miso": "miso_xr.model.miso:MisoModel",
    "random_forest": "miso_xr.training.baseline:RandomForestBaseline",
}
#: Kind -> ``"module:function"`` run on a loaded model: MISO's ``predict_points`` needs crops
#: of a cube (xarray), which the model room does not know, so training gives it the method
#: (as :func:`miso_xr.train` does), and both kinds answer ``model.predict_points(cube, obs)``.
FINISH = {"miso": "miso_xr.training.points:attach_predict_points"}


@dataclass(frozen=True)
class CheckpointInfo:
    """The metadata of a checkpoint, read without loading its tensors."""

    kind: str
    spec: ModelSpec
    config: dict[str, Any] = field(hash=False)
    training: dict[str, Any] = field(hash=False)
    version: str = ""
    format_version: str = FORMAT_VERSION
    tensors_sha256: str = ""

    def summary(self) -> dict[str, Any]:
        """A short JSON-able description (what hub indexes show)."""
        return {
            "kind": self.kind,
            "task": self.spec.task,
            "classes": list(self.spec.classes),
            "modalities": {m: list(b) for m, b in self.spec.modalities},
            "window": self.spec.window,
            "resolution": self.spec.resolution,
            "crs": self.spec.crs,
            "miso_xr_version": self.version,
        }


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB pieces."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _refuse_pickle(path: Path) -> None:
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise UnsafeCheckpointError(
            f"{str(path)!r} is a pickle-format checkpoint ({path.suffix}), which can run code when "
            "loaded; miso_xr loads .safetensors only. Convert it explicitly with "
            "`miso-xr hub convert IN OUT.safetensors`, which reads it with "
            "torch.load(weights_only=True) (tensors only, no code)."
        )


def write_checkpoint(
    path: str | os.PathLike[str],
    tensors: dict[str, np.ndarray],
    *,
    spec: ModelSpec,
    config: dict[str, Any],
    training: dict[str, Any] | None = None,
) -> str:
    """Write tensors and metadata atomically; return the file's sha256.

    The file appears under its final name only once complete (write to a temporary file in the
    same directory, then rename), so an interrupted save never leaves a truncated checkpoint.
    """
    from safetensors.numpy import save

    from . import __version__

    path = Path(path)
    if path.suffix != ".safetensors":
        raise CheckpointError(f"checkpoint path {str(path)!r} must end in .safetensors")
    meta = {
        "format": "miso_xr",
        "format_version": FORMAT_VERSION,
        "kind": spec.kind,
        "spec": spec.to_json(),
        "config": json.dumps(config, sort_keys=True),
        "training": json.dumps(training or {}, sort_keys=True, default=str),
        "miso_xr_version": __version__,
    }
    arrays = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    meta["tensors_sha256"] = tensors_digest(arrays)
    data = save(arrays, metadata=meta)
    atomic_write(path, data, fsync=True)
    return hashlib.sha256(data).hexdigest()


def _info_from_meta(meta: dict[str, str] | None, where: str) -> CheckpointInfo:
    if not meta or meta.get("format") != "miso_xr":
        raise CheckpointError(
            f"{where} is a safetensors file but not a miso_xr checkpoint (its metadata has no "
            "format='miso_xr'); for backbone weights use miso_xr.hub.load_backbone"
        )
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{where} has checkpoint format_version {meta.get('format_version')!r}; this miso_xr "
            f"reads format_version {FORMAT_VERSION!r}"
        )
    try:
        config = json.loads(meta.get("config", "{}"))
        training = json.loads(meta.get("training", "{}"))
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{where} has unreadable metadata: {err}") from err
    return CheckpointInfo(
        kind=meta.get("kind", ""),
        spec=ModelSpec.from_json(meta.get("spec", "")),
        config=config,
        training=training,
        version=meta.get("miso_xr_version", ""),
        format_version=meta["format_version"],
        tensors_sha256=meta.get("tensors_sha256", ""),
    )


def read_info(path: str | os.PathLike[str]) -> CheckpointInfo:
    """Read a checkpoint's metadata only (cheap: the header, not the tensors)."""
    from safetensors import safe_open

    path = Path(path)
    _refuse_pickle(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata()
    except Exception as err:  # safetensors raises its own SafetensorError on bad headers
        raise CheckpointError(
            f"{str(path)!r} is not a readable .safetensors file ({err}); it may be truncated or "
            "an HTML error page saved in its place"
        ) from err
    return _info_from_meta(meta, repr(str(path)))


def read_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], CheckpointInfo]:
    """Read tensors (as numpy arrays) and metadata."""
    from safetensors.numpy import load_file

    info = read_info(path)
    try:
        tensors = load_file(str(path))
    except Exception as err:
        raise CheckpointError(f"{str(path)!r} has unreadable tensors ({err})") from err
    if not info.tensors_sha256:
        import warnings

        warnings.warn(
            f"checkpoint {str(path)!r} (miso_xr {info.version or '?'}) has no tensors_sha256, so "
            "its bytes cannot be checked; save it again to add one",
            UnverifiedCheckpointWarning,
            stacklevel=2,
        )
    elif tensors_digest(tensors) != info.tensors_sha256:
        raise CheckpointError(
            f"checkpoint {str(path)!r} is corrupt or was tampered with: its tensors do not match "
            f"the tensors_sha256 recorded when it was written ({info.tensors_sha256[:16]}...); "
            "fetch or save it again"
        )
    return tensors, info


def tensors_digest(tensors: dict[str, np.ndarray]) -> str:
    """sha256 of tensors: each name, dtype and shape, then its bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        h.update(json.dumps([name, a.dtype.str, list(a.shape)]).encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()


# --------------------------------------------------------------------------------------------
# rebuild: a file -> the model of its kind


def _model_class(loader: str, kind: str) -> Any:
    """The class a user's ``"module:Class"`` names (a kind :data:`KINDS` does not know)."""
    module, _, name = loader.partition(":")
    try:
        cls: Any = importlib.import_module(module)
        for part in name.split("."):
            cls = getattr(cls, part)
    except (ImportError, AttributeError) as err:
        raise CheckpointError(
            f"model class {loader!r} (kind {kind!r}) cannot be imported on this worker "
            f"({err}); install the package that defines it on every worker"
        ) from err
    return cls


def load_checkpoint(
    path: str | os.PathLike[str],
    *,
    sha256: str | None = None,
    source: str | None = None,
    loader: str | None = None,
    kind: str = "",
) -> Any:
    """Load a checkpoint file into its model; sets ``sha256``, ``source`` and ``checkpoint_path``.

    ``sha256``, when given, is the already-verified hash of the file (saves hashing it twice).
    ``loader`` (``"module:Class"``, with its ``kind`` for messages) rebuilds a model of a kind
    :data:`KINDS` does not know: a user's own class following the predictor protocol.

    Examples
    --------
    >>> model = load_checkpoint("perm.safetensors")              # doctest: +SKIP
    >>> model.spec.kind, model.sha256[:8]                          # doctest: +SKIP
    ('miso', '3b1f09aa')
    """
    path = Path(path)
    if loader is not None:
        cls = _model_class(loader, kind)  # before reading: a worker lacking the class says so
        tensors, info = read_checkpoint(path)
    else:
        tensors, info = read_checkpoint(path)
        target = KINDS.get(info.kind)
        if target is None:
            raise CheckpointError(
                f"{str(path)!r} holds a model of kind {info.kind!r}; this miso_xr loads "
                f"{sorted(KINDS)}"
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
    if info.kind in FINISH and loader is None:
        model = _model_class(FINISH[info.kind], info.kind)(model)
    return model
