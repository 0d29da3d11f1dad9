"""Pretrained encoders for training: one path for hub names, paths and URLs, two layouts.

- a SatlasPretrain-layout (or plain torchvision) Swin-v2-B state dict, converted to safetensors,
  loads into the *optical* encoder; its first patch-embedding conv is re-initialised when the
  band count differs (the reference does this for 9 bands), and the optical bands are scaled the
  way Satlas was trained (reflectance / 0.3 for RGB, / 0.816 for the others), not z-scored;
- a MISO backbone written by :func:`miso_xr.pretrain` (a checkpoint of kind ``"backbone"``)
  loads every part it has (encoders, implicit decoders, projections, the fused-visual mapper,
  the location encoder) and brings its own input encoding and normalisation, since the encoders
  learnt on those features.

:func:`miso_xr.hub.load_backbone` loads the first layout into a bare encoder with the same
function (:func:`miso_xr.model.swin.load_swin_v2_state_dict`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..exceptions import CheckpointError, InputError
from ..spec import Normalisation

__all__ = ["Pretrained", "apply_backbone", "resolve_backbone"]

#: MisoConfig fields that shape the pretrained parts (the rest are training settings)
ARCHITECTURE_FIELDS = (
    "embed_dim",
    "depths",
    "num_heads",
    "window_size",
    "patch_size",
    "mlp_ratio",
    "cpb_hidden",
    "width",
    "liif_hidden",
    "location_min_wavelength",
    "location_max_wavelength",
    "location_scales",
    "location_layers",
)


@dataclass
class Pretrained:
    """A resolved backbone: its layout, tensors and what it brings along."""

    source: str
    layout: str  # "satlas" or "miso"
    tensors: dict[str, Any] = field(repr=False)
    modalities: tuple[str, ...]
    normalisation: dict[str, Normalisation]
    encoding: Any = None
    sha256: str | None = None
    saw: dict[str, Any] = field(default_factory=dict)
    bands: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def check_bands(self, bands: dict[str, tuple[str, ...]]) -> None:
        """The run's bands must be the ones the backbone learnt from, in the same order."""
        for m, want in self.bands.items():
            if m in bands and tuple(bands[m]) != tuple(want):
                raise InputError(
                    f"backbone {self.source!r} learnt {m!r} from bands {' '.join(want)}; the cube "
                    f"gives {' '.join(bands[m])}. Select the same bands, in this order"
                )

    def describe(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "layout": self.layout,
            "sha256": self.sha256,
            "modalities": list(self.modalities),
            "saw": self.saw,
        }


def resolve_backbone(backbone: Any, *, cfg: Any, modalities: Sequence[str]) -> Pretrained | None:
    """Turn ``backbone=`` (hub name, path or URL) into tensors checked against the run."""
    if backbone is None:
        return None
    if not isinstance(backbone, (str, os.PathLike)):
        raise InputError(
            f"backbone={backbone!r}: give a hub name, a path or a URL of a backbone checkpoint "
            "(.safetensors), or None to train from scratch"
        )
    from safetensors import safe_open

    from .. import hub
    from ..checkpoint import read_checkpoint, sha256_file

    path = hub.fetch(backbone)
    with safe_open(str(path), framework="numpy") as f:
        meta = f.metadata() or {}
    if meta.get("format") == "miso_xr":
        if meta.get("kind") != "backbone":
            raise InputError(
                f"backbone={os.fspath(backbone)!r} is a {meta.get('kind')!r} checkpoint, not a "
                "backbone; pass a file written by miso_xr.pretrain (kind 'backbone') or a "
                "Satlas-layout Swin-v2 state dict"
            )
        tensors, info = read_checkpoint(path)
        theirs = dict(info.config)
        theirs.pop("net", None)
        mine = cfg.to_dict()
        diff = [
            f"{k}: backbone {theirs.get(k)!r}, config {mine.get(k)!r}"
            for k in ARCHITECTURE_FIELDS
            if k in theirs and theirs[k] != mine[k]
        ]
        if diff:
            raise InputError(
                f"backbone {os.fspath(backbone)!r} was pretrained with another architecture "
                f"({'; '.join(diff)}); train with config={theirs.get('name')!r} or a MisoConfig "
                "with these fields"
            )
        spec = info.spec
        shared = [m for m, _ in spec.modalities if m in modalities]
        if not shared:
            raise InputError(
                f"backbone {os.fspath(backbone)!r} has modalities "
                f"{[m for m, _ in spec.modalities]}; this run uses {list(modalities)}"
            )
        from ..model.inputs import InputEncoding

        return Pretrained(
            source=os.fspath(backbone),
            layout="miso",
            tensors=tensors,
            modalities=tuple(shared),
            normalisation={m: s for m, s in spec.normalisation if m in shared},
            encoding=InputEncoding.from_extra(spec.extra),
            sha256=sha256_file(path),
            saw=dict(info.training),
            bands={m: b for m, b in spec.modalities},
        )
    if "optical" not in modalities:
        raise InputError(
            f"backbone={os.fspath(backbone)!r} is a Swin-v2 state dict for the optical encoder; "
            f"this run has no 'optical' modality (it uses {list(modalities)})"
        )
    from safetensors.numpy import load_file

    return Pretrained(
        source=os.fspath(backbone),
        layout="satlas",
        tensors=load_file(str(path)),
        modalities=("optical",),
        normalisation={},
        sha256=sha256_file(path),
        saw={"metadata": dict(meta)},
    )


def apply_backbone(net: Any, pretrained: Pretrained | None) -> dict[str, Any] | None:
    """Load ``pretrained`` into a fresh :class:`~miso_xr.model.net.MisoNet`; what happened."""
    if pretrained is None:
        return None
    if pretrained.layout == "satlas":
        from ..model.swin import load_swin_v2_state_dict

        report = load_swin_v2_state_dict(
            net.encoders["optical"], pretrained.tensors, strict=True, input_conv="reinit"
        )
        return {
            "loaded": len(report.loaded),
            "reinitialised": report.reinitialised,
            "ignored": len(report.ignored),
            "text": str(report),
        }
    import numpy as np
    import torch

    want = net.state_dict()
    keep = tuple(
        f"{p}{m}."
        for p in ("encoders.", "implicit.", "pixel.", "project.")
        for m in pretrained.modalities
    ) + ("visual.", "location.")
    state, skipped = {}, []
    for k, v in pretrained.tensors.items():
        if not k.startswith(keep):
            continue
        if k not in want:
            skipped.append(k)
            continue
        if tuple(v.shape) != tuple(want[k].shape):
            raise CheckpointError(
                f"backbone tensor {k!r} has shape {tuple(v.shape)}; this model needs "
                f"{tuple(want[k].shape)} (were the bands the same?)"
            )
        state[k] = torch.from_numpy(np.ascontiguousarray(v)).to(want[k].dtype)
    net.load_state_dict(state, strict=False)
    return {
        "loaded": len(state),
        "skipped": skipped[:10],
        "modalities": list(pretrained.modalities),
    }
