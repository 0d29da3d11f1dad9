"""What open_stac costs over reading the same COGs with rasterio, all from loopback servers.

A scene of ``--size`` x ``--size`` pixels at 10 m (EPSG:3338) is written once into a cache folder
as COGs (512-px tiles, deflate): ``--scenes`` Sentinel-2 L2A scenes (uint16 DN; B05-B07, B11, B12
and SCL at 20 m), two Sentinel-1 RTC scenes (float32 vv, vh) and one DEM (float32). The COGs are
served by the range server and their STAC items by ``rustac serve``; then, in one process:

- ``open_stac``: search (POST, paged) + stackstac graph + compute of the cube with all modalities
  (SCL mask, median composites, terrain derivatives), dask threads;
- ``rasterio http``: every asset read whole with rasterio through ``/vsicurl/`` (same server);
- ``rasterio disk``: every asset read whole from the local files.

Prints a table and writes ``benchmarks/results/bench_cube.json``.

Run: ``.venv/bin/python benchmarks/bench_cube.py [--size 1024] [--scenes 3] [--chunks 1024]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT))

from miso_xr.cube.grid import OPTICAL_BANDS as OPTICAL  # noqa: E402

TWENTY_M = {"B05", "B06", "B07", "B11", "B12", "SCL"}
LEFT, TOP, RES = 300000.0, 1700000.0, 10.0  # EPSG:3338, near Fairbanks


def _write_cog(path: Path, data: np.ndarray, res: float, nodata=None) -> None:
    import rasterio
    from affine import Affine

    tmp = path.with_suffix(".tmp.tif")
    profile = dict(
        driver="COG",
        width=data.shape[1],
        height=data.shape[0],
        count=1,
        dtype=data.dtype,
        crs="EPSG:3338",
        transform=Affine(res, 0, LEFT, 0, -res, TOP),
        blocksize=512,
        compress="DEFLATE",
        overview_resampling="nearest",
    )
    if nodata is not None:
        profile["nodata"] = nodata
    with rasterio.open(tmp, "w", **profile) as dst:
        dst.write(data, 1)
    tmp.rename(path)  # complete files only: an interrupted run regenerates


def make_cogs(cache: Path, size: int, scenes: int) -> dict[str, Any]:
    """Write the scene's COGs once (skips files already there); returns item descriptions."""
    cache.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size].astype("float32")
    items: dict[str, Any] = {"sentinel-2-l2a": [], "sentinel-1-rtc": [], "cop-dem-glo-30": []}
    for k in range(scenes):
        sid = f"S2_BENCH_{k}"
        assets = {}
        for b, band in enumerate((*OPTICAL, "SCL")):
            f = 2 if band in TWENTY_M else 1
            path = cache / f"{sid}_{band}.tif"
            if not path.exists():
                n = size // f
                if band == "SCL":
                    data = rng.choice(np.array([4, 4, 4, 5, 6, 8, 9, 3], "uint8"), (n, n))
                else:
                    base = 1000 + 300 * b + 100 * k
                    field = base + (xx[:n, :n] + yy[:n, :n]) % 2000
                    data = (field + rng.integers(0, 50, (n, n))).astype("uint16")
                _write_cog(path, data, RES * f, nodata=0)
            assets[band] = (path.name, size // f, RES * f)
        items["sentinel-2-l2a"].append((sid, f"2022-07-{10 + k:02d}", assets))
    for k in range(2):
        sid = f"S1_BENCH_{k}"
        assets = {}
        for band in ("vv", "vh"):
            path = cache / f"{sid}_{band}.tif"
            if not path.exists():
                data = (0.05 + 0.1 * rng.random((size, size))).astype("float32")
                _write_cog(path, data, RES)
            assets[band] = (path.name, size, RES)
        items["sentinel-1-rtc"].append((sid, f"2022-07-{12 + k:02d}", assets))
    path = cache / "DEM_BENCH.tif"
    if not path.exists():
        dem = 300 + 0.05 * xx + 40 * np.sin(xx / 150.0) * np.cos(yy / 210.0)
        _write_cog(path, dem.astype("float32"), RES)
    items["cop-dem-glo-30"].append(("DEM_BENCH", "2021-04-22", {"data": (path.name, size, RES)}))
    return items


def write_stac(folder: Path, items: dict[str, Any], base_url: str) -> list[Path]:
    from pyproj import Transformer

    tr = Transformer.from_crs("EPSG:3338", "EPSG:4326", always_xy=True)
    paths = []
    lines = []
    for cid, entries in items.items():
        coll = {
            "type": "Collection",
            "stac_version": "1.0.0",
            "id": cid,
            "description": cid,
            "license": "proprietary",
            "links": [],
            "extent": {
                "spatial": {"bbox": [[-180, -90, 180, 90]]},
                "temporal": {"interval": [[None, None]]},
            },
        }
        p = folder / f"{cid}.json"
        p.write_text(json.dumps(coll))
        paths.append(p)
        for sid, date, assets in entries:
            name, n, res = next(iter(assets.values()))
            w, s, e, nn = tr.transform_bounds(LEFT, TOP - n * res, LEFT + n * res, TOP)
            ring = [[w, s], [e, s], [e, nn], [w, nn], [w, s]]
            lines.append(
                json.dumps(
                    {
                        "type": "Feature",
                        "stac_version": "1.0.0",
                        "id": sid,
                        "collection": cid,
                        "geometry": {"type": "Polygon", "coordinates": [ring]},
                        "bbox": [w, s, e, nn],
                        "properties": {
                            "datetime": f"{date}T21:00:00Z",
                            "proj:epsg": 3338,
                            "eo:cloud_cover": 10.0,
                            "s2:processing_baseline": "04.00",
                        },
                        "assets": {
                            k: {
                                "href": f"{base_url}/{fn}",
                                "type": "image/tiff; application=geotiff",
                                "proj:shape": [m, m],
                                "proj:transform": [r, 0, LEFT, 0, -r, TOP],
                            }
                            for k, (fn, m, r) in assets.items()
                        },
                        "links": [],
                    }
                )
            )
    p = folder / "items.ndjson"
    p.write_text("\n".join(lines) + "\n")
    return [*paths, p]


def read_all(urls: list[str]) -> int:
    import rasterio

    total = 0
    for u in urls:
        with rasterio.open(u) as src:
            total += src.read(1).nbytes
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=4096, help="scene side in pixels (10 m)")
    ap.add_argument("--scenes", type=int, default=3, help="Sentinel-2 scenes")
    ap.add_argument("--chunks", type=int, default=1024, help="dask chunk side in pixels")
    ap.add_argument("--cache", type=Path, default=None, help="COG cache folder (default: tmp)")
    args = ap.parse_args()

    import dask
    from pyproj import Transformer

    from miso_xr.cube.stac import gdal_env, open_stac
    from tests.servers import range_server, stac_api

    cache = (
        args.cache or Path(tempfile.gettempdir()) / f"miso_xr_bench_cube_{args.size}_{args.scenes}"
    )
    t0 = time.perf_counter()
    items = make_cogs(cache, args.size, args.scenes)
    t_write = time.perf_counter() - t0
    files = sorted(p.name for p in cache.glob("*.tif") if not p.name.endswith(".tmp.tif"))
    stac_dir = cache / "stac"
    stac_dir.mkdir(exist_ok=True)

    # the cube: a lon/lat bbox whose projected bounds fall inside the scene (the Albers grid is
    # rotated against lon/lat here, so the box is shrunk until its projection fits)
    full = args.size * RES
    to_ll = Transformer.from_crs("EPSG:3338", "EPSG:4326", always_xy=True)
    to_xy = Transformer.from_crs("EPSG:4326", "EPSG:3338", always_xy=True)
    inset = 0.0
    while True:
        bbox = to_ll.transform_bounds(
            LEFT + inset, TOP - full + inset, LEFT + full - inset, TOP - inset
        )
        x0, y0, x1, y1 = to_xy.transform_bounds(*bbox, densify_pts=21)
        if x0 >= LEFT and y0 >= TOP - full and x1 <= LEFT + full and y1 <= TOP:
            break
        inset += full * 0.005
    out: dict[str, Any] = {}
    with range_server(cache) as http:
        with (
            stac_api(write_stac(stac_dir, items, http.url)) as api,
            dask.config.set(scheduler="threads"),
        ):
            t0 = time.perf_counter()
            cube = open_stac(
                bbox=bbox,
                datetime="2022-06-01/2022-08-31",
                catalog=api.url,
                modalities=("optical", "sar", "covariates"),
                chunks=args.chunks,
                limit=2,
                max_cloud=None,
            )
            t_graph = time.perf_counter() - t0
            t0 = time.perf_counter()
            values = cube.compute()
            t_compute = time.perf_counter() - t0
            valid = {v: float(np.isfinite(values[v].values).mean()) for v in values.data_vars}
            nbytes = int(sum(values[v].nbytes for v in values.data_vars))
            del values
            env = gdal_env()
            t0 = time.perf_counter()
            with env.open:  # the same GDAL HTTP settings open_stac reads with
                raw_http = read_all([f"/vsicurl/{http.url}/{f}" for f in files])
            t_http = time.perf_counter() - t0
        t0 = time.perf_counter()
        raw_disk = read_all([str(cache / f) for f in files])
        t_disk = time.perf_counter() - t0
    assert raw_http == raw_disk
    total = t_graph + t_compute
    out = {
        "size": args.size,
        "scenes": args.scenes,
        "chunks": args.chunks,
        "cube_shape": dict(cube.sizes),
        "cube_bytes": nbytes,
        "cog_files": len(files),
        "cog_bytes_decoded": raw_disk,
        "valid_fraction": valid,
        "seconds": {
            "write_cogs": round(t_write, 3),
            "open_stac_graph": round(t_graph, 3),
            "open_stac_compute": round(t_compute, 3),
            "open_stac_total": round(total, 3),
            "rasterio_http": round(t_http, 3),
            "rasterio_disk": round(t_disk, 3),
        },
        "ratio_open_stac_over_rasterio_http": round(total / t_http, 2),
        "ratio_open_stac_over_rasterio_disk": round(total / t_disk, 2),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "dask_threads": dask.system.CPU_COUNT,
        },
    }
    print(f"cube {dict(cube.sizes)} from {len(files)} COGs ({raw_disk / 2**20:.0f} MiB decoded)")
    print(f"{'step':<28}{'seconds':>10}")
    for k, v in out["seconds"].items():
        print(f"{k:<28}{v:>10.2f}")
    print(f"{'open_stac / rasterio http':<28}{out['ratio_open_stac_over_rasterio_http']:>10.2f}")
    print(f"{'open_stac / rasterio disk':<28}{out['ratio_open_stac_over_rasterio_disk']:>10.2f}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "bench_cube.json" if args.size == 4096 else f"bench_cube_{args.size}.json"
    (RESULTS / name).write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
