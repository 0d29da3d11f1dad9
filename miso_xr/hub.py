"""The checkpoint hub: names, URLs and paths -> a verified local ``.safetensors`` file -> a model.

A hub is a directory (local, on a web server, or in a bucket) holding checkpoint files and an
``index.json`` that lists them with their sha256, size, licence and metadata. :func:`load`
resolves a source to a local file in a content-addressed cache, checks its hash, and hands it to
:func:`miso_xr.loaders.load_checkpoint`. Nothing here runs code from a file: pickle checkpoints are
refused unless converted explicitly with :func:`convert`.

>>> import miso_xr
>>> model = miso_xr.load("perm.safetensors")                      # doctest: +SKIP
>>> model = miso_xr.load("miso-permafrost-tiny@1")                # doctest: +SKIP
>>> model = miso_xr.load("https://example.org/hub/perm.safetensors",
...                      sha256="9f2c...")                        # doctest: +SKIP

Environment: ``MISO_XR_CACHE`` (cache directory; default ``$XDG_CACHE_HOME/miso_xr`` or
``~/.cache/miso_xr``), ``MISO_XR_OFFLINE=1`` (cache only), ``MISO_XR_HUBS`` (more hub indexes:
comma or space separated URLs or directories).
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ._files import atomic_write
from .checkpoint import PICKLE_SUFFIXES, read_info, sha256_file
from .exceptions import (
    CheckpointError,
    HubError,
    InputError,
    IntegrityError,
    MisoError,
    OfflineError,
    UnsafeCheckpointError,
)

__all__ = [
    "SCHEMA_VERSION",
    "ConversionReport",
    "Entry",
    "VerifyReport",
    "configure",
    "convert",
    "fetch",
    "get_cache_dir",
    "hub_locations",
    "list_entries",
    "load",
    "load_backbone",
    "main",
    "publish",
    "read_index",
    "resolve",
    "verify",
]

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
DEFAULT_INDEX = Path(__file__).with_name("hub_index.json")
ENV_CACHE = "MISO_XR_CACHE"
ENV_OFFLINE = "MISO_XR_OFFLINE"
ENV_HUBS = "MISO_XR_HUBS"
ENTRY_KINDS = ("model", "backbone")

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
_SHA = re.compile(r"^[0-9a-f]{64}$")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_CHUNK = 1 << 20
_SNIFF = 64  # bytes kept from the start of a download to say what arrived
_INDEX_MAX = 16 << 20  # an index larger than this is not an index
_LOCK_WAIT = 3600.0  # another process may be downloading a large file; its own timeouts bound it

# process-wide settings from configure(); None = fall back to the environment
_settings: dict[str, Any] = {"hubs": (), "cache_dir": None, "offline": None}


# --------------------------------------------------------------------------------------------
# configuration


def configure(
    *,
    hubs: str | Sequence[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    offline: bool | None = None,
) -> dict[str, Any]:
    """Set process-wide hub settings (they win over the environment); return the previous ones.

    Parameters
    ----------
    hubs
        Extra hub indexes (URLs or directories) searched after a call's ``hub=`` and before
        ``MISO_XR_HUBS`` and the index shipped with miso_xr.
    cache_dir
        Cache directory (else ``MISO_XR_CACHE``, ``$XDG_CACHE_HOME/miso_xr``, ``~/.cache/miso_xr``).
    offline
        ``True``: never touch the network, only the cache (else ``MISO_XR_OFFLINE``).

    Examples
    --------
    >>> from miso_xr import hub
    >>> previous = hub.configure(hubs=["https://models.example.org/miso"], offline=False)
    >>> _ = hub.configure(**previous)
    """
    previous = dict(_settings)
    if hubs is not None:
        _settings["hubs"] = (hubs,) if isinstance(hubs, str) else tuple(hubs)
    if cache_dir is not None:
        _settings["cache_dir"] = cache_dir
    if offline is not None:
        _settings["offline"] = bool(offline)
    return previous


def get_cache_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The cache directory in use: argument, :func:`configure`, ``MISO_XR_CACHE``, XDG default.

    Examples
    --------
    >>> get_cache_dir("/tmp/miso-cache")
    PosixPath('/tmp/miso-cache')
    """
    chosen = cache_dir or _settings["cache_dir"] or os.environ.get(ENV_CACHE)
    if not chosen:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
        chosen = os.path.join(xdg, "miso_xr")
    return Path(chosen).expanduser()


