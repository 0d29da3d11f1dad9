"""Finding items: time windows and seasons, STAC API searches, item dicts, per-modality gathering."""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from ...exceptions import (
    CatalogError,
    CatalogUnreachableError,
    InputError,
    MisoError,
    NoItemsFoundError,
)
from .catalogs import _ACCEPTED

_SEASON = re.compile(r"^(\d{2})-(\d{2})$")


def _parse_time(part: str, *, end: bool) -> pd.Timestamp | None:
    part = part.strip()
    if part in ("", ".."):
        return None
    ts = pd.Timestamp(part)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    if end and "T" not in part:
        # a date-only end is inclusive of that whole day (month, year)
        step = {4: pd.DateOffset(years=1), 7: pd.DateOffset(months=1)}.get(
            len(part), pd.DateOffset(days=1)
        )
        ts = ts + step - pd.Timedelta(microseconds=1)
    return ts


_DATETIME_HELP = (
    "expected 'YYYY-MM-DD/YYYY-MM-DD' (ISO 8601, '..' for open ends), a datetime or date, or a "
    "(start, end) pair of those (None for an open end), as pystac-client takes"
)


def _one_time(value: Any) -> str:
    """One end of a range as ISO 8601 text ('..' for None); a date stays a whole day."""
    import datetime as dt

    if value is None:
        return ".."
    if isinstance(value, str):
        return value
    if isinstance(value, dt.datetime):  # before date: a datetime is a date too
        ts = pd.Timestamp(value)
        ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
        return ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, dt.date):
        return value.isoformat()
    raise TypeError(value)


def datetime_text(datetime: Any) -> str | None:
    """``datetime=`` as pystac-client takes it (text, datetime, date, 2-tuple) -> ISO text.

    >>> import datetime as dt
    >>> datetime_text((dt.date(2019, 6, 15), None))
    '2019-06-15/..'
    >>> datetime_text(dt.datetime(2020, 7, 1, 12))
    '2020-07-01T12:00:00.000000Z'
    """
    if datetime is None or isinstance(datetime, str):
        return datetime
    try:
        if isinstance(datetime, (tuple, list)):
            if len(datetime) != 2:
                raise TypeError(datetime)
            return f"{_one_time(datetime[0])}/{_one_time(datetime[1])}"
        return _one_time(datetime)
    except TypeError:
        raise InputError(f"datetime={datetime!r}: {_DATETIME_HELP}") from None


def _check_datetime(datetime: Any) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
    if datetime is None:
        return None, None
    given = datetime
    datetime = datetime_text(datetime)
    parts = datetime.split("/")
    try:
        if len(parts) == 1:
            return _parse_time(parts[0], end=False), _parse_time(parts[0], end=True)
        if len(parts) == 2:
            start, stop = _parse_time(parts[0], end=False), _parse_time(parts[1], end=True)
            if start is not None and stop is not None and stop < start:
                raise InputError(f"datetime={given!r}: the end is before the start")
            return start, stop
    except (ValueError, TypeError) as err:
        if isinstance(err, InputError):
            raise
    raise InputError(f"datetime={given!r}: {_DATETIME_HELP}")


def _check_season(season: Any) -> tuple[tuple[int, int], tuple[int, int]] | None:
    if season is None:
        return None
    try:
        a, b = season
        ma, mb = _SEASON.match(a), _SEASON.match(b)
        start = (int(ma.group(1)), int(ma.group(2)))
        stop = (int(mb.group(1)), int(mb.group(2)))
        for m, d in (start, stop):
            pd.Timestamp(2020, m, d)  # a leap year: 02-29 is valid
    except (TypeError, ValueError, AttributeError):
        raise InputError(
            f"season={season!r}: expected two 'MM-DD' strings, e.g. ('06-15', '08-15')"
        ) from None
    return start, stop


def _in_season(ts: pd.Timestamp, season: tuple[tuple[int, int], tuple[int, int]]) -> bool:
    md = (ts.month, ts.day)
    start, stop = season
    if start <= stop:
        return start <= md <= stop
    return md >= start or md <= stop  # a window across new year, e.g. ('11-01', '02-28')


