"""From raw cube bands to the network's input features: circular and categorical bands.

A network must not read a land-cover *code* as a number (code 90 is not "more" than 41), nor
aspect in degrees (359 and 1 are neighbours). The encoding, stored in the checkpoint's spec, says
per modality which bands are expanded before normalisation:

- ``circular``: an angle in degrees clockwise from north (aspect) becomes ``northness`` =
  cos and ``eastness`` = sin; a negative value (flat, ``-1`` in :mod:`miso_xr.cube.terrain`) and
  NaN become ``(0, 0)``;
- ``categorical``: integer codes become one-hot features, one per code seen in training, in
  sorted order; NaN and codes never seen become all zeros.

Everything else passes through. The spec's normalisation statistics are per *feature* (after this
expansion). Plain numpy: training, inference and the point predictor share one implementation.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..exceptions import InputError

__all__ = ["CIRCULAR_BANDS", "InputEncoding", "Preparation", "encoding_for"]

#: band names read as angles in degrees (clockwise from north) by default
CIRCULAR_BANDS = frozenset({"aspect"})
#: the ``spec.extra`` key holding the encoding's JSON
EXTRA_KEY = "inputs"


@dataclass(frozen=True)
class InputEncoding:
    """Per modality, how each raw band becomes features.

    ``rules`` maps modality -> ``((band, kind, values), ...)`` for the bands that are not passed
    through: ``kind`` is ``"circular"`` or ``"categorical"`` (``values``: the sorted codes).

    Examples
    --------
    >>> enc = InputEncoding({"covariates": (("aspect", "circular", ()),
    ...                                     ("landcover", "categorical", (41, 90)))})
    >>> enc.features("covariates", ("elevation", "aspect", "landcover"))
    ('elevation', 'aspect_northness', 'aspect_eastness', 'landcover_41', 'landcover_90')
    >>> a = np.array([[[[100.0]], [[0.0]], [[90.0]]]], dtype="float32")
    >>> enc.apply("covariates", ("elevation", "aspect", "landcover"), a)[0, :, 0, 0].round(3).tolist()
    [100.0, 1.0, 0.0, 0.0, 1.0]
    """

    rules: Mapping[str, tuple[tuple[str, str, tuple[int, ...]], ...]]

    def __hash__(self) -> int:
        return hash(self.to_json())

    def _rules(self, modality: str) -> dict[str, tuple[str, tuple[int, ...]]]:
        return {b: (kind, tuple(v)) for b, kind, v in self.rules.get(modality, ())}

    def features(self, modality: str, bands: Sequence[str]) -> tuple[str, ...]:
        """Feature names of ``modality`` with raw ``bands``, in the network's channel order."""
        rules = self._rules(modality)
        out: list[str] = []
        for b in bands:
            kind, values = rules.get(b, ("value", ()))
            if kind == "circular":
                out += [f"{b}_northness", f"{b}_eastness"]
            elif kind == "categorical":
                out += [f"{b}_{v}" for v in values]
            else:
                out.append(b)
        return tuple(out)

    def apply(self, modality: str, bands: Sequence[str], arr: np.ndarray) -> np.ndarray:
        """``(N, C, H, W)`` raw values in ``bands`` order -> ``(N, F, H, W)`` float32 features.

        NaN stays NaN in passed-through bands (the caller fills after normalising); expanded
        bands give zeros where the raw value is NaN.
        """
        rules = self._rules(modality)
        if not rules:
            return np.asarray(arr, dtype="float32")
        if arr.shape[1] != len(bands):
            raise InputError(
                f"{modality!r} values have {arr.shape[1]} bands; the encoding expects "
                f"{len(bands)} ({' '.join(bands)})"
            )
        parts: list[np.ndarray] = []
        for i, b in enumerate(bands):
            v = np.asarray(arr[:, i : i + 1], dtype="float32")
            kind, values = rules.get(b, ("value", ()))
            if kind == "circular":
                ok = np.isfinite(v) & (v >= 0)
                rad = np.deg2rad(np.where(ok, v, 0.0))
                parts += [np.where(ok, np.cos(rad), 0.0), np.where(ok, np.sin(rad), 0.0)]
            elif kind == "categorical":
                parts += [(v == code).astype("float32") for code in values]
            else:
                parts.append(v)
        return np.concatenate(parts, axis=1).astype("float32", copy=False)

    def widths(self, modalities: Iterable[tuple[str, Sequence[str]]]) -> dict[str, int]:
        """Network input channels per modality, for ``((modality, bands), ...)``."""
        return {m: len(self.features(m, b)) for m, b in modalities}

    def to_json(self) -> str:
        return json.dumps(
            {m: [[b, k, list(v)] for b, k, v in r] for m, r in sorted(self.rules.items())},
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str | None) -> InputEncoding:
        if not text:
            return cls({})
        try:
            d = json.loads(text)
            return cls(
                {
                    str(m): tuple((str(b), str(k), tuple(int(x) for x in v)) for b, k, v in r)
                    for m, r in d.items()
                }
            )
        except (ValueError, TypeError) as err:
            raise InputError(f"the spec's input encoding is malformed: {err}") from err

    @classmethod
    def from_extra(cls, extra: Iterable[tuple[str, str]]) -> InputEncoding:
        return cls.from_json(dict(extra).get(EXTRA_KEY))


