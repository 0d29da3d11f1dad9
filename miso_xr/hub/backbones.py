"""Pretrained backbone weights (SatlasPretrain layout) from the hub into a Swin encoder."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

from ..exceptions import InputError
from .sources import _materialise

log = logging.getLogger("miso_xr.hub")


def load_backbone(
    source: str | os.PathLike[str],
    *,
    in_channels: int,
    encoder: Any = None,
    input_conv: str = "reinit",
    strict: bool = True,
    sha256: str | None = None,
    offline: bool | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    hub: str | os.PathLike[str] | Sequence[str] | None = None,
    timeout: float = 30,
) -> Any:
    """Load a SatlasPretrain-layout Swin-v2-B state dict into a visual encoder for ``in_channels``.

    The file (a hub entry of kind ``"backbone"``, a path or a URL: the sources of :func:`load`)
    must be safetensors; Satlas publishes ``.pth`` files, so convert them once with
    :func:`convert`. Keys go through :func:`miso_xr.model.swin.load_swin_v2_state_dict`, which
    finds the backbone prefix (``backbone.backbone.`` for Satlas), ignores the FPN and heads, and
    re-initialises the first patch embedding when its band count differs (MISO's choice).

    Parameters
    ----------
    source, sha256, offline, cache_dir, hub, timeout
        As for :func:`load`.
    in_channels
        Bands of the encoder's input (9 for MISO's optical modality).
    encoder
        A ``SwinV2Encoder`` to load into (e.g. ``model.net``'s optical encoder); default: a new
        Swin-v2-B encoder (embed 128, depths 2-2-18-2).
    input_conv, strict
        Passed to ``load_swin_v2_state_dict`` (``"reinit"`` or ``"mean"`` for the first conv).

    Returns
    -------
    The encoder with the weights loaded; ``encoder.load_report`` says what happened to each key.

    Examples
    --------
    >>> enc = load_backbone("satlas-swinv2-b-s2", in_channels=9)             # doctest: +SKIP
    >>> print(enc.load_report)                                               # doctest: +SKIP
    loaded 329 tensors (prefix 'backbone.backbone.'); ...
    """
    if not isinstance(in_channels, int) or isinstance(in_channels, bool) or in_channels < 1:
        raise InputError(f"in_channels={in_channels!r} must be a positive int (9 for optical)")
    path, _, entry = _materialise(
        source, sha256=sha256, offline=offline, cache_dir=cache_dir, hub=hub, timeout=timeout
    )
    if entry is not None and entry.kind != "backbone":
        raise InputError(
            f"hub entry {entry.ref!r} is a {entry.kind}, not a backbone; load it with "
            f"miso_xr.load({entry.ref!r})"
        )
    # a backbone is a foreign state dict, not a miso_xr checkpoint: the Swin encoder reads it
    from safetensors.torch import load_file

    from ..model.swin import SwinV2Encoder, load_swin_v2_state_dict

    if encoder is None:
        encoder = SwinV2Encoder(in_channels)
    elif getattr(encoder, "in_channels", in_channels) != in_channels:
        raise InputError(
            f"in_channels={in_channels} but the encoder given reads {encoder.in_channels} bands"
        )
    report = load_swin_v2_state_dict(
        encoder, load_file(str(path)), strict=strict, input_conv=input_conv
    )
    log.info("backbone %s: %s", source, report)
    encoder.load_report = report
    return encoder
