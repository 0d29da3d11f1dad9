"""Publishing a checkpoint to a directory hub, on disk or behind any fsspec URL."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .._files import atomic_write, fsync_dir, new_file
from ..checkpoint import read_info, sha256_file
from ..exceptions import CheckpointError, HubError, InputError
from .checks import _check_bytes, _refuse_pickle_name, _safetensors_header, _tensor_summary
from .index import Entry, _parse_index, _write_index_doc
from .settings import _NAME, _SCHEME, _VERSION, ENTRY_KINDS, _file_url_path

#: how long a publish waits for another one into the same hub (a copy and an index rewrite)
_PUBLISH_WAIT = 120.0


def publish(
    checkpoint_path: str | os.PathLike[str],
    hub_dir: str | os.PathLike[str],
    *,
    name: str,
    version: str,
    licence: str,
    description: str,
    kind: str = "model",
) -> Entry:
    """Copy a checkpoint into a directory hub and add it to the hub's ``index.json``.

    ``hub_dir`` is a local folder or any fsspec URL (``s3://bucket/hub``); serve it with any
    static web server and point users at it with ``hub=`` or ``MISO_XR_HUBS``. The file lands
    as ``files/NAME-VERSION.safetensors``; the index is rewritten atomically. An entry's version
    is immutable: publishing the same name and version with other bytes is refused.

    Examples
    --------
    >>> entry = publish("perm.safetensors", "/srv/hub", name="perm-tiny", version="1",
    ...                 licence="MIT", description="tiny permafrost model")   # doctest: +SKIP
    >>> miso_xr.load("perm-tiny@1", hub="https://example.org/hub")           # doctest: +SKIP
    """
    src = Path(checkpoint_path).expanduser()
    _refuse_pickle_name(str(src))
    if not _NAME.match(name or ""):
        raise InputError(f"name={name!r}: use letters, digits, '.', '_' or '-' (no '@' or '/')")
    if not _VERSION.match(str(version or "")):
        raise InputError(f"version={version!r}: use letters, digits, '.', '_', '+' or '-'")
    if kind not in ENTRY_KINDS:
        raise InputError(f"kind={kind!r}; a hub entry is one of {ENTRY_KINDS}")
    if not licence or not isinstance(licence, str):
        raise InputError("licence= is required (e.g. 'MIT', 'CC-BY-4.0'): users must know it")
    if not src.is_file():
        raise CheckpointError(f"checkpoint {str(src)!r} does not exist")
    _check_bytes(src, where=str(src))
    if kind == "model":
        metadata = read_info(src).summary()
    else:
        metadata = _tensor_summary(_safetensors_header(src))
    digest = sha256_file(src)
    rel = f"files/{name}-{version}.safetensors"
    entry = Entry(
        name=name,
        version=str(version),
        kind=kind,
        url=rel,
        sha256=digest,
        size=src.stat().st_size,
        licence=licence,
        description=description,
        metadata=metadata,
    )
    hub = os.fspath(hub_dir)
    if hub.startswith("file://"):
        hub = _file_url_path(hub)
    if _SCHEME.match(hub):
        return _publish_fsspec(src, hub.rstrip("/"), entry)
    root = Path(hub).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    from filelock import SoftFileLock, Timeout

    # a soft lock is a file that exists only while a publish runs (made with O_EXCL, which
    # shared filesystems honour), so a finished publish leaves the hub folder as served
    lock = SoftFileLock(str(root / ".index.json.lock"), timeout=_PUBLISH_WAIT)
    try:
        lock.acquire()
    except Timeout:
        raise HubError(
            f"another publish into {str(root)!r} holds {str(root / '.index.json.lock')!r} for "
            f"over {_PUBLISH_WAIT:g} s; if none is running (a killed publish), delete that file"
        ) from None
    try:
        return _publish_local(src, root, rel, entry)
    finally:
        lock.release()


def _publish_local(src: Path, root: Path, rel: str, entry: Entry) -> Entry:
    """Copy the file and rewrite the index (the caller holds the hub's lock)."""
    index = root / "index.json"
    entries = _parse_index(index.read_bytes(), str(index)) if index.exists() else []
    kept = _merge(entries, entry, where=str(index))
    if kept is None:
        return Entry(**{**entry.to_dict(), "index": str(index)})
    target = root / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = new_file(target.parent, f".{target.name}.")
    try:
        with os.fdopen(fd, "wb") as out, open(src, "rb") as inp:
            shutil.copyfileobj(inp, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())  # the bytes are on disk before the index names them
        os.replace(tmp, target)
        fsync_dir(target.parent)
    finally:
        Path(tmp).unlink(missing_ok=True)
    atomic_write(index, _write_index_doc([*kept, entry]), fsync=True)
    return Entry(**{**entry.to_dict(), "index": str(index)})


def _merge(entries: list[Entry], entry: Entry, *, where: str) -> list[Entry] | None:
    """Entries to keep beside ``entry``; None when the very same entry is already there."""
    for e in entries:
        if e.name == entry.name and e.version == entry.version:
            if e.sha256 == entry.sha256:
                return None
            raise HubError(
                f"{where} already lists {entry.ref!r} with sha256 {e.sha256}; a published "
                "version never changes its bytes: publish under a new version"
            )
    return list(entries)


def _publish_fsspec(src: Path, hub: str, entry: Entry) -> Entry:
    import fsspec

    try:
        fs, root = fsspec.core.url_to_fs(hub)
    except (ImportError, ValueError) as err:
        raise HubError(f"hub {hub!r}: no installed filesystem handles it ({err})") from None
    index = f"{root}/index.json"
    where = f"{hub}/index.json"
    entries = _parse_index(fs.cat_file(index), where) if fs.exists(index) else []
    kept = _merge(entries, entry, where=where)
    if kept is not None:
        # object stores make each PUT atomic: readers see the old or the new object, never half
        fs.makedirs(f"{root}/files", exist_ok=True)
        fs.put_file(str(src), f"{root}/{entry.url}")
        fs.pipe_file(index, _write_index_doc([*kept, entry]))
    return Entry(**{**entry.to_dict(), "index": where})
