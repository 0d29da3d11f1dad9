"""Inference throughput, overhead and memory: a bare torch loop vs predict() vs a cluster, and the RF.

One process, one raster, one window plan, side by side:

(a) a bare loop: the same lattice windows cut from an in-memory array, ``predict_windows`` in
    batches, Gaussian blending in numpy (no Dask, no xarray);
(b) ``predict(cube, model).compute()`` on the threaded scheduler;
(c) the same on a 2-worker ``distributed.LocalCluster`` (processes, 1 thread each), once warm;
(d) the Random Forest through the same path, and through a plain ``map_blocks`` of its per-pixel
    ``predict_windows`` (no windows, no halo).

It reports pixels/s, the model's FLOP rate against a matmul peak measured on the same device in the
same run (FLOPs per window from ``torch.utils.flop_counter``), the overhead ratio (b)/(a), the peak
RSS of ``predict -> to_zarr`` at 1x and 10x the raster's area (a fresh subprocess per size), and the
projected time for all of Alaska at 10 m (1.7e10 pixels).

    python benchmarks/bench_predict.py --small     # a couple of minutes on 2 CPU cores
    python benchmarks/bench_predict.py             # a bigger raster and the "tiny" MISO config

Writes ``benchmarks/results/bench_predict.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from miso_xr.cube.grid import OPTICAL_BANDS as OPTICAL  # noqa: E402
from miso_xr.cube.terrain import TERRAIN_BANDS as COVARIATES  # noqa: E402

ALASKA_PIXELS = 1.7e10


def _settings(small: bool) -> dict:
    if small:
        return {
            "size": 128,
            "window": 32,
            "stride": 16,
            "chunks": 64,
            "config": "small",
            "batch": 16,
            "mem_sizes": (96, 304),
        }
    return {
        "size": 512,
        "window": 64,
        "stride": 32,
        "chunks": 256,
        "config": "tiny",
        "batch": 16,
        "mem_sizes": (256, 810),
    }


def make_model(s: dict):
    from miso_xr.model import MisoConfig, MisoModel
    from miso_xr.spec import ModelSpec, Normalisation

    name = "micro" if s["config"] == "small" else s["config"]
    config = MisoConfig.named(name).replace(crop=s["window"])
    spec = ModelSpec(
        kind="miso",
        task="permafrost",
        classes=("absent", "present"),
        modalities=(("optical", OPTICAL), ("covariates", COVARIATES)),
        window=s["window"],
        stride=s["stride"],
        resolution=10.0,
        crs="EPSG:3338",
        normalisation=(
            ("optical", Normalisation((0.1,) * 9, (0.05,) * 9)),
            ("covariates", Normalisation((300.0, 5, 180, 0, 0, 8), (200.0, 3, 100, 1, 1, 2))),
        ),
        location=True,
    )
    return MisoModel.create(spec, config, seed=0)


def make_cube(size: int, chunks: int, seed: int = 0):
    from miso_xr.cube.grid import Grid, make_cube

    rng = np.random.default_rng(seed)
    grid = Grid("EPSG:3338", 250_000.0, 1_650_000.0, 10.0, size, size)
    opt = (0.1 + 0.05 * rng.standard_normal((9, size, size))).astype("float32")
    cov = (
        rng.standard_normal((6, size, size)) * [[[200]], [[3]], [[100]], [[1]], [[1]], [[2]]]
        + [[[300]], [[5]], [[180]], [[0]], [[0]], [[8]]]
    ).astype("float32")
    return make_cube(
        {"optical": (opt, OPTICAL), "covariates": (cov, COVARIATES)}, grid, chunks=chunks
    )


def bare_loop(cube, model, s: dict) -> tuple[float, int, np.ndarray]:
    """(a): the lattice windows of the whole raster, batched through the model, blended."""
    from miso_xr.cube.grid import Grid
    from miso_xr.infer.windows import WindowPlan, blend_windows

    plan = WindowPlan(s["window"], s["stride"])
    arr = np.concatenate([cube.optical.values, cube.covariates.values])
    g = Grid.from_dataset(cube)
    h, w = g.height, g.width
    pad = plan.window
    t0 = time.perf_counter()
    padded = np.pad(arr, ((0, 0), (pad, pad), (pad, pad)), constant_values=np.nan)
    rr, cc = np.meshgrid(plan.starts(0, h), plan.starts(0, w), indexing="ij")
    rr, cc = rr.ravel(), cc.ravel()
    offs = np.arange(plan.window)
    acc = None
    for i in range(0, rr.size, s["batch"]):
        br, bc = rr[i : i + s["batch"]], cc[i : i + s["batch"]]
        p = np.stack(
            [
                padded[:, r + pad : r + pad + plan.window, c + pad : c + pad + plan.window]
                for r, c in zip(br, bc)
            ]
        )
        inputs = {"optical": p[:, :9], "covariates": p[:, 9:]}
        xs = g.left + (bc[:, None] + offs + 0.5) * g.resolution
        ys = g.top - (br[:, None] + offs + 0.5) * g.resolution
        probs = model.predict_windows(inputs, xs, ys, device="cpu")
        acc = blend_windows(
            probs, br, bc, origin=(0, 0), shape=(h, w), weights=plan.weights(), out=acc
        )
    prob = acc[0] / acc[1]
    return time.perf_counter() - t0, int(rr.size), prob


def flops_per_window(model, s: dict) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    n, win = 4, s["window"]
    inputs = {
        "optical": np.full((n, 9, win, win), 0.1, "float32"),
        "covariates": np.full((n, 6, win, win), 1.0, "float32"),
    }
    xs = np.tile(np.arange(win) * 10.0, (n, 1))
    with FlopCounterMode(display=False) as counter:
        model.predict_windows(inputs, xs, xs, device="cpu")
    return counter.get_total_flops() / n


def matmul_peak(seconds: float = 2.0) -> float:
    """fp32 matmul FLOP/s on this CPU, with torch's default threads (best of several runs)."""
    import torch

    n = 1024
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best, t_end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < t_end:  # bounded by the time budget
        t0 = time.perf_counter()
        for _ in range(4):
            torch.mm(a, b)
        best = max(best, 4 * 2 * n**3 / (time.perf_counter() - t0))
    return best


