"""Signing asset hrefs so that private or token-protected archives can be read.

Today hrefs are signed once, after the search (:func:`sign_items`, the ``sign=`` of
:func:`~miso_xr.cube.stac.open_stac`): Planetary Computer SAS tokens when the
``planetary-computer`` package is installed, or the user's function. Signing at read time
(tokens that expire during a long computation) belongs here too.
"""

from __future__ import annotations

from collections.abc import Callable

from .catalogs import CATALOGS


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


def sign_items(
    items: list[dict], url: str, *, sign: bool | Callable[[list[dict]], list[dict]]
) -> list[dict]:
    """Apply ``open_stac``'s ``sign=`` to one modality's items, once, after the search.

    ``True``: Planetary Computer hrefs get SAS tokens (when ``planetary-computer`` is installed);
    a function: it receives and returns the item dicts; ``False``: the items as they are.
    """
    if callable(sign):
        return sign(items)
    if sign:
        return _sign(items, url)
    return items
