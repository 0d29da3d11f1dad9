"""Pickle -> safetensors: the one explicit door for pickle checkpoints."""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._files import atomic_write
from ..checkpoint import sha256_file
from ..exceptions import InputError, UnsafeCheckpointError


@dataclass(frozen=True)
class ConversionReport:
    """What :func:`convert` did."""

    src: str
    dst: str
    sha256: str
    tensors: int
    parameters: int
    prefix: str = ""
    skipped: tuple[str, ...] = ()

    def __str__(self) -> str:
        text = (
            f"read {self.src} with torch.load(weights_only=True) (tensors and plain containers "
            f"only; no code was run) and wrote {self.tensors} tensors ({self.parameters:,} "
            f"parameters) to {self.dst} (sha256 {self.sha256})"
        )
        if self.prefix:
            text += f"; took the tensors under {self.prefix!r}"
        if self.skipped:
            text += f"; left out non-tensor entries: {', '.join(self.skipped)}"
        return text


def _flatten(obj: Any, prefix: str, tensors: dict[str, Any], skipped: list[str]) -> None:
    import torch

    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            _flatten(v, f"{prefix}.{k}" if prefix else str(k), tensors, skipped)
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _flatten(v, f"{prefix}.{i}" if prefix else str(i), tensors, skipped)
    else:
        skipped.append(prefix or "<root>")


def convert(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> ConversionReport:
    """Convert a pickle checkpoint (``.pt``/``.pth``/``.ckpt``) to ``.safetensors``, safely.

    The file is read with ``torch.load(weights_only=True)``: torch's restricted unpickler, which
    builds tensors and plain containers only and refuses anything that would import or call code.
    A file it refuses is not converted (UnsafeCheckpointError). Nested dicts become dotted keys;
    when all tensors sit under one of ``state_dict``, ``model``, ``model_state_dict``, that
    wrapper is dropped; non-tensor entries (epoch, optimiser settings) are left out and listed.

    Examples
    --------
    >>> print(convert("satlas_swinb_si_ms.pth", "satlas.safetensors"))     # doctest: +SKIP
    read satlas_swinb_si_ms.pth with torch.load(weights_only=True) ... wrote 329 tensors ...
    """
    import pickle

    import torch
    from safetensors.torch import save

    src_p, dst_p = Path(src).expanduser(), Path(dst).expanduser()
    if dst_p.suffix != ".safetensors":
        raise InputError(f"destination {str(dst_p)!r} must end in .safetensors")
    if not src_p.is_file():
        raise InputError(f"source checkpoint {str(src_p)!r} does not exist")
    try:
        with warnings.catch_warnings():
            # torch warns that protocols other than 2 may be unsupported by its restricted
            # unpickler; it then either reads the file or refuses it, which we report below
            warnings.filterwarnings("ignore", "Detected pickle protocol", UserWarning)
            obj = torch.load(src_p, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, EOFError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UnsafeCheckpointError(
            f"{str(src_p)!r} cannot be read with torch.load(weights_only=True) ({first}); it holds "
            "objects other than tensors, possibly code, so it was not converted. If you trust "
            "its author, extract the tensors yourself and save them with safetensors."
        ) from None
    tensors: dict[str, Any] = {}
    skipped: list[str] = []
    prefix = ""
    if isinstance(obj, dict):
        for wrapper in ("state_dict", "model_state_dict", "model"):
            if isinstance(obj.get(wrapper), dict):
                inner: dict[str, Any] = {}
                _flatten(obj[wrapper], "", inner, [])
                if inner:
                    prefix = wrapper
                    _flatten(obj[wrapper], "", tensors, skipped)
                    skipped += [str(k) for k in obj if k != wrapper]
                    break
    if not prefix:
        _flatten(obj, "", tensors, skipped)
    if not tensors:
        raise InputError(f"{str(src_p)!r} holds no tensors (found {type(obj).__name__})")
    # clone: safetensors refuses tensors that share storage (tied weights, views)
    arrays = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    data = save(
        arrays,
        metadata={
            "converted_from": src_p.name,
            "converted_with": "miso_xr.hub.convert: torch.load(weights_only=True)",
            "source_sha256": sha256_file(src_p),
        },
    )
    atomic_write(dst_p, data)
    return ConversionReport(
        src=str(src_p),
        dst=str(dst_p),
        sha256=hashlib.sha256(data).hexdigest(),
        tensors=len(arrays),
        parameters=sum(int(v.numel()) for v in arrays.values()),
        prefix=prefix,
        skipped=tuple(skipped),
    )
