"""What the climate modality costs: opening a Zarr climate store, aggregating, bilinear at 10 m.

A Daymet-like store (Zarr format 2, consolidated, 1 km Lambert conformal conic, monthly
``prcp``/``tmax``/``tmin`` of ``--years`` years, 16 x 16-cell chunks of 12 months) is written
once under a temporary folder, served by the range server and described by a collection that
``rustac serve`` serves. Then, in one process:

- ``open``: ``open_stac(modalities=("climate",))``: collection document, store metadata and
  coordinates (no data), the graph;
- ``compute``: the cube of ``--size`` x ``--size`` pixels at 10 m, for each of ``--chunks``
  (dask threads), and whether all chunkings give identical values;
- ``bilinear``: :func:`~miso_xr.cube.stac.climate.project_pixels` +
  :func:`~miso_xr.cube.stac.climate.bilinear_block` alone on one 1024 x 1024 block, in
  megapixels per second (one thread).

Prints a table and writes ``benchmarks/results/bench_climate.json``.

Run: ``.venv/bin/python benchmarks/bench_climate.py [--size 2048] [--years 30] [--chunks 512 1024]``.
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

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT))

BBOX_CENTRE = (-147.6, 65.1)  # near Fairbanks
LCC_CF = {
    "grid_mapping_name": "lambert_conformal_conic",
    "standard_parallel": [25.0, 60.0],
    "latitude_of_projection_origin": 42.5,
    "longitude_of_central_meridian": -100.0,
    "false_easting": 0.0,
    "false_northing": 0.0,
    "semi_major_axis": 6378137.0,
    "inverse_flattening": 298.257223563,
}


def _bbox(size_px: int) -> tuple[float, float, float, float]:
    from pyproj import Transformer

    tr = Transformer.from_crs("EPSG:4326", "EPSG:3338", always_xy=True)
    cx, cy = tr.transform(*BBOX_CENTRE)
    half = size_px * 10.0 / 2
    back = Transformer.from_crs("EPSG:3338", "EPSG:4326", always_xy=True)
    return tuple(back.transform_bounds(cx - half, cy - half, cx + half, cy + half))


def _write_store(path: Path, bbox, years: int) -> None:
    import pandas as pd
    import xarray as xr
    from pyproj import CRS, Transformer

    lcc = CRS.from_cf(LCC_CF)
    x0, y0, x1, y1 = Transformer.from_crs("EPSG:4326", lcc, always_xy=True).transform_bounds(
        *bbox, densify_pts=21
    )
    x = np.arange(np.floor(x0 / 1000) * 1000 - 5750, x1 + 6000, 1000.0)
    y = np.arange(np.ceil(y1 / 1000) * 1000 + 6000, y0 - 6000, -1000.0)
    time_ = pd.date_range(f"{2021 - years}-01-01", periods=12 * years, freq="MS")
    rng = np.random.default_rng(0)
    shape = (time_.size, y.size, x.size)
    month = (time_.month.to_numpy() - 1)[:, None, None]
    tmean = 15 * np.sin((month - 3) / 12 * 2 * np.pi) - 5 + rng.normal(0, 1, shape)
    ds = xr.Dataset(
        {
            "prcp": (("time", "y", "x"), rng.gamma(2.0, 15.0, shape).astype("float32")),
            "tmax": (("time", "y", "x"), (tmean + 5).astype("float32")),
            "tmin": (("time", "y", "x"), (tmean - 5).astype("float32")),
        },
        coords={"time": time_, "y": y, "x": x},
    )
    for v, u in (("prcp", "mm"), ("tmax", "degrees C"), ("tmin", "degrees C")):
        ds[v].attrs.update(units=u, grid_mapping="lambert_conformal_conic")
    ds["lambert_conformal_conic"] = xr.DataArray(np.int16(0), attrs=LCC_CF)
    enc = {v: {"chunks": (12, 16, 16)} for v in ("prcp", "tmax", "tmin")}
    ds.to_zarr(path, zarr_format=2, consolidated=True, mode="w", encoding=enc)


def _collection(href: str) -> dict:
    from pyproj import CRS

    ref = CRS.from_cf(LCC_CF).to_json_dict()
    return {
        "type": "Collection",
        "stac_version": "1.0.0",
        "id": "daymet-monthly-na",
        "description": "benchmark store",
        "license": "proprietary",
        "extent": {
            "spatial": {"bbox": [[-180.0, -90.0, 180.0, 90.0]]},
            "temporal": {"interval": [[None, None]]},
        },
        "links": [],
        "cube:dimensions": {
            "x": {"axis": "x", "type": "spatial", "reference_system": ref},
            "y": {"axis": "y", "type": "spatial", "reference_system": ref},
        },
        "assets": {
            "zarr-https": {
                "href": href,
                "type": "application/vnd+zarr",
                "roles": ["data", "zarr", "https"],
                "xarray:open_kwargs": {"consolidated": True},
            }
        },
    }


def _bilinear_rate(repeats: int = 3) -> float:
    from pyproj import CRS

    from miso_xr.cube.stac.climate import bilinear_block, project_pixels

    x = 300_000 + 10.0 * np.arange(1024) + 5
    y = 1_700_000 - 10.0 * np.arange(1024) - 5
    lcc = CRS.from_cf(LCC_CF).to_wkt()
    px, py = project_pixels(
        x, y, origin=(300_000.0, 1_700_000.0, 10.0), src_crs=lcc, dst_crs="EPSG:3338"
    )
    # 1 km store cells around the block, with a sea corner (the NaN-aware path, as on a coast)
    sx = np.floor(px.min() / 1000) * 1000 - 2500 + 1000.0 * np.arange(20)
    sy = np.ceil(py.max() / 1000) * 1000 + 2500 - 1000.0 * np.arange(20)
    field = np.random.default_rng(1).normal(size=(3, 20, 20))
    field[:, 15:, 15:] = np.nan
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        px, py = project_pixels(
            x, y, origin=(300_000.0, 1_700_000.0, 10.0), src_crs=lcc, dst_crs="EPSG:3338"
        )
        bilinear_block(field, src_x=sx, src_y=sy, sx=px, sy=py)
        best = min(best, time.perf_counter() - t0)
    return 1024 * 1024 / best / 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=2048, help="cube side in 10 m pixels")
    ap.add_argument("--years", type=int, default=30, help="years in the store (and averaged)")
    ap.add_argument("--chunks", type=int, nargs="+", default=[512, 1024])
    args = ap.parse_args()

    import dask

    from miso_xr.cube.stac import open_stac
    from miso_xr.datasets.serving import range_server, stac_api

    bbox = _bbox(args.size)
    first, last = 2021 - args.years, 2020
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "www").mkdir()
        t0 = time.perf_counter()
        _write_store(tmp / "www" / "na.zarr", bbox, args.years)
        write_s = time.perf_counter() - t0
        with range_server(tmp / "www", log=tmp / "requests.log") as http:
            (tmp / "coll.json").write_text(json.dumps(_collection(f"{http.url}/na.zarr")))
            with stac_api([tmp / "coll.json"]) as api:
                ref = None
                for chunks in args.chunks:
                    t0 = time.perf_counter()
                    cube = open_stac(
                        bbox=bbox,
                        catalog=api.url,
                        modalities=("climate",),
                        resolution=10,
                        chunks=chunks,
                        climate_years=(first, last),
                    )
                    open_s = time.perf_counter() - t0
                    n_open = len((tmp / "requests.log").read_text().splitlines())
                    t0 = time.perf_counter()
                    with dask.config.set(scheduler="threads"):
                        values = cube["climate"].values
                    compute_s = time.perf_counter() - t0
                    same = (
                        True if ref is None else bool(np.array_equal(values, ref, equal_nan=True))
                    )
                    ref = values if ref is None else ref
                    (tmp / "requests.log").unlink()
                    rows.append(
                        {
                            "chunks": chunks,
                            "shape": list(values.shape),
                            "open_s": round(open_s, 3),
                            "requests_at_open": n_open,
                            "compute_s": round(compute_s, 3),
                            "mpx_per_s": round(
                                values.shape[1] * values.shape[2] / compute_s / 1e6, 3
                            ),
                            "identical_to_first": same,
                        }
                    )
    rate = _bilinear_rate()
    print(
        f"store: {args.years} years monthly, written in {write_s:.2f} s; cube {args.size}^2 at 10 m"
    )
    print(
        f"{'chunks':>7} {'open s':>7} {'req@open':>8} {'compute s':>9} {'Mpx/s':>6} {'identical':>9}"
    )
    for r in rows:
        print(
            f"{r['chunks']:>7} {r['open_s']:>7.2f} {r['requests_at_open']:>8} "
            f"{r['compute_s']:>9.2f} {r['mpx_per_s']:>6.2f} {str(r['identical_to_first']):>9}"
        )
    print(f"project + bilinear alone (1024 x 1024, LCC -> EPSG:3338, 1 thread): {rate:.2f} Mpx/s")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = {
        "size": args.size,
        "years": args.years,
        "rows": rows,
        "bilinear_block_mpx_per_s": round(rate, 3),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "command": " ".join(["benchmarks/bench_climate.py", *sys.argv[1:]]),
    }
    (RESULTS / "bench_climate.json").write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {RESULTS / 'bench_climate.json'}")


if __name__ == "__main__":
    main()
