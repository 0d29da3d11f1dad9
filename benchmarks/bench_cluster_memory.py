"""Worker memory of ``predict -> to_zarr`` on a 2-process LocalCluster, as the raster grows.

For rasters of ``--areas`` times ``128**2`` px (the micro MISO of ``bench_predict.py --small``,
64 px chunks, the cube read lazily from a Zarr store), a fresh 2-worker cluster (1 thread each)
loads the model, then each worker samples its own RSS every 20 ms during the write. Reported per
worker: the peak rise above its RSS after the model load, the rise left once the write is done
(what the worker keeps), the rise after ``malloc_trim(0)`` (what glibc was only holding as free
memory) and the keys of data the worker still holds. Prints a table and writes
``benchmarks/results/bench_cluster_memory.json``.

    python benchmarks/bench_cluster_memory.py [--areas 10 100 300]   # minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

# a worker's sampler state lives on a module the worker has imported (functions sent by
# client.run from this script are pickled by value: their own globals would be copies)
_STATE = "_miso_xr_bench_memory"


def start_sampler() -> float:
    """On a worker: start sampling this process's RSS; return it (MiB)."""
    import psutil

    proc = psutil.Process()
    state = {"base": proc.memory_info().rss, "done": threading.Event()}
    state["peak"] = state["base"]
    setattr(threading, _STATE, state)

    def run() -> None:
        while not state["done"].wait(0.02):  # bounded: stops when the write is done
            state["peak"] = max(state["peak"], proc.memory_info().rss)

    threading.Thread(target=run, daemon=True).start()
    return state["base"] / 2**20


def stop_sampler(dask_worker=None) -> dict:
    """On a worker: stop sampling; the peak and kept rises, and the rise after malloc_trim."""
    import ctypes
    import gc

    import psutil

    state = getattr(threading, _STATE)
    state["done"].set()
    proc = psutil.Process()
    gc.collect()
    now = proc.memory_info().rss
    trimmed = None
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        trimmed = (proc.memory_info().rss - state["base"]) / 2**20
    except (OSError, AttributeError):  # not glibc
        pass
    return {
        "peak_rise_mib": (state["peak"] - state["base"]) / 2**20,
        "kept_rise_mib": (now - state["base"]) / 2**20,
        "rise_after_trim_mib": trimmed,
        "held_keys": len(dask_worker.data) if dask_worker is not None else None,
    }


def main(argv: list[str] | None = None) -> dict:
    import bench_predict as bp
    import dask
    import distributed
    import numpy as np
    import rioxarray  # noqa: F401 - registers .rio
    import xarray as xr

    from miso_xr.infer.predict import predict
    from miso_xr.infer.workers import PrewarmModel, model_ref
    from miso_xr.io import to_zarr

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--areas", type=int, nargs="+", default=[10, 100, 300])
    ap.add_argument(
        "--no-profiler",
        action="store_true",
        help="workers without distributed's statistical profiler "
        "(distributed.worker.profile.enabled: False)",
    )
    ap.add_argument("--out", default=str(HERE / "results" / "bench_cluster_memory.json"))
    args = ap.parse_args(argv)
    s = bp._settings(True)
    model = bp.make_model(s, "micro")
    tmp = tempfile.mkdtemp(prefix="bench-cluster-memory-")
    model.save(os.path.join(tmp, "model.safetensors"))
    res: dict = {
        "command": "python benchmarks/bench_cluster_memory.py " + " ".join(argv or sys.argv[1:]),
        "chunks": s["chunks"],
        "areas": {},
    }
    res["worker_profiler"] = not args.no_profiler
    for area in args.areas:
        side = int(round(s["mem_base"] * area**0.5))
        src = os.path.join(tmp, f"cube{area}.zarr")
        bp.make_cube(side, s["chunks"]).to_zarr(src, mode="w")
        with (
            dask.config.set({"distributed.worker.profile.enabled": not args.no_profiler}),
            bp.two_worker_cluster() as cluster,
            distributed.Client(cluster) as client,
        ):
            client.register_plugin(PrewarmModel(model_ref(model)))
            base = client.run(start_sampler)
            cube = xr.open_zarr(src).rio.write_crs("EPSG:3338")
            t0 = time.perf_counter()
            to_zarr(predict(cube, model), os.path.join(tmp, f"map{area}.zarr"), progress=False)
            seconds = time.perf_counter() - t0
            workers = client.run(stop_sampler)
        res["areas"][f"{area}x"] = {
            "pixels": side**2,
            "map_chunks": int(np.ceil(side / s["chunks"]) ** 2),
            "seconds": seconds,
            "worker_rss_before_mib": list(base.values()),
            "workers": list(workers.values()),
        }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2))
    print(
        f"{'area':>6s} {'pixels':>9s} {'chunks':>7s} {'seconds':>8s}   per worker (MiB): "
        "peak rise, kept after the write, after malloc_trim, keys held"
    )
    for name, r in res["areas"].items():
        cells = "; ".join(
            ", ".join(
                "-" if w[key] is None else f"{w[key]:.1f}"
                for key in ("peak_rise_mib", "kept_rise_mib", "rise_after_trim_mib")
            )
            + f", {w['held_keys']}"
            for w in r["workers"]
        )
        print(f"{name:>6s} {r['pixels']:9.3g} {r['map_chunks']:7d} {r['seconds']:8.1f}   {cells}")
    return res


if __name__ == "__main__":
    main()
