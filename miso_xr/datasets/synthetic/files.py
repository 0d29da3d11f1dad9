"""Writing a scene as files: COGs laid out like the real archives, truth, observations, manifest."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ...cube.grid import OPTICAL_BANDS, SAR_BANDS
from ...exceptions import InputError
from .common import _BANDS_20M, _FORMAT, _MANIFEST, TRUTH_NAMES, _bbox_lonlat
from .scene import Scene

_S2_ASSET_ORDER = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B11", "B12")


@dataclass(frozen=True)
class SceneFiles:
    """Where :func:`write_scene` put things (absolute paths).

    Attributes
    ----------
    root
        The scene directory (serve it with ``range_server(root)``).
    manifest
        ``root/scene.json``: grid, items and assets, read by :func:`write_stac`.
    items
        ``{item id: {asset key: path}}`` for every Sentinel-2, Sentinel-1 and DEM item.
    truth
        ``{name: path}`` GeoTIFFs of :data:`TRUTH_NAMES`.
    observations_csv, observations_geojson
        The field observations.
    """

    root: Path
    manifest: Path
    items: dict[str, dict[str, Path]]
    truth: dict[str, Path]
    observations_csv: Path
    observations_geojson: Path


def _write_cog(
    path: Path,
    data: np.ndarray,
    transform,
    crs: str,
    *,
    nodata=None,
    resampling="average",
    descriptions: Sequence[str] | None = None,
) -> None:
    """One Cloud-Optimized GeoTIFF (GDAL's COG driver: tiled, overviews, deflate)."""
    import rasterio

    arr = data if data.ndim == 3 else data[None]
    predictor = "3" if arr.dtype.kind == "f" else "2"
    profile = {
        "driver": "COG",
        "width": arr.shape[2],
        "height": arr.shape[1],
        "count": arr.shape[0],
        "dtype": arr.dtype.name,
        "crs": crs,
        "transform": transform,
        "nodata": nodata,
        "compress": "DEFLATE",
        "predictor": predictor,
        # tiles large enough for HTTP reads, small enough that small scenes still get overviews
        "blocksize": 512
        if min(arr.shape[1:]) >= 2048
        else 256
        if min(arr.shape[1:]) >= 512
        else 128,
        "overview_resampling": resampling,
        "bigtiff": "IF_SAFER",
    }
    with rasterio.Env(GDAL_NUM_THREADS="ALL_CPUS"):
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(arr)
            if descriptions:
                for i, d in enumerate(descriptions, start=1):
                    dst.set_band_description(i, d)


def _baseline(when: datetime) -> tuple[str, int]:
    """Sentinel-2 processing baseline and DN offset: from 2022 (baseline 04.00+) DN carry +1000."""
    return ("05.00", 1000) if when.year >= 2022 else ("02.14", 0)


def _s2_item_id(when: datetime, i: int) -> str:
    sat = "S2A" if i % 2 == 0 else "S2B"
    produced = (when + timedelta(days=2)).strftime("%Y%m%dT%H%M%S")
    return f"{sat}_MSIL2A_{when:%Y%m%dT%H%M%S}_R029_T06WVS_{produced}"


def write_scene(scene: Scene, directory: str | os.PathLike[str]) -> SceneFiles:
    """Write the scene as COGs laid out like the real archives, plus truth and observations.

    Layout under ``directory``::

        assets/sentinel-2-l2a/<item id>/B02.tif ... B12.tif, SCL.tif   uint16 DN / uint8
        assets/sentinel-1-rtc/<item id>/vv.tif, vh.tif                 float32 linear gamma0
        assets/cop-dem-glo-30/<item id>/data.tif                       float32 metres
        truth/<name>.tif                                               TRUTH_NAMES
        observations.csv, observations.geojson, scene.json

    Sentinel-2 DN are ``round(reflectance * 10000) + offset`` with ``offset = 1000`` for dates from
    2022 (processing baseline ``05.00``) and ``0`` before (``02.14``), like the real archive; DN 0 is
    nodata. B05-B07, B11, B12 and SCL are written at 20 m, the rest at 10 m. Everything is written
    to a temporary folder first and moved into place, so a failure leaves nothing behind; a
    directory that already holds a scene (``scene.json``) is replaced, any other non-empty one is
    refused.

    Examples
    --------
    >>> files = write_scene(make_scene(size=64), "scene")  # doctest: +SKIP
    >>> sorted(files.truth)  # doctest: +SKIP
    ['elevation', 'permafrost', 'rivers', 'roads', 'soil_order', 'vegetation', 'wetness']
    """
    from affine import Affine

    if not isinstance(scene, Scene):
        raise InputError(f"scene: expected a Scene from make_scene(), got {type(scene).__name__}")
    root = Path(directory).absolute()
    if root.exists() and not root.is_dir():
        raise InputError(f"directory={str(directory)!r} is a file; give a folder for the scene")
    if root.is_dir() and any(root.iterdir()) and not (root / _MANIFEST).is_file():
        raise InputError(
            f"directory={str(directory)!r} is not empty and holds no scene ({_MANIFEST}); "
            "give a new or empty folder so nothing of yours is overwritten"
        )
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; the scene is meant to be served
        items, truth, manifest = _write_scene_files(scene, tmp, Affine)
        (tmp / _MANIFEST).write_text(json.dumps(manifest, indent=1))
        if root.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{root.name}.old-", dir=root.parent))
            os.replace(root, old / "scene")
            os.replace(tmp, root)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

    def rebase(p: Path) -> Path:
        return root / p.relative_to(tmp)

    return SceneFiles(
        root=root,
        manifest=root / _MANIFEST,
        items={k: {a: rebase(p) for a, p in v.items()} for k, v in items.items()},
        truth={k: rebase(p) for k, p in truth.items()},
        observations_csv=root / "observations.csv",
        observations_geojson=root / "observations.geojson",
    )


def _write_scene_files(scene: Scene, out: Path, Affine) -> tuple[dict, dict, dict]:  # noqa: N803
    g = scene.grid
    h, w = g.shape
    t10 = g.transform
    t20 = Affine(2 * g.resolution, 0.0, g.left, 0.0, -2 * g.resolution, g.top)
    shape20 = ((h + 1) // 2, (w + 1) // 2)
    bbox = list(_bbox_lonlat(g))
    epsg = int(g.crs.split(":")[1])
    items: dict[str, dict[str, Path]] = {}
    records: list[dict[str, Any]] = []

    def asset(path: Path, transform, shp, gsd, dtype, nodata, **more) -> dict[str, Any]:
        return {
            "path": path.relative_to(out).as_posix(),
            "proj:shape": [int(shp[0]), int(shp[1])],
            "proj:transform": [
                transform.a,
                transform.b,
                transform.c,
                transform.d,
                transform.e,
                transform.f,
            ],
            "proj:epsg": epsg,
            "gsd": gsd,
            "data_type": dtype,
            "nodata": nodata,
            **more,
        }

    for i, (when, refl, scl) in enumerate(scene.optical):
        baseline, offset = _baseline(when)
        iid = _s2_item_id(when, i)
        folder = out / "assets" / "sentinel-2-l2a" / iid
        folder.mkdir(parents=True)
        paths, assets = {}, {}
        for band in _S2_ASSET_ORDER:
            b = OPTICAL_BANDS.index(band)
            if band in _BANDS_20M:
                src, transform, shp, gsd = refl[b, ::2, ::2], t20, shape20, 20
            else:
                src, transform, shp, gsd = refl[b], t10, (h, w), 10
            dn = np.rint(src * np.float32(10000)).astype("int32") + offset
            dn = np.clip(dn, 1, 65535).astype("uint16")  # 0 is nodata
            p = folder / f"{band}.tif"
            _write_cog(p, dn, transform, g.crs, nodata=0, descriptions=[band])
            paths[band], assets[band] = p, asset(p, transform, shp, gsd, "uint16", 0)
        p = folder / "SCL.tif"
        _write_cog(
            p, scl[::2, ::2], t20, g.crs, nodata=0, resampling="nearest", descriptions=["SCL"]
        )
        paths["SCL"], assets["SCL"] = p, asset(p, t20, shape20, 20, "uint8", 0)
        items[iid] = paths
        scl20 = scl[::2, ::2]
        pct = {
            k: float(np.isin(scl20, v).mean() * 100)
            for k, v in {
                "cloud": (8, 9, 10),
                "shadow": (3,),
                "high": (9,),
                "medium": (8,),
                "veg": (4,),
                "notveg": (5,),
                "water": (6,),
            }.items()
        }
        records.append(
            {
                "collection": "sentinel-2-l2a",
                "id": iid,
                "datetime": when.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "bbox": bbox,
                "properties": {
                    "platform": "Sentinel-2A" if iid.startswith("S2A") else "Sentinel-2B",
                    "constellation": "Sentinel 2",
                    "instruments": ["msi"],
                    "proj:epsg": epsg,
                    "eo:cloud_cover": round(pct["cloud"], 6),
                    "s2:processing_baseline": baseline,
                    "s2:mgrs_tile": "06WVS",
                    "s2:product_type": "S2MSI2A",
                    "s2:high_proba_clouds_percentage": round(pct["high"], 6),
                    "s2:medium_proba_clouds_percentage": round(pct["medium"], 6),
                    "s2:cloud_shadow_percentage": round(pct["shadow"], 6),
                    "s2:vegetation_percentage": round(pct["veg"], 6),
                    "s2:not_vegetated_percentage": round(pct["notveg"], 6),
                    "s2:water_percentage": round(pct["water"], 6),
                    "sat:orbit_state": "descending",
                    "sat:relative_orbit": 29,
                },
                "assets": assets,
            }
        )

    # Sentinel-1 RTC: float32 linear gamma0, nodata -32768 like the Planetary Computer's
    when = scene.sar_datetime
    iid = f"S1A_IW_GRDH_1SDV_{when:%Y%m%dT%H%M%S}_{when + timedelta(seconds=25):%Y%m%dT%H%M%S}_039210_04A0F3_rtc"
    folder = out / "assets" / "sentinel-1-rtc" / iid
    folder.mkdir(parents=True)
    paths, assets = {}, {}
    for k, pol in enumerate(SAR_BANDS):
        p = folder / f"{pol}.tif"
        _write_cog(p, scene.sar[k], t10, g.crs, nodata=-32768.0, descriptions=[pol])
        paths[pol], assets[pol] = p, asset(p, t10, (h, w), 10, "float32", -32768)
    items[iid] = paths
    records.append(
        {
            "collection": "sentinel-1-rtc",
            "id": iid,
            "datetime": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "bbox": bbox,
            "properties": {
                "platform": "SENTINEL-1A",
                "constellation": "Sentinel-1",
                "proj:epsg": epsg,
                "sar:instrument_mode": "IW",
                "sar:frequency_band": "C",
                "sar:center_frequency": 5.405,
                "sar:polarizations": ["VV", "VH"],
                "sar:product_type": "GRD",
                "sar:observation_direction": "right",
                "sat:orbit_state": "ascending",
                "sat:relative_orbit": 94,
                "s1:processing_level": "1",
            },
            "assets": assets,
        }
    )

    # Copernicus DEM GLO-30 (here on the scene's grid)
    iid = "Copernicus_DSM_COG_10_N65_00_W148_00_DEM"
    folder = out / "assets" / "cop-dem-glo-30" / iid
    folder.mkdir(parents=True)
    p = folder / "data.tif"
    _write_cog(p, scene.dem, t10, g.crs, nodata=-32767.0, descriptions=["elevation"])
    items[iid] = {"data": p}
    records.append(
        {
            "collection": "cop-dem-glo-30",
            "id": iid,
            "datetime": "2021-04-22T00:00:00Z",
            "bbox": bbox,
            "properties": {"platform": "tandem-x", "gsd": 30, "proj:epsg": epsg},
            "assets": {"data": asset(p, t10, (h, w), 30, "float32", -32767)},
        }
    )

    # the hidden truth, for scoring
    truth: dict[str, Path] = {}
    (out / "truth").mkdir()
    for name in TRUTH_NAMES:
        arr = {
            "permafrost": scene.permafrost,
            "soil_order": scene.soil_order,
            "vegetation": scene.vegetation,
            "wetness": scene.wetness,
            "elevation": scene.dem,
            "rivers": scene.rivers,
            "roads": scene.roads,
        }[name]
        if arr.dtype == bool:
            arr = arr.astype("uint8")
        p = out / "truth" / f"{name}.tif"
        categorical = arr.dtype.kind in "iu"
        _write_cog(
            p,
            arr,
            t10,
            g.crs,
            nodata=None,
            resampling="nearest" if categorical else "average",
            descriptions=[name],
        )
        truth[name] = p

    obs = scene.observations
    obs.to_csv(out / "observations.csv", index=False)
    (out / "observations.geojson").write_text(json.dumps(_geojson(obs)))

    manifest = {
        "format": _FORMAT,
        "seed": scene.seed,
        "center": list(scene.center),
        "grid": {
            "crs": g.crs,
            "left": g.left,
            "top": g.top,
            "resolution": g.resolution,
            "width": g.width,
            "height": g.height,
        },
        "bbox": bbox,
        "items": records,
    }
    return items, truth, manifest


def _geojson(obs: pd.DataFrame) -> dict[str, Any]:
    feats = []
    for row in obs.itertuples(index=False):
        pf = None if pd.isna(row.permafrost) else int(row.permafrost)
        so = None if row.soil_order is None or pd.isna(row.soil_order) else str(row.soil_order)
        feats.append(
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [float(row.lon), float(row.lat)]},
                "properties": {
                    "x": float(row.x),
                    "y": float(row.y),
                    "permafrost": pf,
                    "soil_order": so,
                },
            }
        )
    return {"type": "FeatureCollection", "features": feats}