def _plain(items: Any) -> list[dict]:
    """Items as plain dicts (deep copies), whatever was given."""
    if isinstance(items, Mapping):
        items = items.get("features", [items]) if items.get("type") != "Feature" else [items]
    out = []
    for it in items:
        if isinstance(it, Mapping):
            out.append(copy.deepcopy(dict(it)))
        elif hasattr(it, "to_dict"):
            out.append(it.to_dict(transform_hrefs=False))
        else:
            raise InputError(
                f"items: got {type(it).__name__}; expected STAC item dicts or pystac Items "
                "(or a pystac ItemCollection)"
            )
    return out


def _restore_epsg(d: dict) -> dict:
    """Put ``proj:epsg`` back where pystac 1.15 wrote ``proj:code`` (stackstac reads only epsg)."""
    for holder in (d.get("properties", {}), *d.get("assets", {}).values()):
        if holder.get("proj:epsg") is None and isinstance(holder.get("proj:code"), str):
            m = re.match(r"^EPSG:(\d+)$", holder["proj:code"].strip(), re.IGNORECASE)
            if m:
                holder["proj:epsg"] = int(m.group(1))
    return d


def _item_time(d: dict) -> pd.Timestamp | None:
    props = d.get("properties", {})
    value = props.get("datetime") or props.get("start_datetime")
    if value is None:
        return None
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _filter_items(
    items: list[dict],
    *,
    window: tuple[pd.Timestamp | None, pd.Timestamp | None],
    season: Any,
    max_cloud: float | None,
) -> list[dict]:
    start, stop = window
    out = []
    for d in items:
        ts = _item_time(d)
        if ts is not None:
            if start is not None and ts < start or stop is not None and ts > stop:
                continue
            if season is not None and not _in_season(ts, season):
                continue
        cloud = d.get("properties", {}).get("eo:cloud_cover")
        if max_cloud is not None and cloud is not None and float(cloud) > max_cloud:
            continue
        out.append(d)
    return out


def _search_windows(window, season) -> list[str | None]:
    """Datetime strings to search: one per year's season window when both ends are known."""
    start, stop = window
    iso = "%Y-%m-%dT%H:%M:%SZ"

    def fmt(a, b):
        return f"{a.strftime(iso) if a is not None else '..'}/{b.strftime(iso) if b is not None else '..'}"

    if start is None and stop is None:
        return [None]
    if season is None or start is None or stop is None or season[0] > season[1]:
        return [fmt(start, stop)]
    out = []
    for year in range(start.year, stop.year + 1):
        a = pd.Timestamp(year, *season[0], tz="UTC")
        b = pd.Timestamp(year, *season[1], tz="UTC") + pd.Timedelta(days=1, microseconds=-1)
        a, b = max(a, start), min(b, stop)
        if a <= b:
            out.append(fmt(a, b))
    return out