def encoding_for(
    bands: Mapping[str, Sequence[str]],
    *,
    categorical: Mapping[str, Sequence[str]] | None = None,
    samples: Mapping[str, Sequence[np.ndarray]] | None = None,
    circular: Iterable[str] = CIRCULAR_BANDS,
    max_categories: int = 64,
) -> InputEncoding:
    """The encoding of a training run: circular bands by name, categorical ones from the cube.

    Parameters
    ----------
    bands
        Modality -> raw band names in input order.
    categorical
        Modality -> names of categorical bands (a cube records them in
        ``cube[modality].attrs["categorical"]``).
    samples
        Modality -> arrays ``(N, C, ...)`` of training values, from which each categorical band's
        codes are taken (sorted; NaN ignored).
    circular
        Band names read as angles in degrees.
    max_categories
        More distinct codes than this is an error (it is then not a class layer).
    """
    circular = set(circular)
    rules: dict[str, tuple[tuple[str, str, tuple[int, ...]], ...]] = {}
    for m, names in bands.items():
        cats = set((categorical or {}).get(m, ()))
        r: list[tuple[str, str, tuple[int, ...]]] = []
        for i, b in enumerate(names):
            if b in cats:
                arrs = None if samples is None else samples.get(m)
                if not arrs:
                    raise InputError(
                        f"categorical band {b!r} of {m!r} needs training values to list its codes"
                    )
                v = np.concatenate([np.asarray(a[:, i], dtype="float64").ravel() for a in arrs])
                codes = np.unique(v[np.isfinite(v)])
                if codes.size > max_categories or not np.allclose(codes, np.round(codes)):
                    raise InputError(
                        f"band {b!r} of {m!r} is marked categorical but has {codes.size} distinct "
                        f"values{'' if np.allclose(codes, np.round(codes)) else ' (not integers)'}; "
                        f"a class layer has integer codes (at most {max_categories})"
                    )
                r.append((b, "categorical", tuple(int(c) for c in codes)))
            elif b in circular:
                r.append((b, "circular", ()))
        if r:
            rules[m] = tuple(r)
    return InputEncoding(rules)


class Preparation:
    """Raw cube values -> the network's normalised input, from a spec (encoding + statistics).

    Every modality of ``spec`` needs normalisation statistics, one per input feature: a spec
    without them is an error, never a silent mean 0 / std 1.
    """

    def __init__(self, spec: Any) -> None:
        self.encoding = InputEncoding.from_extra(spec.extra)
        self.bands = dict(spec.modalities)
        stats = dict(spec.normalisation)
        self.stats: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for m, bands in spec.modalities:
            features = self.encoding.features(m, bands)
            if m not in stats:
                raise InputError(
                    f"the spec has no normalisation statistics for {m!r}; give "
                    f"Normalisation(mean, std) with one value per input feature "
                    f"({' '.join(features)}), e.g. from the training crops"
                )
            mean = np.asarray(stats[m].mean, dtype=np.float32)
            std = np.asarray(stats[m].std, dtype=np.float32)
            if mean.shape != (len(features),) or std.shape != (len(features),):
                raise InputError(
                    f"normalisation of {m!r} has {mean.size} means and {std.size} stds; "
                    f"it needs one per input feature ({len(features)}: {' '.join(features)})"
                )
            # a constant band has std 0: divide by 1 rather than by zero
            std = np.where(np.isfinite(std) & (std > 0), std, 1.0).astype(np.float32)
            self.stats[m] = (mean[:, None, None], std[:, None, None])

    def widths(self) -> dict[str, int]:
        """Network input channels per modality."""
        return self.encoding.widths(self.bands.items())

    def __call__(self, modality: str, values: np.ndarray) -> np.ndarray:
        """``(N, C, H, W)`` raw values in spec band order -> normalised ``(N, F, H, W)`` float32
        (circular/categorical bands expanded; NaN -> 0, the feature mean)."""
        mean, std = self.stats[modality]
        a = (self.encoding.apply(modality, self.bands[modality], values) - mean) / std
        return np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0).astype("float32", copy=False)


def describe(encoding: InputEncoding) -> dict[str, Any]:
    """A JSON-able summary for training reports."""
    return json.loads(encoding.to_json())
