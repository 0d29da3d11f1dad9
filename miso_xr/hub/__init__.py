"""The checkpoint hub: names, URLs and paths -> a verified local ``.safetensors`` file.

A hub is a directory (local, on a web server, or in a bucket) holding checkpoint files and an
``index.json`` that lists them with their sha256, size, licence and metadata. :func:`load`
resolves a source to a local file in a content-addressed cache, checks its hash, and hands it to
:func:`miso_xr.checkpoint.load_checkpoint`. Nothing here runs code from a file: pickle checkpoints are
refused unless converted explicitly with :func:`convert`.

>>> import miso_xr
>>> model = miso_xr.load("perm.safetensors")                      # doctest: +SKIP
>>> model = miso_xr.load("miso-permafrost-tiny@1")                # doctest: +SKIP
>>> model = miso_xr.load("https://example.org/hub/perm.safetensors",
...                      sha256="9f2c...")                        # doctest: +SKIP

Environment: ``MISO_XR_CACHE`` (cache directory; default ``$XDG_CACHE_HOME/miso_xr`` or
``~/.cache/miso_xr``), ``MISO_XR_OFFLINE=1`` (cache only), ``MISO_XR_HUBS`` (more hub indexes:
comma or space separated URLs or directories).

The package keeps one module per job: :mod:`~miso_xr.hub.settings` (where to look),
:mod:`~miso_xr.hub.index` (indexes and names), :mod:`~miso_xr.hub.checks` (what bytes are),
:mod:`~miso_xr.hub.cache` (transports, cache, locks, verified downloads),
:mod:`~miso_xr.hub.sources` (a source -> a verified local file; ``load``),
:mod:`~miso_xr.hub.verification`, :mod:`~miso_xr.hub.publishing`,
:mod:`~miso_xr.hub.conversion` and :mod:`~miso_xr.hub.backbones`. Its command line
(``miso-xr hub ...``) lives in :mod:`miso_xr.cli`.
"""

from __future__ import annotations

from .backbones import load_backbone
from .conversion import ConversionReport, convert
from .index import Entry, list_entries, read_index, resolve
from .publishing import publish
from .settings import DEFAULT_INDEX as DEFAULT_INDEX
from .settings import ENTRY_KINDS as ENTRY_KINDS
from .settings import ENV_CACHE as ENV_CACHE
from .settings import ENV_HUBS as ENV_HUBS
from .settings import ENV_OFFLINE as ENV_OFFLINE
from .settings import SCHEMA_VERSION, configure, get_cache_dir, hub_locations
from .settings import _settings as _settings  # the one settings dict (tests reset it)
from .sources import fetch, load
from .verification import VerifyReport, verify

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
    "publish",
    "read_index",
    "resolve",
    "verify",
]
