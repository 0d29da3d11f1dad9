"""Signing asset hrefs so that private or token-protected archives can be read, for hours.

Planetary Computer SAS tokens expire after about an hour. A token put into the graph when it is
built (signing the items after the search) has expired by the time a statewide job reaches its
later chunks. So by default hrefs are signed **at read time, on the worker**, as odc-stac's
``patch_url`` does: :class:`~miso_xr.cube.stac._reader.SigningReader` calls a signing function
each time it opens a file, and the Planetary Computer SDK caches a token per storage container and
fetches a new one when it has less than a minute left.

- ``open_stac(sign=True)`` (default): Planetary Computer hrefs signed at read time
  (:func:`planetary_computer_href`) when the ``planetary-computer`` package is installed;
- ``open_stac(patch_url=fn)``: any ``href -> href`` function, applied at read time on the worker
  (it must pickle: a module-level function or a ``functools.partial``);
- ``open_stac(sign="search")``: the old way, hrefs signed once after the search;
- ``open_stac(sign=fn)``: a function of the item dicts, applied once after the search.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .catalogs import CATALOGS

BLOB_STORAGE_DOMAIN = ".blob.core.windows.net"


def _sign(items: list[dict], url: str) -> list[dict]:
    """Sign Planetary Computer hrefs (SAS tokens) when the ``planetary-computer`` package is there."""
    if url != CATALOGS["planetary-computer"]:
        return items
    try:
        import planetary_computer
    except ImportError:
        return items
    for d in items:
        for asset in d.get("assets", {}).values():
            if "href" in asset:
                asset["href"] = planetary_computer.sign_url(asset["href"])
    return items


def unsigned(href: str) -> str:
    """``href`` without a SAS token (the query of an Azure Blob Storage URL); others unchanged.

    >>> unsigned("https://acct.blob.core.windows.net/c/x.tif?st=1&se=2&sig=abc")
    'https://acct.blob.core.windows.net/c/x.tif'
    """
    parts = urlsplit(href)
    if parts.netloc.endswith(BLOB_STORAGE_DOMAIN) and parts.query:
        return urlunsplit(parts._replace(query=""))
    return href


def planetary_computer_href(href: str) -> str:
    """``href`` signed with a current Planetary Computer SAS token (read-time signing).

    Any token already in ``href`` is dropped first; the SDK reuses a cached token while it has
    more than a minute left and otherwise asks its token endpoint (``PC_SDK_SAS_URL``) again.
    """
    import planetary_computer

    return planetary_computer.sign_url(unsigned(href))


def read_time_signer(
    url: str, *, sign: Any, patch_url: Callable[[str], str] | None
) -> Callable[[str], str] | None:
    """The ``href -> href`` function to apply when each file is opened, or None."""
    if patch_url is not None:
        return patch_url
    if sign is True and url == CATALOGS["planetary-computer"]:
        try:
            import planetary_computer  # noqa: F401
        except ImportError:
            return None
        return planetary_computer_href
    return None


def signing_reader(patch_url: Callable[[str], str] | None) -> Any:
    """A stackstac ``reader=`` that applies ``patch_url`` when it opens each file (None: none)."""
    if patch_url is None:
        return None
    from ._reader import SigningReader

    return functools.partial(SigningReader, patch_url=patch_url)


def sign_items(
    items: list[dict], url: str, *, sign: bool | str | Callable[[list[dict]], list[dict]]
) -> list[dict]:
    """Apply ``open_stac``'s ``sign=`` to one modality's items after the search.

    ``"search"``: Planetary Computer hrefs get SAS tokens now, once (when ``planetary-computer``
    is installed); a function: it receives and returns the item dicts; ``True`` and ``False``:
    the items as they are (``True`` signs at read time instead, see :func:`read_time_signer`).
    """
    if callable(sign):
        return sign(items)
    if sign == "search":
        return _sign(items, url)
    return items