def _is_offline(offline: bool | None) -> bool:
    if offline is not None:
        return bool(offline)
    if _settings["offline"] is not None:
        return bool(_settings["offline"])
    return os.environ.get(ENV_OFFLINE, "").strip().lower() in ("1", "true", "yes", "on")


def hub_locations(hub: str | os.PathLike[str] | Sequence[str] | None = None) -> list[str]:
    """Hub indexes searched, in order: ``hub``, :func:`configure`, ``MISO_XR_HUBS``, built-in.

    Examples
    --------
    >>> hub_locations("/srv/hub")[0]
    '/srv/hub'
    """
    found: list[str] = []
    if hub is not None:
        found += [os.fspath(hub)] if isinstance(hub, (str, os.PathLike)) else list(hub)
    found += list(_settings["hubs"])
    found += [h for h in re.split(r"[,\s]+", os.environ.get(ENV_HUBS, "")) if h]
    found.append(str(DEFAULT_INDEX))
    return list(dict.fromkeys(found))  # first occurrence wins, order kept


# --------------------------------------------------------------------------------------------
# index entries


@dataclass(frozen=True)
class Entry:
    """One checkpoint listed in a hub index.

    ``url`` may be relative to the index (a hub directory is relocatable); :attr:`location` is
    the absolute one. ``metadata`` is the checkpoint's ``CheckpointInfo.summary()`` for models.
    """

    name: str
    version: str
    kind: str
    url: str
    sha256: str
    size: int
    licence: str = ""
    description: str = ""
    metadata: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    index: str = field(default="", compare=False)  # where this entry was read (not serialised)

    @property
    def ref(self) -> str:
        """``"name@version"``."""
        return f"{self.name}@{self.version}"

    @property
    def location(self) -> str:
        """The file's absolute URL or path (``url`` resolved against the index's location)."""
        return _join(self.index, self.url) if self.index else self.url

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "kind": self.kind,
            "url": self.url,
            "sha256": self.sha256,
            "size": self.size,
            "licence": self.licence,
            "description": self.description,
            "metadata": self.metadata,
        }

    @classmethod
    def from_dict(cls, d: Any, *, index: str = "") -> Entry:
        where = f"hub index {index!r}" if index else "hub entry"
        if not isinstance(d, dict):
            raise HubError(f"{where} has an entry that is not a JSON object: {d!r:.80}")
        missing = [k for k in ("name", "version", "kind", "url", "sha256", "size") if k not in d]
        if missing:
            raise HubError(
                f"{where}: entry {d.get('name', '?')!r} lacks {missing}; entries need name, "
                "version, kind, url, sha256, size (and licence, description, metadata)"
            )
        entry = cls(
            name=str(d["name"]),
            version=str(d["version"]),
            kind=str(d["kind"]),
            url=str(d["url"]),
            sha256=str(d["sha256"]).lower(),
            size=d["size"] if isinstance(d["size"], int) else -1,
            licence=str(d.get("licence", "")),
            description=str(d.get("description", "")),
            metadata=dict(d.get("metadata") or {}),
            index=index,
        )
        if not _SHA.match(entry.sha256):
            raise HubError(f"{where}: entry {entry.ref!r} has sha256 {d['sha256']!r}; need 64 hex")
        if entry.size < 0:
            raise HubError(f"{where}: entry {entry.ref!r} has size {d['size']!r}; need bytes >= 0")
        if entry.kind not in ENTRY_KINDS:
            raise HubError(
                f"{where}: entry {entry.ref!r} has kind {entry.kind!r}; need {ENTRY_KINDS}"
            )
        return entry


def _join(index: str, url: str) -> str:
    if _SCHEME.match(url) or os.path.isabs(url):
        return url
    if _SCHEME.match(index):
        # urljoin ignores schemes it does not know (memory://, s3://), so join by hand
        return index[: index.rfind("/") + 1] + url.removeprefix("./")
    return str(Path(index).parent / url)


def _version_key(version: str) -> tuple:
    # natural order ("1.10" after "1.9"); re.split with a group alternates str, int, str, ...
    return tuple(int(p) if i % 2 else p for i, p in enumerate(re.split(r"(\d+)", version)))