def search_items(
    url: str,
    collection: str,
    *,
    bbox: Sequence[float],
    datetime: str | None,
    timeout: float = 30,
    limit: int = 100,
    max_items: int | None = None,
    query: Mapping[str, Any] | None = None,
) -> list[dict]:
    """Items of ``collection`` over ``bbox`` and ``datetime`` from the STAC API at ``url``.

    Searches with POST and follows the pages; returns plain item dicts (``proj:epsg`` kept as the
    API wrote it). Errors: :class:`CatalogUnreachableError` when the API does not answer within
    ``timeout`` seconds (each request), :class:`CatalogError` for other API failures.

    >>> search_items("https://earth-search.aws.element84.com/v1", "cop-dem-glo-30",
    ...              bbox=(-147.6, 65.1, -147.5, 65.15), datetime=None)  # doctest: +SKIP
    """
    import requests
    from pystac_client import Client
    from pystac_client.conformance import ConformanceClasses
    from pystac_client.exceptions import APIError
    from pystac_client.stac_api_io import StacApiIO
    from urllib3.util.retry import Retry

    def fail(err: Exception) -> MisoError:
        status = getattr(err, "status_code", None)
        if isinstance(err, requests.exceptions.RequestException) or (
            isinstance(err, APIError) and status is None
        ):
            return CatalogUnreachableError(
                f"the STAC API {url} did not answer within timeout={timeout} s "
                f"(or refused the connection): {str(err)[:300]}"
            )
        return CatalogError(
            f"the STAC API {url} failed searching {collection!r} (HTTP {status}): {str(err)[:300]}"
        )

    try:
        # a read timeout is not retried, so an API that stalls fails within `timeout`; refused
        # connections are retried once and busy answers (429, 5xx) a few times with back-off
        retry = Retry(
            total=4,
            connect=1,
            read=0,
            status=3,
            backoff_factor=0.5,
            status_forcelist=(429, 502, 503, 504),
            allowed_methods=None,
        )
        io = StacApiIO(timeout=timeout, max_retries=retry)
        client = Client.open(url, stac_io=io, timeout=timeout)
        kwargs: dict[str, Any] = dict(
            collections=[collection], bbox=list(bbox), limit=limit, max_items=max_items
        )
        if datetime is not None:
            kwargs["datetime"] = datetime
        if query and client.conforms_to(ConformanceClasses.QUERY):
            kwargs["query"] = dict(query)
        search = client.search(method="POST", **kwargs)
        return [_restore_epsg(copy.deepcopy(d)) for d in search.items_as_dicts()]
    except (APIError, requests.exceptions.RequestException) as err:
        raise fail(err) from None


def gather_items(
    modality: str,
    collection: str,
    *,
    given: list[dict] | None,
    alone: bool,
    url: str,
    bbox: tuple[float, float, float, float],
    datetime: str | None,
    window: tuple[pd.Timestamp | None, pd.Timestamp | None],
    season: tuple[str, str] | None,
    season_md: tuple[tuple[int, int], tuple[int, int]] | None,
    max_cloud: float | None,
    timeout: float,
    limit: int,
    max_items: int | None,
) -> list[dict]:
    """The items of one modality: from ``given`` (``items=``) or searched, then filtered.

    ``given`` items count for the modality when their ``collection`` is one it accepts (or has
    none and the modality is ``alone``). Searches run once per season window (a DEM: once over
    all time) and drop duplicate ids. Raises :class:`NoItemsFoundError` naming the request when
    nothing is left.
    """
    mod, coll = modality, collection
    w, s, e, n = bbox
    if given is not None:
        accepted = _ACCEPTED[mod] | {coll}
        found = [
            d
            for d in given
            if d.get("collection") in accepted or d.get("collection") is None and alone
        ]
    else:
        found = []
        seen: set[str] = set()
        for dt in _search_windows(window, season_md):
            query = (
                {"eo:cloud_cover": {"lte": max_cloud}}
                if mod == "optical" and max_cloud is not None
                else None
            )
            for d in search_items(
                url,
                coll,
                bbox=(w, s, e, n),
                datetime=dt if mod != "covariates" else None,
                timeout=timeout,
                limit=limit,
                max_items=max_items,
                query=query,
            ):
                if d.get("id") not in seen:
                    seen.add(d.get("id"))
                    found.append(d)
            if mod == "covariates":
                break  # a DEM has no season: one search over all time
    if mod != "covariates":
        found = _filter_items(
            found,
            window=window,
            season=season_md,
            max_cloud=max_cloud if mod == "optical" else None,
        )
    if not found:
        where = "in the given items" if given is not None else f"at {url}"
        extra = f", season={season!r}" if season is not None and mod != "covariates" else ""
        cloud = f", max_cloud={max_cloud}" if mod == "optical" and max_cloud is not None else ""
        raise NoItemsFoundError(
            f"no {mod} items of collection {coll!r} {where} for bbox={(w, s, e, n)}, "
            f"datetime={datetime!r}{extra}{cloud}"
        )
    return found
