"""Hub indexes: entries, reading them (local or remote, cached for offline use), names."""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._files import atomic_write
from ..exceptions import HubError, OfflineError
from .cache import _key, _read_small
from .settings import (
    _INDEX_MAX,
    _SCHEME,
    _SHA,
    ENTRY_KINDS,
    SCHEMA_VERSION,
    _file_url_path,
    _is_offline,
    get_cache_dir,
    hub_locations,
)

log = logging.getLogger("miso_xr.hub")


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


def _write_index_doc(entries: Iterable[Entry]) -> bytes:
    doc = {
        "schema_version": SCHEMA_VERSION,
        "entries": [
            e.to_dict() for e in sorted(entries, key=lambda e: (e.name, _version_key(e.version)))
        ],
    }
    return (json.dumps(doc, indent=2, sort_keys=False) + "\n").encode()
