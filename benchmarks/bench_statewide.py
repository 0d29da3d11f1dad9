"""All of Alaska at 10 m: the lazy cube, its prediction graph, a few chunks, and projections.

1. A lazy Alaska-sized cube (EPSG:3338, 10 m, ``--side`` x ``--side`` pixels, 1.7e10 by
   default, ``--chunks`` 256 px: 260,000 chunks; values made per chunk by a function, nothing
   read) and ``predict(cube, model)``: the time to build the cube and the prediction graph,
   its layers (and how many are materialised, i.e. list a task per chunk), and the client's
   memory (RSS) before and after.
2. A few chunks of that map computed (threads): seconds and peak RSS.
3. Projected hours for the whole state per CPU core, for the "tiny" and "base" configurations:
   tiny from predict_windows timed here on one thread (output pixels per window = stride^2, the
   default plan of new models; the location prior timed per pixel, as infer/ runs it per block);
   base from its dense-path FLOPs per window at the FLOP rate tiny achieved here (base is too
   slow to time on this CPU: minutes per 256 px window).
4. Per GPU: not measured unless a CUDA device is present (then the same timing runs there under
   bf16 autocast). This machine has none: the JSON says so.

    python benchmarks/bench_statewide.py

Writes ``benchmarks/results/bench_statewide.json``. The machine may be shared: the figures are
rates measured in one run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

ALASKA_PIXELS = 1.7e10


def lazy_cube(side: int, chunks: int):
    """An Alaska-sized cube whose values are made per chunk (no I/O, nothing in memory)."""
    import dask.array as da

    from miso_xr.cube.grid import OPTICAL_BANDS, Grid, make_cube
    from miso_xr.cube.terrain import TERRAIN_BANDS

    grid = Grid("EPSG:3338", -1_100_000.0, 2_400_000.0, 10.0, side, side)

    sizes = _split(side, chunks)

    def values(n_bands, mean, std):
        # block_id, not block_info: dask builds a block_info dict per chunk at graph time
        def block(block_id=None):
            _, i, j = block_id
            rng = np.random.default_rng([i * chunks, j * chunks])
            shape = (n_bands, sizes[i], sizes[j])
            return (mean + std * rng.standard_normal(shape)).astype("float32")

        return da.map_blocks(
            block,
            chunks=((n_bands,), *(tuple(sizes),) * 2),
            dtype="float32",
            meta=np.empty((0, 0, 0), "float32"),
        )

    return make_cube(
        {
            "optical": (values(9, 0.1, 0.05), OPTICAL_BANDS),
            "covariates": (values(6, 0.0, 1.0), TERRAIN_BANDS),
        },
        grid,
    )


def _split(n: int, c: int) -> list[int]:
    return [c] * (n // c) + ([n % c] if n % c else [])


def dense_flops_meta(config: str, crop: int) -> float:
    """FLOPs of one window on the dense path, counted on the ``meta`` device (no compute)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from miso_xr.model.net import MisoNet

    with torch.device("meta"):
        net = MisoNet(config, {"optical": 9, "covariates": 6}, 1, True).eval()
        images = {
            "optical": torch.zeros(1, 9, crop, crop),
            "covariates": torch.zeros(1, 6, crop, crop),
        }
        loc = torch.zeros(1, crop * crop, 2, dtype=torch.float64)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net.decode(net.encode(images), None, loc)
    return float(counter.get_total_flops())