def _index_location(hub: str) -> str:
    if hub.startswith("file://"):
        hub = _file_url_path(hub)
    if _SCHEME.match(hub):
        return hub if hub.endswith(".json") else hub.rstrip("/") + "/index.json"
    path = Path(hub).expanduser()
    return str(path if path.suffix == ".json" else path / "index.json")


def _file_url_path(url: str) -> str:
    return urllib.request.url2pathname(urllib.parse.urlparse(url).path)


def _parse_index(text: bytes | str, where: str) -> list[Entry]:
    try:
        doc = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        head = text[:60] if isinstance(text, str) else text[:60].decode("latin-1")
        raise HubError(
            f"hub index {where!r} is not JSON ({err}); it starts {head!r}. A hub index is "
            '{"schema_version": 1, "entries": [...]}'
        ) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("entries"), list):
        raise HubError(
            f'hub index {where!r} needs the form {{"schema_version": 1, "entries": [...]}}'
        )
    schema = doc.get("schema_version")
    if not isinstance(schema, int) or schema > SCHEMA_VERSION:
        raise HubError(
            f"hub index {where!r} has schema_version {schema!r}; this miso_xr reads "
            f"schema_version <= {SCHEMA_VERSION} (upgrade miso_xr for newer hubs)"
        )
    return [Entry.from_dict(d, index=where) for d in doc["entries"]]


def read_index(
    hub: str | os.PathLike[str],
    *,
    offline: bool | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    timeout: float = 30,
) -> list[Entry]:
    """Read one hub's entries (a directory, its ``index.json``, or a URL of either).

    Remote indexes are copied into the cache so that offline mode can still resolve names.

    Examples
    --------
    >>> [e.ref for e in read_index("/srv/hub")]                     # doctest: +SKIP
    ['miso-permafrost-tiny@1']
    """
    where = _index_location(os.fspath(hub))
    if not _SCHEME.match(where):
        try:
            text = Path(where).read_bytes()
        except FileNotFoundError:
            raise HubError(
                f"hub index {where!r} does not exist; a hub is a directory holding index.json "
                "(create one with miso_xr.hub.publish or `miso-xr hub publish`)"
            ) from None
        except OSError as err:
            raise HubError(f"hub index {where!r} cannot be read: {err}") from err
        return _parse_index(text, where)
    copy = get_cache_dir(cache_dir) / "indexes" / f"{_key(where)}.json"
    if _is_offline(offline):
        if not copy.is_file():
            raise OfflineError(
                f"offline mode: hub index {where!r} was never fetched into the cache (looked at "
                f"{str(copy)!r}); run `miso-xr hub list --hub {where}` once with internet"
            )
        return _parse_index(copy.read_bytes(), where)
    text = _read_small(where, timeout=timeout, limit=_INDEX_MAX)
    entries = _parse_index(text, where)
    try:
        atomic_write(copy, text)
    except OSError as err:  # a read-only shared cache still serves loads
        log.info("could not keep a copy of %s in the cache: %s", where, err)
    return entries


def list_entries(
    *,
    hub: str | os.PathLike[str] | Sequence[str] | None = None,
    offline: bool | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    timeout: float = 30,
) -> list[Entry]:
    """Entries of every hub searched (see :func:`hub_locations`), in search order.

    Examples
    --------
    >>> for e in list_entries(hub="/srv/hub"):                        # doctest: +SKIP
    ...     print(e.ref, e.kind, e.size)
    """
    out: list[Entry] = []
    for location in hub_locations(hub):
        out += read_index(location, offline=offline, cache_dir=cache_dir, timeout=timeout)
    return out


def resolve(
    name: str,
    *,
    hub: str | os.PathLike[str] | Sequence[str] | None = None,
    offline: bool | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    timeout: float = 30,
) -> Entry:
    """Find a hub entry by ``"name"`` (its highest version) or ``"name@version"``.

    Hubs are searched in :func:`hub_locations` order; the first hub listing the name decides.

    Examples
    --------
    >>> resolve("miso-permafrost-tiny@1", hub="/srv/hub").sha256      # doctest: +SKIP
    '3b1f...'
    """
    base, _, version = name.partition("@")
    failures: list[HubError] = []
    seen: list[str] = []
    for location in hub_locations(hub):
        try:
            entries = read_index(location, offline=offline, cache_dir=cache_dir, timeout=timeout)
        except HubError as err:  # one unreachable hub should not hide entries of the others
            failures.append(err)
            continue
        same = [e for e in entries if e.name == base]
        seen += [e.ref for e in entries]
        if not same:
            continue
        if version:
            exact = [e for e in same if e.version == version]
            if not exact:
                raise HubError(
                    f"hub {location!r} has {base!r} in versions "
                    f"{sorted((e.version for e in same), key=_version_key)}, not {version!r}"
                )
            return exact[0]
        return max(same, key=lambda e: _version_key(e.version))
    known = ", ".join(sorted(set(seen))) or "none"
    msg = (
        f"no hub entry named {base!r} (asked {name!r}); hubs searched: {hub_locations(hub)}; "
        f"entries there: {known}. A local file needs an existing path (e.g. ./{name})"
    )
    if failures:
        msg += "; hubs that could not be read: " + " | ".join(map(str, failures))
    # offline with an index never cached: say so with the offline class users catch
    raise (OfflineError if any(isinstance(f, OfflineError) for f in failures) else HubError)(msg)


