"""Where the hub looks: process-wide settings, the environment, the cache directory."""

from __future__ import annotations

import os
import re
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
DEFAULT_INDEX = Path(__file__).parent.parent / "hub_index.json"  # shipped beside the package
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


def _file_url_path(url: str) -> str:
    return urllib.request.url2pathname(urllib.parse.urlparse(url).path)