def _rss() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def main(argv: list[str] | None = None) -> dict:
    import threading

    import bench_predict as bp
    import dask
    import torch

    from miso_xr.infer.predict import predict
    from miso_xr.spec import default_stride

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--side", type=int, default=130_384, help="pixels per side (1.7e10 px)")
    ap.add_argument("--chunks", type=int, default=256, help="chunk side (px); 256: 260k chunks")
    ap.add_argument("--compute-chunks", type=int, default=2)
    ap.add_argument("--out", default=str(HERE / "results" / "bench_statewide.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)  # "per CPU core"
    s = {"window": 64, "stride": default_stride(64), "config": "tiny"}  # the default plan
    model = bp.make_model(s)
    res: dict = {
        "command": "python benchmarks/bench_statewide.py " + " ".join(argv or sys.argv[1:]),
        "machine": {"cpus": os.cpu_count(), "loadavg_1min": os.getloadavg()[0]},
        "side": args.side,
        "pixels": args.side**2,
        "chunks": args.chunks,
    }
    rss0 = _rss()
    t0 = time.perf_counter()
    cube = lazy_cube(args.side, args.chunks)
    res["cube_seconds"] = time.perf_counter() - t0
    rss_cube = _rss()
    t0 = time.perf_counter()
    maps = predict(cube, model)
    res["predict_graph_seconds"] = time.perf_counter() - t0
    res["graph_seconds"] = res["cube_seconds"] + res["predict_graph_seconds"]
    graph = maps.probability.data.__dask_graph__()
    res["graph_layers"] = len(graph.layers)
    res["graph_layers_materialised"] = sum(
        bool(layer.is_materialized()) for layer in graph.layers.values()
    )
    res["map_chunks"] = int(np.prod(maps.probability.data.numblocks))
    res["client_rss_mib"] = {"before": rss0, "after_cube": rss_cube, "after_graph": _rss()}

    # a few chunks of the statewide map, away from its edges
    c = args.chunks
    part = maps.probability[:, 40 * c : 41 * c, 40 * c : (40 + args.compute_chunks) * c]
    peak = [_rss()]
    done = threading.Event()

    def sample():
        while not done.wait(0.05):  # bounded: stops when the compute is done
            peak[0] = max(peak[0], _rss())

    threading.Thread(target=sample, daemon=True).start()
    t0 = time.perf_counter()
    with dask.config.set(scheduler="threads", num_workers=1):
        values = part.values
    dt = time.perf_counter() - t0
    done.set()
    res["few_chunks"] = {
        "chunks": args.compute_chunks,
        "pixels": int(values[0].size),
        "seconds": dt,
        "pixels_per_s": values[0].size / dt,
        "peak_rss_mib": peak[0],
        "finite": bool(np.isfinite(values).all()),
    }

    # per core: predict_windows on one thread, 4 windows, best of 2, with the location prior
    # computed once per pixel as infer/ does per block (timed apart, per pixel)
    inputs, xs, ys = bp._inputs(4, s["window"])
    prior = bp.window_prior(model, xs, ys)
    model.predict_windows(inputs, xs, ys, batch_size=4, prior=prior)
    best = prior_px = float("inf")
    grid = 250_000 + 10.0 * np.arange(256)
    for _ in range(2):
        t0 = time.perf_counter()
        model.predict_windows(inputs, xs, ys, batch_size=4, prior=prior)
        best = min(best, (time.perf_counter() - t0) / 4)
        t0 = time.perf_counter()
        model.location_prior(grid, grid + 1.4e6)
        prior_px = min(prior_px, (time.perf_counter() - t0) / grid.size**2)
    out_px_per_window = s["stride"] ** 2
    tiny_flops = bp.counted_flops_per_window(model, s, dense=True, shared_prior=True)
    rate = tiny_flops / best
    base_flops = dense_flops_meta("base", 256)
    base_s = base_flops / rate
    res["per_cpu_core"] = {
        "tiny": {
            "seconds_per_window": best,
            "location_prior_seconds_per_pixel": prior_px,
            "window": 64,
            "stride": s["stride"],
            "flops_per_window": tiny_flops,
            "flop_rate": rate,
            "hours": ALASKA_PIXELS * (best / out_px_per_window + prior_px) / 3600,
        },
        "base": {
            "seconds_per_window_projected": base_s,
            "window": 256,
            "stride": default_stride(256),
            "flops_per_window": base_flops,
            "hours": ALASKA_PIXELS / (default_stride(256) ** 2 / base_s) / 3600,
            "how": "base's dense-path FLOPs at the FLOP rate tiny achieved on this core",
        },
    }
    if torch.cuda.is_available():
        res["per_gpu"] = _gpu(
            model, bp.make_model({"window": 256, "stride": default_stride(256), "config": "base"})
        )
    else:
        res["per_gpu"] = {
            "measured": False,
            "why": "no CUDA device on this machine (no GPU machine was lent to this task)",
        }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2, default=float))
    _print(res)
    return res


def _gpu(tiny, base) -> dict:
    import bench_predict as bp
    import torch

    from miso_xr.spec import default_stride

    out = {"measured": True, "device": torch.cuda.get_device_name()}
    for name, model, win, n in (("tiny", tiny, 64, 64), ("base", base, 256, 8)):
        stride = default_stride(win)
        inputs, xs, ys = bp._inputs(n, win)
        model.to("cuda")
        model.predict_windows(inputs, xs, ys, batch_size=n)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        model.predict_windows(inputs, xs, ys, batch_size=n)
        torch.cuda.synchronize()
        sec = (time.perf_counter() - t0) / n
        out[name] = {"seconds_per_window": sec, "hours": ALASKA_PIXELS / (stride**2 / sec) / 3600}
        model.to("cpu")
    return out


def _print(res: dict) -> None:
    r = res["client_rss_mib"]
    print(
        f"lazy Alaska cube {res['side']}^2 = {res['pixels']:.3g} px, chunks {res['chunks']} "
        f"({res['map_chunks']} map chunks): cube {res['cube_seconds']:.2f} s + prediction graph "
        f"{res['predict_graph_seconds']:.2f} s; {res['graph_layers']} layers "
        f"({res['graph_layers_materialised']} materialised); client RSS {r['before']:.0f} -> "
        f"{r['after_cube']:.0f} -> {r['after_graph']:.0f} MiB"
    )
    f = res["few_chunks"]
    print(
        f"{f['chunks']} chunks computed ({f['pixels']} px): {f['seconds']:.1f} s, "
        f"{f['pixels_per_s']:.0f} px/s, peak RSS {f['peak_rss_mib']:.0f} MiB"
    )
    t, b = res["per_cpu_core"]["tiny"], res["per_cpu_core"]["base"]
    print(
        f"per CPU core: tiny {t['seconds_per_window']:.2f} s/window -> {t['hours']:.3g} h; "
        f"base (projected by FLOPs) {b['seconds_per_window_projected']:.0f} s/window -> "
        f"{b['hours']:.3g} h"
    )
    g = res["per_gpu"]
    if g.get("measured"):
        print(
            f"per GPU ({g['device']}): tiny {g['tiny']['hours']:.3g} h, base {g['base']['hours']:.3g} h"
        )
    else:
        print(f"per GPU: not measured: {g['why']}")


if __name__ == "__main__":
    main()
