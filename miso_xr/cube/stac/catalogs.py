"""What each catalog calls things: API URLs, collections per modality, asset keys, value scales.

A new catalog or modality (climate layers) starts here: its collection, the asset keys of its
bands, and how its stored values turn into physical ones.
"""

from __future__ import annotations

from collections.abc import Sequence

from ...exceptions import InputError, MissingBandError

CATALOGS: dict[str, str] = {
    "planetary-computer": "https://planetarycomputer.microsoft.com/api/stac/v1",
    "earth-search": "https://earth-search.aws.element84.com/v1",
}
MODALITIES = ("optical", "sar", "covariates", "climate")
#: default collections searched per modality (``covariates`` is the DEM, see ``dem=``)
COLLECTIONS: dict[str, str] = {
    "optical": "sentinel-2-l2a",
    "sar": "sentinel-1-rtc",
    "covariates": "cop-dem-glo-30",
    # monthly prcp/tmax/tmin, 1 km over North America (Alaska included); a collection-level
    # Zarr store, no items (see .climate); "terraclimate" is the global alternative
    "climate": "daymet-monthly-na",
}
#: collections whose items are accepted for a modality when ``items=`` is given
_ACCEPTED = {
    "optical": {"sentinel-2-l2a", "sentinel-2-c1-l2a"},
    "sar": {"sentinel-1-rtc"},
    "covariates": {"cop-dem-glo-30", "cop-dem-glo-90", "3dep-seamless", "nasadem", "alos-dem"},
    "climate": set(),  # a collection's Zarr store, never items
}
#: canonical band -> asset keys used by the catalogs (Planetary Computer first, Earth Search next)
ASSET_KEYS: dict[str, tuple[str, ...]] = {
    "B04": ("B04", "red"),
    "B03": ("B03", "green"),
    "B02": ("B02", "blue"),
    "B05": ("B05", "rededge1"),
    "B06": ("B06", "rededge2"),
    "B07": ("B07", "rededge3"),
    "B08": ("B08", "nir"),
    "B11": ("B11", "swir16"),
    "B12": ("B12", "swir22"),
    "SCL": ("SCL", "scl"),
    "vv": ("vv", "VV"),
    "vh": ("vh", "VH"),
    "elevation": ("data", "elevation", "dem", "DEM"),
}
#: SCL classes dropped before the composite: 0 no data, 1 saturated/defective, 3 cloud shadow,
#: 8/9 cloud medium/high probability, 10 thin cirrus, 11 snow/ice (the season is summer: snow
#: there is late snow or misclassified cloud). Kept: 2 dark area, 4 vegetation, 5 not vegetated,
#: 6 water, 7 unclassified (much Arctic tundra falls in 2 and 7).
SCL_MASKED: tuple[int, ...] = (0, 1, 3, 8, 9, 10, 11)


def _catalog_url(catalog: str) -> str:
    if not isinstance(catalog, str):
        raise InputError(f"catalog={catalog!r}: expected a name {sorted(CATALOGS)} or a URL")
    if catalog in CATALOGS:
        return CATALOGS[catalog]
    if catalog.startswith(("http://", "https://")):
        return catalog.rstrip("/")
    raise InputError(
        f"catalog={catalog!r} is not known; use one of {sorted(CATALOGS)} or a STAC API URL "
        "(https://...)"
    )


def _canonical_assets(items: list[dict], bands: Sequence[str], modality: str) -> list[dict]:
    """Copy each item's asset for a canonical band under that band's name; check all bands exist."""
    found = sorted({k for d in items for k in d.get("assets", {})})
    for band in bands:
        keys = ASSET_KEYS.get(band, (band,))
        if not any(k in d.get("assets", {}) for d in items for k in keys):
            raise MissingBandError(
                f"band {band!r} of modality {modality!r} is in none of the {len(items)} items "
                f"(looked for asset keys {list(keys)}); the items have assets {found}"
            )
    out = []
    for d in items:
        assets = d.get("assets", {})
        new = {}
        for band in bands:
            for k in ASSET_KEYS.get(band, (band,)):
                if k in assets:
                    new[band] = dict(assets[k])
                    break
        out.append({**d, "assets": new})
    return out


def _check_projection(items: list[dict], bands: Sequence[str], modality: str) -> None:
    bad = []
    for d in items:
        props = d.get("properties", {})
        for band, asset in d["assets"].items():
            if asset.get("proj:epsg", props.get("proj:epsg")) is None:
                bad.append(f"{d.get('id')}:{band}")
    if bad:
        raise InputError(
            f"{len(bad)} {modality} asset(s) have no projection metadata (proj:epsg or an "
            f"'EPSG:' proj:code on the item or asset), e.g. {bad[:3]}; stackstac needs it to "
            "place them. Give items with the projection extension (search the API again)"
        )


def _scale_offset(d: dict, band: str, modality: str) -> tuple[float, float, float | None]:
    """(scale, offset, nodata) to turn an asset's stored values into physical ones."""
    asset = d["assets"].get(band, {})
    rb = asset.get("raster:bands") or [{}]
    rb = rb[0] if isinstance(rb, list) and rb else {}
    nodata = rb.get("nodata")
    if "scale" in rb or "offset" in rb:
        scale, offset = float(rb.get("scale", 1.0)), float(rb.get("offset", 0.0))
    elif modality == "optical" and band != "SCL":
        baseline = str(d.get("properties", {}).get("s2:processing_baseline", "0"))
        try:
            new = float(baseline) >= 4.0
        except ValueError:
            new = False
        # baseline 04.00 (Jan 2022) added 1000 to every DN: BOA_ADD_OFFSET = -1000
        scale, offset = 1e-4, (-0.1 if new else 0.0)
    else:
        scale, offset = 1.0, 0.0
    if nodata is None and modality == "optical":
        nodata = 0.0  # Sentinel-2 L2A DN 0 is "no data"
    return scale, offset, (None if nodata is None else float(nodata))
