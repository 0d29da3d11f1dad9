"""What a trained model needs from a cube: the contract between training, checkpoints and inference.

A :class:`ModelSpec` is plain data (frozen, hashable, JSON round-trippable) so it tokenizes cleanly
for Dask and sits in a checkpoint's metadata. Nothing here imports torch or xarray.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from .exceptions import CheckpointError

__all__ = [
    "CLASS_DIM",
    "ModelSpec",
    "Normalisation",
    "PERMAFROST_CLASSES",
    "SOIL_ORDERS",
    "TASK_CLASSES",
    "default_stride",
]

#: The maps' class dimension: ``maps.probability.sel(category="present")``. Not ``class`` (a
#: Python keyword, so ``.sel(class=...)`` is a SyntaxError); ``category`` because the classes are
#: the categories of the observations' ``label`` Categorical, in the same order.
CLASS_DIM = "category"

#: Classes of the two built-in tasks, in model output order.
PERMAFROST_CLASSES: tuple[str, ...] = ("absent", "present")
SOIL_ORDERS: tuple[str, ...] = (
    "Andisols",
    "Entisols",
    "Gelisols",
    "Histosols",
    "Inceptisols",
    "Mollisols",
    "Spodosols",
)
TASK_CLASSES: dict[str, tuple[str, ...]] = {
    "permafrost": PERMAFROST_CLASSES,
    "soil_order": SOIL_ORDERS,
}


def default_stride(window: int) -> int:
    """The lattice step a new model records for its ``window`` (``spec.stride``).

    Five eighths of the window: ``(8/5)**2 = 2.56`` windows per pixel, cross-faded by a Tukey
    weight over their ``3 * window / 8`` overlaps; 1.56x fewer windows than a stride of
    ``window / 2``. Measured on a trained tiny MISO (``benchmarks/fig_lattice.py --epochs 8
    --holdout --reference``): at no stride from ``window / 2`` to ``7 * window / 8`` does the map
    fold onto its window lattice more than onto a neighbouring period (no lattice above the map's
    noise); the plans differ in how far the map lies from one with windows every ``window / 8``:
    mean |difference| 0.0122 at ``window / 2`` (Hann), 0.0126 at ``5 * window / 8``, 0.0162 at
    ``3 * window / 4``, and 0.0132 for the Gaussian plan of before. This is the longest stride
    measured that stays closer than the plan of before. A checkpoint keeps the stride it was
    saved with; ``predict(stride=...)`` chooses another.

    >>> default_stride(64)
    40
    """
    return max(1, 5 * int(window) // 8)


def _pairs(value: Any) -> list[tuple[Any, Any]]:
    return list(value.items()) if isinstance(value, dict) else [tuple(p) for p in value]


@dataclass(frozen=True)
class Normalisation:
    """Per-band mean and standard deviation of one modality, in band order."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Normalisation:
        return cls(mean=tuple(float(v) for v in d["mean"]), std=tuple(float(v) for v in d["std"]))


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to apply a model to a cube.

    Parameters
    ----------
    kind
        ``"miso"`` or ``"random_forest"``: which loader rebuilds the model.
    task
        ``"permafrost"``, ``"soil_order"`` or a user task name.
    classes
        Class names in output order (``probability`` has one layer per class).
    modalities
        ``((modality, (band, ...)), ...)`` in the order the model reads them.
    window, stride
        Window side and lattice step in pixels for dense prediction.
    resolution, crs
        Pixel size (CRS units) and CRS the model was trained at.
    normalisation
        ``((modality, Normalisation), ...)``: statistics applied to raw cube values.
    location
        Whether the model reads projected x/y coordinates (MISO's location encoder, RF lon/lat).
    """

    kind: str
    task: str
    classes: tuple[str, ...]
    modalities: tuple[tuple[str, tuple[str, ...]], ...]
    window: int
    stride: int
    resolution: float
    crs: str
    normalisation: tuple[tuple[str, Normalisation], ...] = ()
    location: bool = False
    extra: tuple[tuple[str, str], ...] = field(default=())

    @property
    def bands(self) -> dict[str, tuple[str, ...]]:
        """Modality -> band names, in model order."""
        return dict(self.modalities)

    @property
    def stats(self) -> dict[str, Normalisation]:
        return dict(self.normalisation)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["classes"] = list(self.classes)
        # a list of pairs, not a mapping: modality order is the model's input order and must
        # survive JSON writers that sort keys
        d["modalities"] = [[m, list(b)] for m, b in self.modalities]
        d["normalisation"] = [[m, n.to_dict()] for m, n in self.normalisation]
        d["extra"] = dict(self.extra)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelSpec:
        try:
            return cls(
                kind=str(d["kind"]),
                task=str(d["task"]),
                classes=tuple(str(c) for c in d["classes"]),
                modalities=tuple(
                    (str(m), tuple(str(b) for b in bands)) for m, bands in _pairs(d["modalities"])
                ),
                window=int(d["window"]),
                stride=int(d["stride"]),
                resolution=float(d["resolution"]),
                crs=str(d["crs"]),
                normalisation=tuple(
                    (str(m), Normalisation.from_dict(n))
                    for m, n in _pairs(d.get("normalisation", []))
                ),
                location=bool(d.get("location", False)),
                extra=tuple(sorted((str(k), str(v)) for k, v in d.get("extra", {}).items())),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise CheckpointError(
                f"model spec is malformed ({err!r}); it needs kind, task, classes, modalities, "
                "window, stride, resolution and crs"
            ) from err

    @classmethod
    def from_json(cls, text: str) -> ModelSpec:
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as err:
            raise CheckpointError(f"model spec is not valid JSON: {err}") from err