MEM_CHILD = """
import json, sys, tempfile, threading, time
import psutil
sys.path.insert(0, {bench!r}); sys.path.insert(0, {root!r})
import bench_predict as b
from miso_xr.infer.predict import predict
from miso_xr.io import to_zarr
s = json.loads({settings!r})
model = b.make_model(s)
cube = b.make_cube({size}, s["chunks"])
proc = psutil.Process()
base = proc.memory_info().rss
peak = [base]
done = threading.Event()
def sample():
    while not done.wait(0.02):  # bounded: stops when the write is done
        peak[0] = max(peak[0], proc.memory_info().rss)
threading.Thread(target=sample, daemon=True).start()
t0 = time.perf_counter()
with tempfile.TemporaryDirectory() as d:
    to_zarr(predict(cube, model, batch_size=s["batch"]), d + "/m.zarr", progress=False)
dt = time.perf_counter() - t0
done.set()
print(json.dumps({{"pixels": {size} ** 2, "rss_before_mib": base / 2**20, "peak_rss_mib": peak[0] / 2**20,
                  "seconds": dt, "input_mib": cube.nbytes / 2**20}}))
"""


def memory_at(size: int, s: dict) -> dict:
    code = MEM_CHILD.format(bench=str(HERE), root=str(ROOT), settings=json.dumps(s), size=size)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict:
    import dask
    import dask.array as da
    import torch

    from miso_xr.infer.predict import predict

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", action="store_true", help="a quick run (small raster and model)")
    ap.add_argument("--no-cluster", action="store_true", help="skip the LocalCluster run")
    ap.add_argument("--out", default=str(HERE / "results" / "bench_predict.json"))
    args = ap.parse_args(argv)
    s = _settings(args.small)
    res: dict = {
        "settings": s,
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "loadavg_1min": os.getloadavg()[0],
        },
    }
    model = make_model(s)
    tmp = tempfile.mkdtemp(prefix="bench-predict-")
    model.save(os.path.join(tmp, "model.safetensors"))
    cube = make_cube(s["size"], s["chunks"])
    pixels = s["size"] ** 2

    fpw = flops_per_window(model, s)
    peak = matmul_peak()
    res["flops_per_window"] = fpw
    res["matmul_peak_flops"] = peak

    model.predict_windows(  # warm-up: first calls allocate
        {
            "optical": np.zeros((1, 9, s["window"], s["window"]), "float32"),
            "covariates": np.zeros((1, 6, s["window"], s["window"]), "float32"),
        },
        np.zeros((1, s["window"])),
        np.zeros((1, s["window"])),
    )
    t_a, n_windows, prob_a = bare_loop(cube, model, s)
    res["a_bare_loop"] = {
        "seconds": t_a,
        "windows": n_windows,
        "pixels_per_s": pixels / t_a,
        "model_flops_per_s": fpw * n_windows / t_a,
        "flop_utilisation": fpw * n_windows / t_a / peak,
    }

    maps = predict(cube, model, batch_size=s["batch"])
    maps.probability.values  # noqa: B018 - warm-up: loads the model into this process's cache
    t0 = time.perf_counter()
    prob_b = maps.probability.values
    t_b = time.perf_counter() - t0
    n_chunks = len(cube.chunks["y"]) * len(cube.chunks["x"])
    res["b_threads"] = {
        "seconds": t_b,
        "pixels_per_s": pixels / t_b,
        "chunks": n_chunks,
        "overhead_vs_bare": t_b / t_a,
        "max_abs_diff_vs_bare": float(np.nanmax(np.abs(prob_b[1] - prob_a[1]))),
    }

    if not args.no_cluster:
        import distributed

        from miso_xr.infer.workers import PrewarmModel, model_ref

        with (
            distributed.LocalCluster(
                n_workers=2,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                silence_logs=40,
            ) as cluster,
            distributed.Client(cluster) as client,
        ):
            client.register_plugin(PrewarmModel(model_ref(model)))
            t0 = time.perf_counter()
            client.compute(maps.probability).result()
            t_c = time.perf_counter() - t0
        res["c_cluster_2x1"] = {
            "seconds": t_c,
            "pixels_per_s": pixels / t_c,
            "speedup_vs_threads": t_b / t_c,
        }

    res["d_random_forest"] = bench_rf(cube, s)

    res["memory"] = {f"{k}x": memory_at(size, s) for k, size in zip((1, 10), s["mem_sizes"])}
    best = max(v["pixels_per_s"] for k, v in res.items() if k[:2] in ("b_", "c_"))
    res["alaska_10m"] = {
        "pixels": ALASKA_PIXELS,
        "hours_at_best_rate_here": ALASKA_PIXELS / best / 3600,
        "hours_bare_loop_rate": ALASKA_PIXELS / res["a_bare_loop"]["pixels_per_s"] / 3600,
        "hours_random_forest": ALASKA_PIXELS
        / res["d_random_forest"]["predict_pixels_per_s"]
        / 3600,
        "note": "linear projection from this machine; divide by the number of equal workers/GPUs",
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2, default=float))
    _print_table(res)
    del dask, da
    return res


