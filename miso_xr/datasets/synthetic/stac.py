"""STAC collections and items for a written scene (Planetary-Computer-like ids and fields)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ...exceptions import InputError
from .common import _FORMAT, _MANIFEST

_S2_BAND_INFO = {  # name: (common_name, description, centre wavelength um, FWHM um, gsd m)
    "B02": ("blue", "Band 2 - Blue", 0.49, 0.098, 10),
    "B03": ("green", "Band 3 - Green", 0.56, 0.045, 10),
    "B04": ("red", "Band 4 - Red", 0.665, 0.038, 10),
    "B05": ("rededge", "Band 5 - Vegetation red edge 1", 0.704, 0.019, 20),
    "B06": ("rededge", "Band 6 - Vegetation red edge 2", 0.74, 0.018, 20),
    "B07": ("rededge", "Band 7 - Vegetation red edge 3", 0.783, 0.028, 20),
    "B08": ("nir", "Band 8 - NIR", 0.842, 0.145, 10),
    "B11": ("swir16", "Band 11 - SWIR (1.6)", 1.61, 0.143, 20),
    "B12": ("swir22", "Band 12 - SWIR (2.2)", 2.19, 0.242, 20),
}

_COG_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
_ITEM_EXTENSIONS = [
    "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
    "https://stac-extensions.github.io/projection/v1.1.0/schema.json",
    "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
    "https://stac-extensions.github.io/sat/v1.0.0/schema.json",
]
_COLLECTIONS = {
    "sentinel-2-l2a": {
        "title": "Sentinel-2 Level-2A (synthetic)",
        "description": "Synthetic Sentinel-2 L2A surface reflectance of the miso_xr Alaska-like "
        "scene, as uint16 DN COGs laid out like the Planetary Computer's sentinel-2-l2a: "
        "reflectance = (DN - offset) / 10000, offset 1000 from processing baseline 04.00 (2022).",
        "license": "proprietary",
        "keywords": ["Sentinel", "Copernicus", "Satellite", "Reflectance", "synthetic"],
        "summaries": {
            "gsd": [10, 20],
            "platform": ["Sentinel-2A", "Sentinel-2B"],
            "instruments": ["msi"],
            "constellation": ["Sentinel 2"],
        },
    },
    "sentinel-1-rtc": {
        "title": "Sentinel 1 Radiometrically Terrain Corrected (RTC) (synthetic)",
        "description": "Synthetic Sentinel-1 RTC gamma0 of the miso_xr Alaska-like scene: VV and "
        "VH linear power as float32 COGs, laid out like the Planetary Computer's sentinel-1-rtc.",
        "license": "CC-BY-4.0",
        "keywords": ["Sentinel", "Copernicus", "SAR", "RTC", "synthetic"],
        "summaries": {
            "platform": ["SENTINEL-1A"],
            "constellation": ["Sentinel-1"],
            "sar:polarizations": [["VV", "VH"]],
            "sar:instrument_mode": ["IW"],
            "sar:frequency_band": ["C"],
            "sar:product_type": ["GRD"],
        },
    },
    "cop-dem-glo-30": {
        "title": "Copernicus DEM GLO-30 (synthetic)",
        "description": "Synthetic elevation of the miso_xr Alaska-like scene (metres, float32 "
        "COG), laid out like the Planetary Computer's cop-dem-glo-30.",
        "license": "proprietary",
        "keywords": ["Copernicus", "DEM", "Elevation", "synthetic"],
        "summaries": {"gsd": [30], "platform": ["tandem-x"]},
    },
}


def _eo_band(name: str) -> dict[str, Any]:
    common, desc, cw, fwhm, _ = _S2_BAND_INFO[name]
    return {
        "name": name,
        "common_name": common,
        "description": desc,
        "center_wavelength": cw,
        "full_width_half_max": fwhm,
    }


def _asset_doc(collection: str, key: str, a: dict[str, Any], href: str) -> dict[str, Any]:
    t = a["proj:transform"]
    shp = a["proj:shape"]
    doc: dict[str, Any] = {"href": href, "type": _COG_TYPE, "roles": ["data"]}
    raster = {"nodata": a["nodata"], "data_type": a["data_type"], "spatial_resolution": a["gsd"]}
    if collection == "sentinel-2-l2a" and key != "SCL":
        doc["title"] = f"{_S2_BAND_INFO[key][1]} - {a['gsd']}m"
        doc["gsd"] = a["gsd"]
        doc["eo:bands"] = [_eo_band(key)]
    elif key == "SCL":
        doc["title"] = "Scene classfication map (SCL)"  # sic: the Planetary Computer's spelling
        doc["gsd"] = a["gsd"]
    elif collection == "sentinel-1-rtc":
        doc["title"] = (
            f"{key.upper()}: {'vertical' if key[0] == 'v' else 'horizontal'} transmit, "
            f"{'vertical' if key[1] == 'v' else 'horizontal'} receive"
        )
        doc["description"] = "Terrain-corrected gamma naught values (linear power)."
    else:
        doc["title"] = "Data"
        raster.update(sampling="point", unit="metre")
    doc["proj:epsg"] = a["proj:epsg"]
    doc["proj:shape"] = shp
    doc["proj:transform"] = t
    doc["proj:bbox"] = [t[2], t[5] + t[4] * shp[0], t[2] + t[0] * shp[1], t[5]]
    doc["raster:bands"] = [raster]
    return doc


def write_stac(directory: str | os.PathLike[str], base_url: str) -> list[Path]:
    """Write STAC collections and items for a scene written by :func:`write_scene`.

    Each collection (``sentinel-2-l2a``, ``sentinel-1-rtc``, ``cop-dem-glo-30``) becomes
    ``directory/stac/<id>.collection.json`` and its items ``directory/stac/<id>.items.ndjson``,
    with asset hrefs ``base_url/assets/...``: serve ``directory`` at ``base_url`` (e.g.
    ``range_server(directory)``) and the files with ``rustac serve`` (``stac_api(paths)``).
    Items carry ``datetime``, lon/lat ``bbox`` and ``geometry``, ``proj:epsg``/``proj:shape``/
    ``proj:transform`` on every asset, ``eo:bands`` and ``raster:bands``, ``eo:cloud_cover`` and
    ``s2:processing_baseline`` as the Planetary Computer's do. Rewriting (another ``base_url``)
    replaces the previous files.

    Returns
    -------
    list of Path
        Collection files first, then item files: the order ``rustac serve`` needs.

    Examples
    --------
    >>> paths = write_stac("scene", "http://127.0.0.1:8000")  # doctest: +SKIP
    >>> [p.name for p in paths][:1]  # doctest: +SKIP
    ['sentinel-2-l2a.collection.json']
    """
    from urllib.parse import urlparse

    root = Path(directory).absolute()
    manifest_path = root / _MANIFEST
    if not manifest_path.is_file():
        raise InputError(
            f"directory={str(directory)!r} holds no {_MANIFEST}; write the scene there first with "
            "write_scene(scene, directory)"
        )
    try:
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("format") != _FORMAT:
            raise ValueError(manifest.get("format"))
        records = manifest["items"]
    except (ValueError, KeyError, TypeError):
        raise InputError(
            f"{manifest_path} is not a manifest written by this version of write_scene; "
            "write the scene again with write_scene(scene, directory)"
        ) from None
    if (
        not isinstance(base_url, str)
        or urlparse(base_url).scheme not in ("http", "https", "file")
        or not urlparse(base_url).netloc
        and urlparse(base_url).scheme != "file"
    ):
        raise InputError(
            f"base_url={base_url!r}: expected the URL the scene folder is served at, "
            "e.g. 'http://127.0.0.1:8000' (range_server(directory).url)"
        )
    base = base_url.rstrip("/")
    bbox = manifest["bbox"]
    w0, s0, e0, n0 = bbox
    geometry = {
        "type": "Polygon",
        "coordinates": [[[w0, s0], [e0, s0], [e0, n0], [w0, n0], [w0, s0]]],
    }

    by_coll: dict[str, list[dict[str, Any]]] = {c: [] for c in _COLLECTIONS}
    for rec in records:
        coll = rec["collection"]
        assets = {
            k: _asset_doc(coll, k, a, f"{base}/{a['path']}") for k, a in rec["assets"].items()
        }
        props = {"datetime": rec["datetime"], **rec["properties"]}
        by_coll[coll].append(
            {
                "type": "Feature",
                "stac_version": "1.0.0",
                "stac_extensions": _ITEM_EXTENSIONS,
                "id": rec["id"],
                "collection": coll,
                "bbox": bbox,
                "geometry": geometry,
                "properties": props,
                "links": [],
                "assets": assets,
            }
        )

    tmp = Path(tempfile.mkdtemp(prefix=".stac.tmp-", dir=root))
    try:
        tmp.chmod(0o755)
        written: list[str] = []
        for coll, items in by_coll.items():
            times = sorted(i["properties"]["datetime"] for i in items)
            meta = _COLLECTIONS[coll]
            doc = {
                "type": "Collection",
                "stac_version": "1.0.0",
                "stac_extensions": [
                    "https://stac-extensions.github.io/item-assets/v1.0.0/schema.json"
                ],
                "id": coll,
                "title": meta["title"],
                "description": meta["description"],
                "license": meta["license"],
                "keywords": meta["keywords"],
                "providers": [{"name": "miso_xr synthetic scene", "roles": ["producer", "host"]}],
                "extent": {
                    "spatial": {"bbox": [bbox]},
                    "temporal": {"interval": [[times[0], times[-1]] if times else [None, None]]},
                },
                "summaries": meta["summaries"],
                "item_assets": {
                    k: {
                        kk: vv
                        for kk, vv in v.items()
                        if kk in ("type", "roles", "title", "gsd", "eo:bands")
                    }
                    for k, v in (items[0]["assets"].items() if items else [])
                },
                "links": [],
            }
            (tmp / f"{coll}.collection.json").write_text(json.dumps(doc, indent=1))
            with open(tmp / f"{coll}.items.ndjson", "w") as f:
                for item in items:
                    f.write(json.dumps(item) + "\n")
            written.append(coll)
        final = root / "stac"
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=".stac.old-", dir=root))
            os.replace(final, old / "stac")
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return [final / f"{c}.collection.json" for c in written] + [
        final / f"{c}.items.ndjson" for c in written
    ]
