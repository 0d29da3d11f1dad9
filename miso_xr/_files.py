"""Small file helpers shared by the rooms that write (checkpoints, the hub, Zarr markers)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from .exceptions import InputError

__all__ = [
    "UNFINISHED_ATTR",
    "atomic_write",
    "check_finished",
    "fsync_dir",
    "new_file",
    "temp_name",
]

UNFINISHED_ATTR = "miso_xr_unfinished"


def check_finished(obj: Any, what: str = "maps") -> None:
    """Refuse a Dataset/DataArray read from a Zarr store that :func:`to_zarr` has not finished.

    Raises
    ------
    InputError
        Naming the store (when xarray recorded it) and how to finish it.
    """
    attrs = getattr(obj, "attrs", {}) or {}
    if UNFINISHED_ATTR not in attrs:
        return
    source = (getattr(obj, "encoding", {}) or {}).get("source") or attrs.get(UNFINISHED_ATTR)
    raise InputError(
        f"{what}: read from an unfinished Zarr write ({source}), where chunks never written read as "
        "missing. Rerun the same to_zarr (or miso-xr predict) command to finish it, then open "
        "it again"
    )


def new_file(
    directory: str | os.PathLike[str], prefix: str, suffix: str = ".part"
) -> tuple[int, str]:
    """Create a new empty file with a unique name in ``directory``; return ``(fd, path)``.

    Like :func:`tempfile.mkstemp`, but the file gets the mode ``open()`` would give it (0666 less
    the umask: 0644 under umask 022) instead of mkstemp's 0600, so a hub served by a web server,
    a shared-filesystem cache or a worker running as another user can read what we write.
    """
    for _ in range(100):
        path = os.path.join(os.fspath(directory), f"{prefix}{secrets.token_hex(6)}{suffix}")
        try:
            return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), path
        except FileExistsError:  # a name taken: draw another
            continue
    raise FileExistsError(f"no free temporary name in {os.fspath(directory)!r}")  # pragma: no cover


def temp_name(path: str | os.PathLike[str], suffix: str = ".part") -> Path:
    """A fresh name beside ``path`` for a writer that creates the file itself (GDAL)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{secrets.token_hex(6)}{suffix}")


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """Make a rename in ``directory`` durable (POSIX: fsync the directory itself)."""
    try:
        fd = os.open(os.fspath(directory), os.O_RDONLY)
    except OSError:  # a platform without directory handles (Windows): nothing to do
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on directories; the rename still happened
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike[str], data: bytes, *, fsync: bool = False) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one, never a part.

    The bytes go to a temporary file in the same directory (same filesystem), then
    :func:`os.replace` renames it; on any failure the temporary file is removed. The file's mode
    follows the umask, as ``open()``'s would. ``fsync=True`` (checkpoints, hub indexes, Zarr
    markers) flushes the bytes and then the directory, so the new name survives a power cut.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = new_file(path.parent, f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
        if fsync:
            fsync_dir(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