def bench_rf(cube, s: dict) -> dict:
    import dask.array as da
    import pandas as pd

    from miso_xr.cube.grid import Grid
    from miso_xr.infer.predict import predict
    from miso_xr.observations import read_observations
    from miso_xr.training.baseline import RandomForestBaseline

    g = Grid.from_dataset(cube)
    rng = np.random.default_rng(0)
    r, c = rng.integers(0, g.height, 300), rng.integers(0, g.width, 300)
    elev = cube.covariates.values[0, r, c]
    df = pd.DataFrame({"x": g.x[c], "y": g.y[r], "permafrost": (elev > 300).astype(int)})
    obs = read_observations(df.drop_duplicates(["x", "y"]), crs=g.crs)
    rf = RandomForestBaseline(n_estimators=50, seed=0).fit(cube, obs)
    pixels = g.width * g.height
    maps = predict(cube, rf, window=s["window"], stride=s["window"])
    maps.probability.values  # noqa: B018 - warm-up
    t0 = time.perf_counter()
    a = maps.probability.values
    t_pred = time.perf_counter() - t0

    order = [m for m, _ in rf.spec.modalities]
    stack = da.concatenate(
        [cube[m].sel({f"{m}_band": list(b)}).data for m, b in rf.spec.modalities]
    ).rechunk({0: -1})
    counts = [len(b) for _, b in rf.spec.modalities]

    def per_pixel(block, block_info=None):
        (y0, y1), (x0, x1) = block_info[0]["array-location"][1:]
        parts = np.split(block, np.cumsum(counts)[:-1])
        p = rf.predict_windows(
            {m: q[None] for m, q in zip(order, parts)}, g.x[x0:x1][None], g.y[y0:y1][None]
        )[0]
        p[:, ~np.isfinite(block).all(0)] = np.nan
        return p

    plain = da.map_blocks(
        per_pixel,
        stack,
        chunks=((2,), *stack.chunks[1:]),
        dtype="float32",
        meta=np.empty((0, 0, 0), "float32"),
    )
    t0 = time.perf_counter()
    b = plain.compute(scheduler="threads")
    t_plain = time.perf_counter() - t0
    return {
        "predict_seconds": t_pred,
        "predict_pixels_per_s": pixels / t_pred,
        "plain_map_blocks_seconds": t_plain,
        "plain_pixels_per_s": pixels / t_plain,
        "overhead_vs_plain": t_pred / t_plain,
        "max_abs_diff": float(np.nanmax(np.abs(a - b))),
    }