# --------------------------------------------------------------------------------------------
# what bytes are: safetensors, pickle, or something else


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


# --------------------------------------------------------------------------------------------
# transports: open a byte stream for a URL, with timeouts


@contextmanager
def _open_stream(url: str, *, timeout: float) -> Iterator[tuple[IO[bytes], str | None, int | None]]:
    """Yield ``(stream, content_type, length)``; every failure is one HubError naming ``url``."""
    scheme = (_SCHEME.match(url) or [None, ""])[1].lower()
    if scheme in ("http", "https"):
        from . import __version__

        request = urllib.request.Request(
            url, headers={"User-Agent": f"miso_xr/{__version__}", "Accept-Encoding": "identity"}
        )
        try:
            # the timeout bounds the connect and every read: a stalled server cannot hang us
            response = urllib.request.urlopen(request, timeout=timeout)
        except urllib.error.HTTPError as err:
            err.close()
            hint = (
                " (the file is not on the server: check the hub's index)" if err.code == 404 else ""
            )
            raise HubError(f"{url} answered HTTP {err.code} {err.reason}{hint}") from None
        except (urllib.error.URLError, TimeoutError, OSError, http.client.HTTPException) as err:
            reason = getattr(err, "reason", err)
            raise HubError(f"{url} could not be reached in {timeout} s: {reason}") from None
        with response:
            length = response.headers.get("Content-Length")
            yield (
                response,
                response.headers.get("Content-Type"),
                int(length) if length and length.isdigit() else None,
            )
        return
    if scheme == "" or scheme == "file":
        path = _file_url_path(url) if scheme == "file" else url
        try:
            f = open(path, "rb")
        except OSError as err:
            raise HubError(f"{url} cannot be read: {err}") from None
        with f:
            yield f, None, os.fstat(f.fileno()).st_size
        return
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as err:
        raise HubError(
            f"{url}: no installed filesystem handles {scheme}:// ({err}); install its fsspec "
            "package (s3fs for s3://, gcsfs for gs://, adlfs for az://)"
        ) from None
    try:
        f = fs.open(path, "rb")
    except FileNotFoundError:
        raise HubError(f"{url} does not exist (not found on {scheme}://)") from None
    except Exception as err:  # noqa: BLE001 - each fsspec backend raises its own errors
        raise HubError(f"{url} cannot be opened: {err}") from None
    with f:
        yield f, None, getattr(f, "size", None)


def _read_small(url: str, *, timeout: float, limit: int) -> bytes:
    with _open_stream(url, timeout=timeout) as (stream, content_type, _):
        try:
            data = stream.read(limit + 1)
        except (TimeoutError, OSError, http.client.HTTPException) as err:
            raise HubError(f"{url} stopped answering while read ({err})") from None
    if len(data) > limit:
        raise HubError(f"{url} is larger than {limit} bytes; not a hub index")
    return data


# --------------------------------------------------------------------------------------------
# the cache: blobs/<sha256>.safetensors, indexes/, urls/, locks/


def _key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _blob(cache: Path, sha256: str) -> Path:
    return cache / "blobs" / f"{sha256}.safetensors"


@contextmanager
def _lock(cache: Path, key: str) -> Iterator[None]:
    from filelock import FileLock, Timeout

    locks = cache / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(locks / f"{key}.lock"), timeout=_LOCK_WAIT)
    try:
        lock.acquire()
    except Timeout:
        raise HubError(
            f"another process held the cache lock {lock.lock_file!r} for {_LOCK_WAIT} s; "
            "if none is running, delete that lock file"
        ) from None
    try:
        yield
    finally:
        lock.release()


