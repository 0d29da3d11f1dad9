"""A source (hub name, path or URL) -> a verified local file; :func:`load` -> a model."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..checkpoint import PICKLE_SUFFIXES, load_checkpoint
from ..exceptions import InputError, IntegrityError
from .cache import _fetch_hf, _fetch_url, _verify_local
from .index import Entry, resolve
from .settings import _SCHEME, _SHA, _file_url_path, _is_offline, get_cache_dir


def _classify(source: str | os.PathLike[str]) -> tuple[str, str]:
    """``("path" | "http" | "hf" | "fsspec" | "name", value)``."""
    if isinstance(source, os.PathLike):
        return "path", os.fspath(source)
    if not isinstance(source, str) or not source.strip():
        raise InputError(f"checkpoint source {source!r} must be a hub entry name, a path or a URL")
    s = source.strip()
    if s.startswith("file://"):
        return "path", _file_url_path(s)
    m = _SCHEME.match(s)
    if m:
        scheme = m.group(1).lower()
        return ("http" if scheme in ("http", "https") else "hf" if scheme == "hf" else "fsspec"), s
    suffix = Path(s).suffix.lower()
    if (
        "/" in s
        or os.sep in s
        or s.startswith("~")
        or suffix in (".safetensors", *PICKLE_SUFFIXES)
        or Path(s).exists()
    ):
        return "path", s
    return "name", s


def _materialise(
    source: str | os.PathLike[str],
    *,
    sha256: str | None,
    offline: bool | None,
    cache_dir: str | os.PathLike[str] | None,
    hub: Any,
    timeout: float,
) -> tuple[Path, str, Entry | None]:
    if sha256 is not None:
        sha256 = str(sha256).lower()
        if not _SHA.match(sha256):
            raise InputError(f"sha256={sha256!r} must be 64 hexadecimal characters")
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not timeout > 0:
        raise InputError(f"timeout={timeout!r} must be a positive number of seconds")
    kind, value = _classify(source)
    offline = _is_offline(offline)
    if kind == "path":
        path, got = _verify_local(Path(value).expanduser(), sha256=sha256, where=value)
        return path, got, None
    if kind == "hf":
        path, got = _fetch_hf(value, sha256=sha256, offline=offline, timeout=timeout)
        return path, got, None
    cache = get_cache_dir(cache_dir)
    if kind == "name":
        entry = resolve(value, hub=hub, offline=offline, cache_dir=cache, timeout=timeout)
        if sha256 is not None and sha256 != entry.sha256:
            raise IntegrityError(
                f"sha256={sha256} was asked but hub entry {entry.ref!r} ({entry.index}) has "
                f"sha256 {entry.sha256}"
            )
        where = entry.location
        if where.startswith("file://") or not _SCHEME.match(where):
            # a directory hub on this machine (or a shared filesystem): its file is used in
            # place, checked against the entry's sha256 and size, never copied into the cache
            local = Path(_file_url_path(where) if where.startswith("file://") else where)
            path, got = _verify_local(local, sha256=entry.sha256, where=f"{entry.ref} ({where})")
            if entry.size is not None and path.stat().st_size != entry.size:
                raise IntegrityError(
                    f"{entry.ref} ({where}) has {path.stat().st_size} bytes; its index says "
                    f"{entry.size}"
                )
            return path, got, entry
        path, got = _fetch_url(
            entry.location,
            sha256=entry.sha256,
            size=entry.size,
            cache=cache,
            offline=offline,
            timeout=timeout,
            label=entry.ref,
        )
        return path, got, entry
    path, got = _fetch_url(
        value, sha256=sha256, size=None, cache=cache, offline=offline, timeout=timeout, label=value
    )
    return path, got, None


def fetch(
    source: str | os.PathLike[str],
    *,
    sha256: str | None = None,
    offline: bool | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    hub: str | os.PathLike[str] | Sequence[str] | None = None,
    timeout: float = 30,
) -> Path:
    """Resolve ``source`` to a verified local ``.safetensors`` file (downloading if needed).

    Parameters are those of :func:`load`. A local path is returned as is after checking it;
    anything remote lands in the cache as ``blobs/<sha256>.safetensors``.

    Examples
    --------
    >>> path = fetch("miso-permafrost-tiny@1", hub="https://models.example.org/miso")  # doctest: +SKIP
    """
    path, _, _ = _materialise(
        source, sha256=sha256, offline=offline, cache_dir=cache_dir, hub=hub, timeout=timeout
    )
    return path


def load(
    source: str | os.PathLike[str],
    *,
    sha256: str | None = None,
    offline: bool | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    hub: str | os.PathLike[str] | Sequence[str] | None = None,
    timeout: float = 30,
) -> Any:
    """Load a model from a hub name, path or URL, verified by sha256 (no code runs).

    Parameters
    ----------
    source
        A hub entry name (``"name"`` for its highest version, or ``"name@version"``); a local
        path or ``file://`` URL; an ``http(s)://`` URL; ``hf://ORG/REPO/file.safetensors``
        (needs ``pip install 'miso_xr[hf]'``); or any fsspec URL (``s3://``, ``gs://``) whose
        filesystem package is installed. Pickle files (``.pt``, ``.pth``, ``.ckpt``, ...) are
        refused: see :func:`convert`.
    sha256
        Expected hash of the file. Hub entries carry theirs; give it for plain URLs to pin them.
    offline
        ``True``: use only the cache (default from :func:`configure` or ``MISO_XR_OFFLINE``).
    cache_dir
        Cache directory (default from :func:`get_cache_dir`).
    hub
        Hub index (URL or directory) or list of them, searched before the configured ones.
    timeout
        Seconds allowed for the connection and for each read; a stalled server raises HubError.

    Returns
    -------
    The model (``MisoModel`` or ``RandomForestBaseline``) with ``sha256`` and ``source`` set.

    Examples
    --------
    >>> import miso_xr
    >>> model = miso_xr.load("perm.safetensors")                              # doctest: +SKIP
    >>> model = miso_xr.load("miso-permafrost-tiny", hub="/shared/miso-hub")  # doctest: +SKIP
    """
    path, digest, entry = _materialise(
        source, sha256=sha256, offline=offline, cache_dir=cache_dir, hub=hub, timeout=timeout
    )
    if entry is not None and entry.kind != "model":
        raise InputError(
            f"hub entry {entry.ref!r} is a {entry.kind}, not a model; load it with "
            f"miso_xr.hub.load_backbone({entry.ref!r}, in_channels=...)"
        )
    return load_checkpoint(path, sha256=digest, source=os.fspath(source))
