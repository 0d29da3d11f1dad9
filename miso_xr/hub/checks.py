"""What bytes are: safetensors, pickle or something else; header and length checks."""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path
from typing import Any

from ..checkpoint import PICKLE_SUFFIXES
from ..exceptions import CheckpointError, IntegrityError, UnsafeCheckpointError
from .settings import _SCHEME, _SNIFF


def _sniff(head: bytes, total: int) -> str | None:
    """``"pickle"``, ``"zip"`` (torch.save), ``"safetensors"`` or None, from the first bytes."""
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "pickle"  # PROTO opcode: every pickle of protocol >= 2 starts so
    if head[:4] == b"PK\x03\x04":
        return "zip"  # torch.save's default container (a zip of pickles)
    if len(head) >= 9 and head[8:9] == b"{":
        n = int.from_bytes(head[:8], "little")
        if 0 < n <= total - 8:
            return "safetensors"
    return None


def _refuse_pickle_name(where: str) -> None:
    suffix = Path(urllib.parse.urlparse(where).path if _SCHEME.match(where) else where).suffix
    if suffix.lower() in PICKLE_SUFFIXES:
        raise UnsafeCheckpointError(
            f"{where!r} is a pickle-format checkpoint ({suffix}), which can run code when loaded; "
            "miso_xr loads .safetensors only. Convert a file you have explicitly with "
            "`miso-xr hub convert IN OUT.safetensors` (miso_xr.hub.convert), which reads it with "
            "torch.load(weights_only=True): tensors only, no code."
        )


def _describe(content_type: str | None, head: bytes, size: int) -> str:
    shown = head[:48]
    return (
        f"received {size} bytes, content-type {content_type or 'unknown'!r}, "
        f"starting {shown!r}{'...' if len(head) > len(shown) else ''}"
    )


def _safetensors_header(path: Path) -> dict[str, Any]:
    """Parse and check a safetensors header against the file's length (catches truncation)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        raw = f.read(8)
        n = int.from_bytes(raw, "little") if len(raw) == 8 else -1
        if n <= 0 or n > size - 8 or n > 100 << 20:
            raise CheckpointError(f"{str(path)!r} has no safetensors header (length field {n})")
        try:
            header = json.loads(f.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise CheckpointError(f"{str(path)!r} has an unreadable header: {err}") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{str(path)!r} has a header that is not a JSON object")
    ends = [
        v["data_offsets"][1]
        for k, v in header.items()
        if k != "__metadata__" and isinstance(v, dict) and "data_offsets" in v
    ]
    data = size - 8 - n
    if max(ends, default=0) != data:
        raise CheckpointError(
            f"{str(path)!r} is truncated or padded: its header describes "
            f"{max(ends, default=0)} bytes of tensors, the file holds {data}"
        )
    return header


def _check_bytes(path: Path, *, where: str, content_type: str | None = None) -> None:
    """Refuse pickles and non-safetensors bytes (a downloaded HTML page, a truncated file)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(_SNIFF)
    found = _sniff(head, size)
    if found in ("pickle", "zip"):
        raise UnsafeCheckpointError(
            f"{where!r} holds a {'torch.save zip' if found == 'zip' else 'pickle'} checkpoint, "
            "which can run code when loaded; it was not loaded. miso_xr loads .safetensors "
            "only; convert it explicitly with `miso-xr hub convert IN OUT.safetensors` "
            "(torch.load(weights_only=True): tensors only, no code)"
        )
    try:
        if found != "safetensors":
            raise CheckpointError("not a safetensors file")
        _safetensors_header(path)
    except CheckpointError as err:
        raise IntegrityError(
            f"{where!r} is not a valid .safetensors checkpoint ({err}); "
            f"{_describe(content_type, head, size)}"
        ) from None


def _tensor_summary(header: dict[str, Any]) -> dict[str, Any]:
    count = params = 0
    for k, v in header.items():
        if k == "__metadata__" or not isinstance(v, dict):
            continue
        count += 1
        n = 1
        for d in v.get("shape", []):
            n *= int(d)
        params += n
    return {"tensors": count, "parameters": params}