def _url_record(cache: Path, url: str) -> dict[str, Any] | None:
    try:
        return json.loads((cache / "urls" / f"{_key(url)}.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _hash_ok(path: Path, sha256: str, size: int | None) -> bool:
    if size is not None and path.stat().st_size != size:
        return False
    return sha256_file(path) == sha256


def _download(
    url: str,
    *,
    cache: Path,
    key: str,
    sha256: str | None,
    size: int | None,
    timeout: float,
    label: str,
) -> tuple[Path, str]:
    """Stream ``url`` to a temporary file in the cache, verify, move into place atomically.

    Called with the lock for ``key`` held. Returns the blob path and its sha256.
    """
    from tqdm.auto import tqdm

    blobs = cache / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    for stale in blobs.glob(f".{key}.*.part"):  # left by a killed process; we hold the lock
        stale.unlink(missing_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{key}.", suffix=".part", dir=blobs)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        received = 0
        head = b""
        with os.fdopen(fd, "wb") as out, _open_stream(url, timeout=timeout) as (stream, ctype, n):
            # stop reading past the expected size: a wrong or endless body cannot fill the disk
            cap = size + 1 if size is not None else None
            with tqdm(
                total=size or n, unit="B", unit_scale=True, desc=label, disable=None, leave=False
            ) as bar:
                while True:
                    want = _CHUNK if cap is None else min(_CHUNK, cap - received)
                    if want <= 0:
                        break
                    try:
                        block = stream.read(want)
                    except http.client.IncompleteRead as err:
                        raise HubError(
                            f"download of {url} was cut off after {received + len(err.partial)}"
                            f" bytes (expected {n if n is not None else size}); try again"
                        ) from None
                    except (TimeoutError, OSError, http.client.HTTPException) as err:
                        raise HubError(
                            f"{url} stopped sending after {received} bytes ({err}; read timeout "
                            f"{timeout} s)"
                        ) from None
                    except Exception as err:  # fsspec backends raise their own errors
                        raise HubError(f"{url} failed after {received} bytes: {err}") from None
                    if not block:
                        break
                    if len(head) < _SNIFF:
                        head += block[: _SNIFF - len(head)]
                    digest.update(block)
                    out.write(block)
                    received += len(block)
                    bar.update(len(block))
            out.flush()
            os.fsync(out.fileno())
        got = digest.hexdigest()
        what = _describe(ctype, head, received)
        found = _sniff(head, received)
        if found in ("pickle", "zip"):
            _check_bytes(tmp, where=url, content_type=ctype)  # raises UnsafeCheckpointError
        if n is not None and received < n:
            raise HubError(f"download of {url} was cut off after {received} of {n} bytes")
        if size is not None and received != size:
            raise IntegrityError(
                f"{label}: {url} is {'truncated' if received < size else 'too long'}: expected "
                f"{size} bytes; {what}"
            )
        if sha256 is not None and got != sha256:
            raise IntegrityError(
                f"{label}: sha256 mismatch for {url}: expected {sha256}, got {got}; {what}"
            )
        _check_bytes(tmp, where=url, content_type=ctype)
        final = _blob(cache, got)
        os.replace(tmp, final)
        return final, got
    finally:
        tmp.unlink(missing_ok=True)


def _cached(cache: Path, url: str, sha256: str | None, size: int | None) -> Path | None:
    """The good cached file for ``url`` (pinned by ``sha256``, else by the URL's record)."""
    if sha256 is None:  # a plain URL: the hash it had when last downloaded
        record = _url_record(cache, url) or {}
        sha256, size = record.get("sha256"), record.get("size")
        if not isinstance(sha256, str) or not _SHA.match(sha256):
            return None
    final = _blob(cache, sha256)
    if not final.is_file():
        return None
    if _hash_ok(final, sha256, size):  # checked on every load: disks and copies rot
        return final
    final.unlink(missing_ok=True)  # never leave a bad file under a final name
    log.warning("cached %s did not match its sha256 and was removed", final)
    return None


def _fetch_url(
    url: str,
    *,
    sha256: str | None,
    size: int | None,
    cache: Path,
    offline: bool,
    timeout: float,
    label: str,
) -> tuple[Path, str]:
    _refuse_pickle_name(url)
    rotted = sha256 is not None and _blob(cache, sha256).is_file()
    found = _cached(cache, url, sha256, size)
    if found is not None:
        return found, found.stem
    if offline:
        if rotted:
            raise IntegrityError(
                f"offline mode: the cached copy of {label!r} ({str(_blob(cache, sha256))!r}) did "
                f"not match sha256 {sha256} and was removed; fetch it again with internet"
            )
        expected = f"sha256 {sha256}" if sha256 else "sha256 unknown (pass sha256=)"
        looked = str(_blob(cache, sha256)) if sha256 else str(cache / "urls" / f"{_key(url)}.json")
        raise OfflineError(
            f"offline mode (offline=True or {ENV_OFFLINE}=1): {label!r} ({expected}) is not in the "
            f"cache; looked at {looked!r}. On a machine with internet run `miso-xr hub fetch "
            f"{label} --cache-dir DIR` and copy DIR here (point {ENV_CACHE} at it)"
        )
    key = sha256 or f"url-{_key(url)}"
    with _lock(cache, key):
        found = _cached(cache, url, sha256, size)  # another process may have fetched it meanwhile
        if found is not None:
            return found, found.stem
        path, got = _download(
            url, cache=cache, key=key, sha256=sha256, size=size, timeout=timeout, label=label
        )
        if sha256 is None:
            record = {"url": url, "sha256": got, "size": path.stat().st_size}
            atomic_write(cache / "urls" / f"{_key(url)}.json", json.dumps(record).encode())
    return path, got


def _fetch_hf(url: str, *, sha256: str | None, offline: bool, timeout: float) -> tuple[Path, str]:
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise HubError(
            f"{url!r} needs the huggingface_hub package: pip install 'miso_xr[hf]'"
        ) from None
    parts = url[len("hf://") :].split("/")
    if len(parts) < 3 or not all(parts):
        raise InputError(
            f"{url!r} is not an hf:// checkpoint URL; write hf://ORG/REPO/path/file.safetensors "
            "(or hf://ORG/REPO@REVISION/path/file.safetensors)"
        )
    repo, _, revision = parts[1].partition("@")
    filename = "/".join(parts[2:])
    _refuse_pickle_name(filename)
    try:
        local = Path(
            hf_hub_download(
                repo_id=f"{parts[0]}/{repo}",
                filename=filename,
                revision=revision or None,
                local_files_only=offline,
                etag_timeout=timeout,
            )
        )
    except Exception as err:  # noqa: BLE001 - huggingface_hub raises many error types
        cls = OfflineError if offline else HubError
        raise cls(f"{url!r} could not be fetched from the Hugging Face Hub: {err}") from None
    return _verify_local(local, sha256=sha256, where=url)


def _verify_local(path: Path, *, sha256: str | None, where: str) -> tuple[Path, str]:
    _refuse_pickle_name(str(path))
    if not path.is_file():
        raise CheckpointError(f"checkpoint {where!r} does not exist (looked at {str(path)!r})")
    _check_bytes(path, where=where)
    got = sha256_file(path)
    if sha256 is not None and got != sha256:
        raise IntegrityError(f"sha256 mismatch for {where!r}: expected {sha256}, got {got}")
    return path, got


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


# --------------------------------------------------------------------------------------------
# public: fetch, load, load_backbone, verify


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
    from .loaders import load_checkpoint

    path, digest, entry = _materialise(
        source, sha256=sha256, offline=offline, cache_dir=cache_dir, hub=hub, timeout=timeout
    )
    if entry is not None and entry.kind != "model":
        raise InputError(
            f"hub entry {entry.ref!r} is a {entry.kind}, not a model; load it with "
            f"miso_xr.hub.load_backbone({entry.ref!r}, in_channels=...)"
        )
    return load_checkpoint(path, sha256=digest, source=os.fspath(source))


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
    from safetensors.torch import load_file

    from .model.swin import SwinV2Encoder, load_swin_v2_state_dict

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


@dataclass(frozen=True)
class VerifyReport:
    """What :func:`verify` found; ``ok`` when nothing is wrong."""

    source: str
    path: str
    sha256: str
    size: int
    expected_sha256: str | None = None
    expected_size: int | None = None
    kind: str = ""
    metadata: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        lines = [
            f"{'OK  ' if self.ok else 'BAD '} {self.source}",
            f"     file    {self.path}",
            f"     sha256  {self.sha256}"
            + (f" (expected {self.expected_sha256})" if self.expected_sha256 else ""),
            f"     size    {self.size}"
            + (f" (expected {self.expected_size})" if self.expected_size is not None else ""),
        ]
        if self.kind:
            lines.append(f"     kind    {self.kind}")
        lines += [f"     problem {p}" for p in self.problems]
        return "\n".join(lines)


def _inspect(path: Path) -> tuple[str, dict[str, Any], list[str]]:
    """(kind, metadata, problems) of a local file: header, then miso_xr metadata if any."""
    problems: list[str] = []
    try:
        _check_bytes(path, where=str(path))
    except HubError as err:
        return "", {}, [str(err)]
    try:
        info = read_info(path)
    except CheckpointError as err:
        if "not a miso_xr checkpoint" not in str(err):
            problems.append(str(err))
        header = _safetensors_header(path)
        return "backbone", _tensor_summary(header), problems
    return "model", info.summary(), problems


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


def verify(
    source: str | os.PathLike[str],
    *,
    offline: bool | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    hub: str | os.PathLike[str] | Sequence[str] | None = None,
    timeout: float = 30,
) -> VerifyReport:
    """Check a checkpoint's hash, size, header and metadata; never raises for a bad file.

    ``source`` is a local path (checked as it is), a hub entry (its cached copy is checked
    against the index: sha256, size, metadata; fetched first when absent and online) or a URL
    (fetched, then checked).

    Examples
    --------
    >>> report = verify("perm.safetensors")                                  # doctest: +SKIP
    >>> report.ok, report.sha256[:8]                                         # doctest: +SKIP
    (True, '3b1f09aa')
    """
    kind, value = _classify(source)
    problems: list[str] = []
    entry: Entry | None = None
    if kind == "path":
        path = Path(value).expanduser()
        _refuse_pickle_name(str(path))
        if not path.is_file():
            raise CheckpointError(f"checkpoint {value!r} does not exist")
    elif kind == "name":
        cache = get_cache_dir(cache_dir)
        entry = resolve(value, hub=hub, offline=offline, cache_dir=cache, timeout=timeout)
        path = _blob(cache, entry.sha256)
        if not path.is_file():
            path = fetch(
                entry.ref, offline=offline, cache_dir=cache, hub=entry.index, timeout=timeout
            )
    else:
        path = fetch(value, offline=offline, cache_dir=cache_dir, timeout=timeout)
    digest = sha256_file(path)
    size = path.stat().st_size
    found_kind, metadata, problems = _inspect(path)
    if entry is not None:
        if digest != entry.sha256:
            problems.append(f"sha256 {digest} differs from the index's {entry.sha256}")
        if size != entry.size:
            problems.append(f"size {size} differs from the index's {entry.size}")
        if found_kind and found_kind != entry.kind:
            problems.append(f"the file holds a {found_kind}; the index says {entry.kind}")
        for k, v in entry.metadata.items():
            if found_kind == entry.kind and metadata.get(k) != v:
                problems.append(f"metadata {k!r} is {metadata.get(k)!r}; the index says {v!r}")
    return VerifyReport(
        source=os.fspath(source),
        path=str(path),
        sha256=digest,
        size=size,
        expected_sha256=entry.sha256 if entry else None,
        expected_size=entry.size if entry else None,
        kind=found_kind,
        metadata=metadata,
        problems=tuple(problems),
    )


# --------------------------------------------------------------------------------------------
# publish: a directory hub on disk or any fsspec URL


def _write_index_doc(entries: Iterable[Entry]) -> bytes:
    doc = {
        "schema_version": SCHEMA_VERSION,
        "entries": [
            e.to_dict() for e in sorted(entries, key=lambda e: (e.name, _version_key(e.version)))
        ],
    }
    return (json.dumps(doc, indent=2, sort_keys=False) + "\n").encode()


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
    from filelock import FileLock

    with FileLock(str(root / ".index.json.lock"), timeout=_LOCK_WAIT):
        index = root / "index.json"
        entries = _parse_index(index.read_bytes(), str(index)) if index.exists() else []
        kept = _merge(entries, entry, where=str(index))
        if kept is None:
            return Entry(**{**entry.to_dict(), "index": str(index)})
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
        os.close(fd)
        try:
            shutil.copyfile(src, tmp)
            os.replace(tmp, target)
        finally:
            Path(tmp).unlink(missing_ok=True)
        atomic_write(index, _write_index_doc([*kept, entry]))
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


# --------------------------------------------------------------------------------------------
# convert: the one explicit door for pickle checkpoints


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


# --------------------------------------------------------------------------------------------
# CLI: miso-xr hub list | fetch | verify | publish | convert


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--hub", action="append", help="hub index URL or directory (repeatable)")
    common.add_argument("--cache-dir", help=f"cache directory (default ${ENV_CACHE} or XDG)")
    common.add_argument("--offline", action="store_true", default=None, help="cache only")
    common.add_argument("--timeout", type=float, default=30, help="connect/read timeout, s")
    p = argparse.ArgumentParser(
        prog="miso-xr hub", description="List, fetch, verify, publish and convert checkpoints."
    )
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("list", parents=[common], help="entries of every hub searched")
    s.add_argument("--json", action="store_true", help="print the entries as JSON")
    s = sub.add_parser("fetch", parents=[common], help="download and verify into the cache")
    s.add_argument("source", help="NAME[@VERSION] or URL")
    s.add_argument("--sha256", help="expected sha256 (for plain URLs)")
    s = sub.add_parser("verify", parents=[common], help="check hash, size, header, metadata")
    s.add_argument("sources", nargs="*", help="NAME, PATH or URL (none: every cached file)")
    s = sub.add_parser("publish", parents=[common], help="add a checkpoint to a directory hub")
    s.add_argument("checkpoint")
    s.add_argument("hub_dir")
    s.add_argument("--name", required=True)
    s.add_argument("--version", required=True)
    s.add_argument("--licence", "--license", dest="licence", required=True)
    s.add_argument("--description", default="")
    s.add_argument("--kind", choices=ENTRY_KINDS, default="model")
    s = sub.add_parser("convert", help="pickle (.pt/.pth/.ckpt) -> .safetensors, tensors only")
    s.add_argument("src")
    s.add_argument("dst")
    return p


def main(argv: list[str] | None = None) -> int:
    """``miso-xr hub ...``; returns the exit status (0 ok, 1 a check failed or an error).

    Examples
    --------
    >>> main(["list", "--offline"])                                          # doctest: +SKIP
    0
    """
    args = _parser().parse_args(argv)
    opts: dict[str, Any] = {}
    if args.command != "convert":
        opts = {"offline": args.offline, "cache_dir": args.cache_dir, "timeout": args.timeout}
    try:
        if args.command == "list":
            entries = list_entries(hub=args.hub, **opts)
            if args.json:
                print(json.dumps([e.to_dict() for e in entries], indent=2))
            elif not entries:
                print(f"no entries in {hub_locations(args.hub)}")
            for e in [] if args.json else entries:
                print(f"{e.ref:32} {e.kind:8} {e.size:>12,} B  {e.licence:12} {e.description}")
            return 0
        if args.command == "fetch":
            started = time.perf_counter()
            path = fetch(args.source, sha256=args.sha256, hub=args.hub, **opts)
            print(f"{args.source} -> {path} ({time.perf_counter() - started:.1f} s)")
            return 0
        if args.command == "verify":
            sources: list[str] = list(args.sources)
            if not sources:
                blobs = get_cache_dir(args.cache_dir) / "blobs"
                sources = sorted(str(p) for p in blobs.glob("*.safetensors"))
            bad = 0
            for s in sources:
                report = verify(s, hub=args.hub, **opts)
                problems = list(report.problems)
                # a cached blob is named by its hash: the name is what it must match
                stem = Path(s).stem
                if _SHA.match(stem) and stem != report.sha256:
                    problems.append(f"cached as {stem} but its sha256 is {report.sha256}")
                    report = VerifyReport(**{**report.__dict__, "problems": tuple(problems)})
                print(report)
                bad += not report.ok
            print(f"{len(sources) - bad} ok, {bad} bad")
            return 1 if bad else 0
        if args.command == "publish":
            entry = publish(
                args.checkpoint,
                args.hub_dir,
                name=args.name,
                version=args.version,
                licence=args.licence,
                description=args.description,
                kind=args.kind,
            )
            print(f"published {entry.ref} ({entry.sha256}) in {entry.index}")
            return 0
        print(convert(args.src, args.dst))
        return 0
    except MisoError as err:
        print(f"miso-xr hub {args.command}: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