def _print_table(res: dict) -> None:
    rows = [
        (
            "(a) bare torch loop",
            res["a_bare_loop"]["seconds"],
            res["a_bare_loop"]["pixels_per_s"],
            "",
        )
    ]
    b = res["b_threads"]
    rows.append(
        (
            "(b) predict, threads",
            b["seconds"],
            b["pixels_per_s"],
            f"overhead (b)/(a) = {b['overhead_vs_bare']:.2f}",
        )
    )
    if "c_cluster_2x1" in res:
        c = res["c_cluster_2x1"]
        rows.append(
            (
                "(c) LocalCluster 2x1",
                c["seconds"],
                c["pixels_per_s"],
                f"speed-up vs (b) = {c['speedup_vs_threads']:.2f}",
            )
        )
    d = res["d_random_forest"]
    rows.append(
        (
            "(d) RF via predict",
            d["predict_seconds"],
            d["predict_pixels_per_s"],
            f"vs plain map_blocks = {d['overhead_vs_plain']:.2f}",
        )
    )
    rows.append(
        ("(d) RF plain map_blocks", d["plain_map_blocks_seconds"], d["plain_pixels_per_s"], "")
    )
    print(f"{'run':28s} {'seconds':>9s} {'pixels/s':>12s}  note")
    for name, sec, pps, note in rows:
        print(f"{name:28s} {sec:9.2f} {pps:12.0f}  {note}")
    a = res["a_bare_loop"]
    print(
        f"FLOPs/window {res['flops_per_window']:.3g}; model {a['model_flops_per_s']:.3g} FLOP/s "
        f"vs matmul peak {res['matmul_peak_flops']:.3g} -> utilisation "
        f"{100 * a['flop_utilisation']:.1f} %"
    )
    for k, m in res["memory"].items():
        print(
            f"memory {k}: {m['pixels']:.3g} px, input {m['input_mib']:.0f} MiB, RSS before "
            f"{m['rss_before_mib']:.0f} MiB, peak {m['peak_rss_mib']:.0f} MiB, "
            f"{m['seconds']:.1f} s"
        )
    al = res["alaska_10m"]
    print(
        f"Alaska at 10 m (1.7e10 px): {al['hours_at_best_rate_here']:.3g} h at the best MISO "
        f"rate here; RF {al['hours_random_forest']:.3g} h"
    )


if __name__ == "__main__":
    main()
