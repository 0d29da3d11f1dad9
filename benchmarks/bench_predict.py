"""Inference throughput, utilisation, overhead and memory: the old path vs the new, in one run.

One process, one raster, one window plan, side by side:

(a) bare loops (no Dask, no xarray): the lattice windows cut from an in-memory array through
    ``predict_windows``, blended in numpy: the *old path* (the pixel centres queried as points,
    ``dense=False``, 8 windows per call, the plan of before: stride W/2, Gaussian sigma W/8) and
    the *new path* (LIIF's dense decode, ``batch_size="auto"``) on the default plan of new models
    (``miso_xr.spec.default_stride``) and on the other plans (stride W/2 with Hann blending,
    3W/4 with Tukey blending), best of alternated runs;
(v) the model call alone on one batch of windows: eager, channels-last inputs and model, and
    ``torch.compile`` of the decode (what wins is kept; both are reported);
(b) ``predict(cube, model).compute()`` on the threaded scheduler, at the default plan;
(c) ``predict -> to_zarr`` of a cube *read from a Zarr store on disk* (not shipped in the graph):
    threads vs a 2-worker process ``distributed.LocalCluster`` at 2 compute threads each, wall and
    CPU seconds; where the time goes (one-off start-up, model loads per worker, task time per
    kind of task from the task stream, graph size, the glibc allocator setting of the workers);
(d) the Random Forest through the same path, and through a plain ``map_blocks``.

Utilisation, against a matmul peak measured in the same run on the same threads:

- *effective*: the FLOPs of the naive every-pixel decode (each of the 4 neighbours through the
  whole 3-layer LIIF MLP on the concatenated feature, offset and cell size, at every pixel of
  every window of the old plan; plus the encoders and heads), over the elapsed time, over the
  peak. The restructured decode does less work than that, so this can pass 100 %;
- *actual*: the FLOPs the new path really runs (counted with ``torch.utils.flop_counter``): each
  window's own, plus the location prior of the ``stride**2`` pixels a window accounts for.

(a) is also given in CPU seconds (all threads) against the peak per CPU-second: on a shared
machine the wall clock mostly measures the share of the cores the process got.

Memory: the peak RSS rise above the starting RSS of ``predict -> to_zarr`` in a fresh subprocess
at 1x, 10x and 100x a raster's area (the micro model, so the 100x run stays short), the cube
read lazily from a Zarr store (an in-memory cube would be counted in the rise: it is the raster),
``--mem-repeats`` times interleaved (each run is kept; the figures are medians), with the median
of the sampled RSS beside its peak. ``--only-memory`` runs this part alone.

    python benchmarks/bench_predict.py --small     # minutes on 2 CPU cores
    python benchmarks/bench_predict.py             # a bigger raster and the "tiny" MISO config

The machine these figures come from may be shared: compare ratios measured in one run.
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

# OpenMP threads that spin while waiting burn the cores a shared machine's other processes need,
# and each of the dense path's many small parallel regions then waits a scheduler slice for its
# descheduled partner thread: measured here (2 cores, load 20, 2 torch threads) 1.26 s of wall
# time per window with the default policy, 0.03 s with PASSIVE. Read when OpenMP starts (torch's
# import), so set before it; a value already in the environment wins. Recorded in the JSON.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from miso_xr.cube.grid import OPTICAL_BANDS as OPTICAL  # noqa: E402
from miso_xr.cube.terrain import TERRAIN_BANDS as COVARIATES  # noqa: E402

ALASKA_PIXELS = 1.7e10
# the window plan of before this benchmark's changes: stride half the window, Gaussian sigma W/8
OLD_SIGMA_FRACTION = 1 / 8


def _settings(small: bool) -> dict:
    if small:
        return {
            "size": 128,
            "window": 32,
            "stride": 16,
            "chunks": 64,
            "config": "micro",
            "old_batch": 8,
            "mem_base": 128,
            "cluster_size": 512,
            "cluster_chunks": 128,
        }
    return {
        "size": 256,
        "window": 64,
        "stride": 32,
        "chunks": 128,
        "config": "tiny",
        "old_batch": 8,
        "mem_base": 128,
        "cluster_size": 512,
        "cluster_chunks": 256,
    }


def make_model(s: dict, config: str | None = None, *, location: bool = True):
    from miso_xr.model import MisoConfig, MisoModel
    from miso_xr.spec import ModelSpec, Normalisation

    config = MisoConfig.named(config or s["config"]).replace(crop=s["window"])
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
        location=location,
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


def _windows(arr, plan, h, w, pad):
    rr, cc = np.meshgrid(plan.starts(0, h), plan.starts(0, w), indexing="ij")
    return rr.ravel(), cc.ravel()


def bare_loop(
    cube, model, s: dict, *, old: bool, stride: int | None = None
) -> tuple[float, int, np.ndarray, float]:
    """(a): the lattice windows of the whole raster, batched through the model, blended.

    ``old``: the path of before (points queried, 8 windows per call, Gaussian sigma W/8);
    else the new one (dense decode, automatic batch, the plan's default blending, a location
    prior computed once per pixel as infer/ does per block), on the settings' stride or on
    ``stride``. Returns wall seconds, windows, the map, CPU seconds.
    """
    from miso_xr.cube.grid import Grid
    from miso_xr.infer.batching import auto_batch_size
    from miso_xr.infer.windows import WindowPlan, blend_windows, window_cells

    if old:
        plan = WindowPlan(s["window"], s["stride"], sigma=s["window"] * OLD_SIGMA_FRACTION)
        batch = s["old_batch"]
        kw = {"dense": False, "batch_size": batch, "lanes": 1}  # one call on all threads
    else:
        plan = WindowPlan(s["window"], stride or s["stride"])
        batch = auto_batch_size(model, s["window"], "cpu")
        kw = {"batch_size": batch}
    arr = np.concatenate([cube.optical.values, cube.covariates.values])
    g = Grid.from_dataset(cube)
    h, w = g.height, g.width
    pad = plan.window
    t0, c0 = time.perf_counter(), time.process_time()
    padded = np.pad(arr, ((0, 0), (pad, pad), (pad, pad)), constant_values=np.nan)
    rr, cc = _windows(arr, plan, h, w, pad)
    offs = np.arange(plan.window)
    prior = None
    if not old:  # as infer does per block: the location prior once per pixel the windows cover
        r_lo, c_lo = int(rr.min()), int(cc.min())
        gx = g.left + (c_lo + np.arange(int(cc.max()) + plan.window - c_lo) + 0.5) * g.resolution
        gy = g.top - (r_lo + np.arange(int(rr.max()) + plan.window - r_lo) + 0.5) * g.resolution
        prior = model.location_prior(gx, gy, device="cpu")
    acc = None
    for i in range(0, rr.size, batch):
        br, bc = rr[i : i + batch], cc[i : i + batch]
        if prior is not None:
            kw["prior"] = window_cells(prior, br - r_lo, bc - c_lo, plan.window)
        p = np.stack(
            [
                padded[:, r + pad : r + pad + plan.window, c + pad : c + pad + plan.window]
                for r, c in zip(br, bc)
            ]
        )
        inputs = {"optical": p[:, :9], "covariates": p[:, 9:]}
        xs = g.left + (bc[:, None] + offs + 0.5) * g.resolution
        ys = g.top - (br[:, None] + offs + 0.5) * g.resolution
        probs = model.predict_windows(inputs, xs, ys, device="cpu", **kw)
        acc = blend_windows(
            probs, br, bc, origin=(0, 0), shape=(h, w), weights=plan.weights(), out=acc
        )
    prob = acc[0] / acc[1]
    return time.perf_counter() - t0, int(rr.size), prob, time.process_time() - c0


def _inputs(n: int, win: int) -> tuple[dict, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    inputs = {
        "optical": (0.1 + 0.05 * rng.standard_normal((n, 9, win, win))).astype("float32"),
        "covariates": (300 + rng.standard_normal((n, 6, win, win))).astype("float32"),
    }
    xs = np.tile(250_000 + np.arange(win) * 10.0, (n, 1))
    return inputs, xs, xs[:, ::-1] + 1.4e6


def counted_flops_per_window(model, s: dict, *, dense: bool, shared_prior: bool = False) -> float:
    """FLOPs (matmuls and convolutions) one window really costs on the path chosen.

    ``shared_prior``: without the location prior, which the new path computes per pixel
    (:func:`prior_flops_per_pixel`) and hands to the windows.
    """
    from torch.utils.flop_counter import FlopCounterMode

    from miso_xr.model.liif import unpacked

    inputs, xs, ys = _inputs(2, s["window"])
    kw = {}
    prior = window_prior(model, xs, ys) if shared_prior else None
    if prior is not None:
        kw["prior"] = prior
    # narrow layers unpacked: the zero blocks of their packed matmuls are not useful work; one
    # lane: the counter sees only the ops of its own thread
    with FlopCounterMode(display=False) as counter, unpacked():
        model.predict_windows(inputs, xs, ys, device="cpu", dense=dense, lanes=1, **kw)
    return counter.get_total_flops() / 2


def window_prior(model, xs: np.ndarray, ys: np.ndarray) -> np.ndarray | None:
    """The location prior of :func:`_inputs`' windows (which all lie on the same pixels), as
    ``predict_windows(prior=...)`` takes it; None for a model without one."""
    grid = model.location_prior(xs[0], ys[0])
    if grid is None:
        return None
    return np.ascontiguousarray(np.broadcast_to(grid, (len(xs), *grid.shape)))


def prior_flops_per_pixel(model, s: dict) -> float:
    """FLOPs of the location prior per pixel, computed once per pixel (0 without a prior)."""
    from torch.utils.flop_counter import FlopCounterMode

    _, xs, ys = _inputs(1, s["window"])
    with FlopCounterMode(display=False) as counter:
        grid = model.location_prior(xs[0], ys[0])
    return 0.0 if grid is None else counter.get_total_flops() / xs[0].size ** 2


def naive_flops_per_window(model, s: dict) -> float:
    """FLOPs of one window with the naive every-pixel decode.

    Each pixel, each stage, each of the 4 neighbours runs the whole LIIF MLP on the
    concatenated (feature, offset, cell size) input, output layer included; the rest (encoders,
    projections, fusion, head, location) is what the query path counts minus its LIIF part.
    """
    cfg, win = model.config, s["window"]
    px = win * win
    naive_liif, query_liif = 0.0, 0.0
    for c, (h1, h2) in zip(cfg.stage_dims, cfg.liif_widths):
        naive_liif += 4 * 2 * ((c + 4) * h1 + h1 * h2 + h2 * cfg.width)
        query_liif += 4 * 2 * (2 * h1 + h1 * h2) + 2 * h2 * cfg.width
    per_cell = sum(
        2 * c * h1 * (win // (cfg.patch_size * 2**i)) ** 2
        for i, (c, (h1, _)) in enumerate(zip(cfg.stage_dims, cfg.liif_widths))
    )
    n_mod = len(model.spec.modalities)
    counted = counted_flops_per_window(model, s, dense=False)
    # the counter sees matmuls only: 2 * (feature gather: none) + offset/cell linears (4 each)
    rest = counted - n_mod * (px * query_liif + per_cell)
    return rest + n_mod * px * naive_liif


def matmul_peak(seconds: float = 2.0, *, cpu: bool = False) -> float:
    """fp32 matmul FLOP/s on this CPU, with torch's current threads (best of several runs).

    ``cpu``: FLOPs per CPU-second (all threads' CPU time), the peak of one core.
    """
    import torch

    n = 1024
    clock = time.process_time if cpu else time.perf_counter
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best, t_end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < t_end:  # bounded by the time budget
        t0 = clock()
        for _ in range(4):
            torch.mm(a, b)
        best = max(best, 4 * 2 * n**3 / max(clock() - t0, 1e-9))
    return best


def variants(model, s: dict, repeats: int = 2, *, compile_too: bool = False) -> dict:
    """(v): one batch of windows through the model: eager, channels-last, torch.compile."""
    import torch

    n = 8
    inputs, xs, ys = _inputs(n, s["window"])
    out = {}

    def timed(fn) -> float:
        fn()  # warm-up (and, for compile, the compilation)
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
        return best

    def run():
        return model.predict_windows(inputs, xs, ys, device="cpu", batch_size=n)

    out["eager_s_per_window"] = timed(run) / n
    ref = run()
    # channels-last: the convolutions' layout (patch embedding, LIIF's per-cell 1x1 convs)
    model.net.to(memory_format=torch.channels_last)
    out["channels_last_s_per_window"] = timed(run) / n
    out["channels_last_max_abs_diff"] = float(np.abs(run() - ref).max())
    model.net.to(memory_format=torch.contiguous_format)
    try:
        if not compile_too:
            raise RuntimeError("not timed (run with --compile)")
        for liif in model.net.implicit.values():
            liif.dense = torch.compile(liif.dense, dynamic=False)
        t0 = time.perf_counter()
        run()
        out["compile_seconds"] = time.perf_counter() - t0
        out["compile_s_per_window"] = timed(run) / n
        out["compile_max_abs_diff"] = float(np.abs(run() - ref).max())
    except Exception as err:  # a missing compiler is a result here, not a crash
        out["compile_error"] = f"{type(err).__name__}: {str(err)[:300]}"
    finally:
        for liif in model.net.implicit.values():
            liif.__dict__.pop("dense", None)
    best = min(
        ("eager", out["eager_s_per_window"]),
        ("channels_last", out["channels_last_s_per_window"]),
        ("compile", out.get("compile_s_per_window", float("inf"))),
        key=lambda kv: kv[1],
    )
    out["fastest"] = best[0]
    return out


MEM_CHILD = """
import json, sys, tempfile, threading, time
import psutil
sys.path.insert(0, {bench!r}); sys.path.insert(0, {root!r})
import bench_predict as b
import rioxarray, xarray as xr
from miso_xr.infer.predict import predict
from miso_xr.io import to_zarr
s = json.loads({settings!r})
model = b.make_model(s, "micro")
proc = psutil.Process()
cube = xr.open_zarr({src!r})  # lazy: the cube stays on disk, as a real one would
cube = cube.rio.write_crs("EPSG:3338")
base = proc.memory_info().rss
samples = [base]
done = threading.Event()
def sample():
    while not done.wait(0.02):  # bounded: stops when the write is done
        samples.append(proc.memory_info().rss)
threading.Thread(target=sample, daemon=True).start()
t0, c0 = time.perf_counter(), time.process_time()
with tempfile.TemporaryDirectory() as d:
    maps = predict(cube, model)
    to_zarr(maps, d + "/m.zarr", progress=False)
dt, cpu = time.perf_counter() - t0, time.process_time() - c0
done.set()
samples.append(proc.memory_info().rss)
peak = max(samples)
mid = sorted(samples)[len(samples) // 2]
tasks = len(maps.__dask_graph__())
print(json.dumps({{"pixels": {size} ** 2, "rss_before_mib": base / 2**20,
                  "peak_rss_mib": peak / 2**20, "rise_mib": (peak - base) / 2**20,
                  "median_rise_mib": (mid - base) / 2**20, "samples": len(samples),
                  "seconds": dt, "cpu_seconds": cpu, "input_mib": cube.nbytes / 2**20,
                  "graph_tasks": tasks}}))
"""


def memory_at(size: int, s: dict, tmp: str) -> dict:
    """Peak RSS rise of ``predict -> to_zarr`` in a fresh process, the cube read from Zarr.

    The cube is written to disk here first, so the child's starting RSS (taken once the model
    is made and the cube opened lazily) holds neither the raster nor its making.
    """
    src = os.path.join(tmp, f"mem-{size}.zarr")
    make_cube(size, s["chunks"]).to_zarr(src, mode="w")
    code = MEM_CHILD.format(
        bench=str(HERE), root=str(ROOT), settings=json.dumps(s), size=size, src=src
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def memory_scaling(s: dict, tmp: str, repeats: int = 2, areas=(1, 10, 100)) -> dict:
    """:func:`memory_at` at each area, ``repeats`` times interleaved (1x, 10x, 100x, 1x, ...).

    The peak of a sampled RSS is the largest of many short spikes (a chunk's model call), so it
    varies from run to run by several MiB on a shared machine: each run is kept, and each area's
    figures are the medians of its runs (with the smallest and largest rise beside them).
    """
    base = s["mem_base"]
    runs: dict[str, list] = {f"{k}x": [] for k in areas}
    for _ in range(repeats):
        for k in areas:
            runs[f"{k}x"].append(memory_at(int(round(base * k**0.5)), s, tmp))
    out: dict = {}
    for name, rs in runs.items():
        summary = {
            key: float(np.median([r[key] for r in rs]))
            for key in rs[0]
            if isinstance(rs[0][key], float)
        }
        summary.update(pixels=rs[0]["pixels"], graph_tasks=rs[0]["graph_tasks"], repeats=len(rs))
        summary["rise_mib_runs"] = [r["rise_mib"] for r in rs]
        summary["median_rise_mib_runs"] = [r["median_rise_mib"] for r in rs]
        summary["seconds_runs"] = [r["seconds"] for r in rs]
        out[name] = summary
    if "10x" in out and "100x" in out:
        out["rise_growth_10x_to_100x"] = out["100x"]["rise_mib"] / out["10x"]["rise_mib"] - 1
        out["rise_growth_10x_to_100x_per_repeat"] = [
            b / a - 1 for a, b in zip(out["10x"]["rise_mib_runs"], out["100x"]["rise_mib_runs"])
        ]
        out["median_rise_growth_10x_to_100x"] = (
            out["100x"]["median_rise_mib"] / out["10x"]["median_rise_mib"] - 1
        )
    return out


def _task_seconds(stream: list) -> dict:
    """Seconds summed per kind of task (key prefix) and action, from a distributed task stream."""
    from dask.utils import key_split

    out: dict = {}
    for t in stream:
        name = key_split(t["key"])
        for part in t.get("startstops", ()):
            out.setdefault(f"{name}:{part['action']}", 0.0)
            out[f"{name}:{part['action']}"] += part["stop"] - part["start"]
    return dict(sorted(out.items(), key=lambda kv: -kv[1])[:8])


def _cpu_seconds() -> float:
    return time.process_time()


def _worker_state() -> dict:
    """What a worker process looks like after a run (called through ``client.run``)."""
    import torch

    from miso_xr.infer import workers

    return {
        "torch_threads": torch.get_num_threads(),
        "model_loads": sum(workers.LOADS.values()),
        "mmap_threshold_raised": workers.tune_allocator(),
        "MALLOC_TRIM_THRESHOLD_": os.environ.get("MALLOC_TRIM_THRESHOLD_"),
    }


def two_worker_cluster():
    """The benchmarks' cluster: 2 worker processes of 1 thread, quiet, no dashboard."""
    import distributed

    return distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40
    )


def cluster_from_files(model, s: dict, tmp: str, *, repeats: int = 3) -> dict:
    """(c): predict -> to_zarr of a cube read lazily from a Zarr store: threads vs processes.

    Like with like: 2 compute threads in both, i.e. the threaded scheduler with 2 threads and
    torch on 1 thread, against 2 worker processes of 1 thread (torch 1 thread, the nanny's
    OMP_NUM_THREADS=1). Everything is warm (one untimed write each first: the model loaded, the
    first calls paid; those one-off seconds are reported apart). Two clusters run: one as
    miso_xr leaves its workers (the glibc mmap threshold raised,
    :func:`miso_xr.infer.workers.tune_allocator`) and one as dask's nanny starts them
    (``MISO_XR_TUNE_MALLOC=0``). The timed writes take turns (threads, cluster, untuned
    cluster, ``repeats`` rounds) so that a shared machine's load falls on all three alike; the
    best of each is reported, with the CPU seconds of every process involved.
    """
    import contextlib

    import dask
    import distributed
    import rioxarray  # noqa: F401 - registers .rio
    import torch
    import xarray as xr

    from miso_xr.infer.predict import predict
    from miso_xr.infer.workers import PrewarmModel, model_ref
    from miso_xr.io import to_zarr

    size, chunks = s["cluster_size"], s["cluster_chunks"]
    src = os.path.join(tmp, "cube.zarr")
    make_cube(size, chunks).to_zarr(src, mode="w")
    out: dict = {"pixels": size**2, "chunks": chunks, "repeats": repeats}

    def maps():
        cube = xr.open_zarr(src)
        if cube.rio.crs is None:  # the CRS coordinate read back as a plain variable
            cube = cube.rio.write_crs("EPSG:3338")
        return predict(cube, model)

    m = maps()
    graph = m.probability.data.__dask_graph__()
    out["graph_tasks"] = len(graph)
    import pickle

    out["graph_pickle_bytes"] = len(pickle.dumps(dict(graph)))
    out["model_file_bytes"] = os.path.getsize(model.source)

    def write(name: str, client=None) -> tuple[float, float]:
        """(seconds, CPU seconds of this process and of ``client``'s workers)."""

        def cpu() -> float:
            workers = sum(client.run(_cpu_seconds).values()) if client is not None else 0.0
            return _cpu_seconds() + workers

        c0 = cpu()
        t0 = time.perf_counter()
        to_zarr(maps(), os.path.join(tmp, name), progress=False, overwrite=True)
        dt = time.perf_counter() - t0
        return dt, cpu() - c0

    threads_before = torch.get_num_threads()
    env_before = os.environ.get("MISO_XR_TUNE_MALLOC")
    labels = {"threads": None, "cluster": "1", "cluster_untuned": "0"}
    runs: dict = {k: {} for k in labels}
    clients: dict = {}
    torch.set_num_threads(1)
    try:
        with contextlib.ExitStack() as stack:
            for label, tune in labels.items():
                if tune is None:
                    continue
                os.environ["MISO_XR_TUNE_MALLOC"] = tune  # the workers inherit it as they spawn
                t0 = time.perf_counter()
                cluster = stack.enter_context(two_worker_cluster())
                client = stack.enter_context(distributed.Client(cluster, set_as_default=False))
                runs[label]["start_seconds"] = time.perf_counter() - t0
                clients[label] = client
                t0 = time.perf_counter()
                client.register_plugin(PrewarmModel(model_ref(model)))
                runs[label]["prewarm_seconds"] = time.perf_counter() - t0

            def where(label: str):
                if label == "threads":
                    return dask.config.set(scheduler="threads", num_workers=2)
                return clients[label].as_current()

            for label in labels:
                with where(label):
                    runs[label]["first_write_seconds"] = write(f"{label}.zarr", clients.get(label))[
                        0
                    ]
            times: dict = {k: [] for k in labels}
            streams: dict = {}
            for _ in range(repeats):
                for label in labels:
                    with where(label), contextlib.ExitStack() as inner:
                        if label != "threads":
                            ts = inner.enter_context(distributed.get_task_stream(clients[label]))
                        times[label].append(write(f"{label}.zarr", clients.get(label)))
                    if label != "threads":
                        streams.setdefault(label, []).extend(ts.data)
            for label in labels:
                r = runs[label]
                r["all_seconds"] = [t for t, _ in times[label]]
                r["seconds"], r["cpu_seconds"] = min(times[label])
                if label != "threads":
                    r["task_seconds_per_write"] = {
                        k: v / repeats for k, v in _task_seconds(streams[label]).items()
                    }
                    r["workers"] = list(clients[label].run(_worker_state).values())
    finally:
        torch.set_num_threads(threads_before)
        if env_before is None:
            os.environ.pop("MISO_XR_TUNE_MALLOC", None)
        else:
            os.environ["MISO_XR_TUNE_MALLOC"] = env_before
    for label in labels:
        runs[label]["vs_threads"] = runs[label]["seconds"] / runs["threads"]["seconds"]
        runs[label]["cpu_vs_threads"] = runs[label]["cpu_seconds"] / runs["threads"]["cpu_seconds"]
    out.update(runs)
    return out


def main(argv: list[str] | None = None) -> dict:
    import torch

    from miso_xr.infer.predict import predict
    from miso_xr.infer.windows import WindowPlan
    from miso_xr.spec import default_stride

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", action="store_true", help="a quick run (small raster and model)")
    ap.add_argument("--no-cluster", action="store_true", help="skip the LocalCluster run")
    ap.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    ap.add_argument("--only-memory", action="store_true", help="only the memory subprocesses")
    ap.add_argument("--mem-repeats", type=int, default=2, help="memory: interleaved runs per area")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile (slow)")
    ap.add_argument("--repeats", type=int, default=3, help="(a): alternated runs, best kept")
    ap.add_argument(
        "--size",
        type=int,
        default=None,
        help="raster side in px (default 256, --small 128): on a small raster the windows "
        "straddling its edges are a large share of the work, more so at longer strides",
    )
    ap.add_argument("--out", default=str(HERE / "results" / "bench_predict.json"))
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    s = _settings(args.small)
    if args.size:
        s["size"] = args.size
    res: dict = {
        "command": "python benchmarks/bench_predict.py " + " ".join(argv or sys.argv[1:]),
        "settings": s,
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "loadavg_1min_at_start": os.getloadavg()[0],
        },
    }
    if args.only_memory:
        res["memory"] = memory_scaling(
            s, tempfile.mkdtemp(prefix="bench-predict-"), args.mem_repeats
        )
        res["machine"]["loadavg_1min_at_end"] = os.getloadavg()[0]
        _save(res, args.out)
        _print_memory(res)
        return res
    model = make_model(s)
    tmp = tempfile.mkdtemp(prefix="bench-predict-")
    model.save(os.path.join(tmp, "model.safetensors"))
    cube = make_cube(s["size"], s["chunks"])
    pixels = s["size"] ** 2

    naive = naive_flops_per_window(model, s)
    windows_only = counted_flops_per_window(model, s, dense=True, shared_prior=True)
    prior_px = prior_flops_per_pixel(model, s)

    def actual(stride: int) -> float:
        # a window's own work plus the prior of the stride^2 pixels each window accounts for
        return windows_only + prior_px * stride**2

    peak = matmul_peak()
    res["flops_per_window"] = {
        "naive_every_pixel": naive,
        "query_path": counted_flops_per_window(model, s, dense=False),
        "dense_path": counted_flops_per_window(model, s, dense=True),
        "dense_path_without_prior": windows_only,
        "location_prior_per_pixel": prior_px,
    }
    res["matmul_peak_flops"] = peak

    inputs, xs, ys = _inputs(1, s["window"])
    model.predict_windows(inputs, xs, ys)  # warm-up: first calls allocate
    # alternated, best of --repeats: a shared machine's load changes from one second to the next.
    # The new path on the default plan of new models (spec.default_stride) and on the other
    # plans (stride W/2 with Hann blending, 3W/4 with Tukey blending)
    default = default_stride(s["window"])
    others = {
        name: st
        for name, st in (
            ("new_path_stride_w2_hann", s["window"] // 2),
            ("new_path_stride_3w4", 3 * s["window"] // 4),
        )
        if st != default
    }
    t_old = t_new = c_old = c_new = float("inf")
    t_other = dict.fromkeys(others, float("inf"))
    c_other = dict.fromkeys(others, float("inf"))
    n_other = {}
    for _ in range(args.repeats):
        t, n_old, prob_old, c = bare_loop(cube, model, s, old=True)
        t_old, c_old = min(t_old, t), min(c_old, c)
        t, n_new, prob_new, c = bare_loop(cube, model, s, old=False, stride=default)
        t_new, c_new = min(t_new, t), min(c_new, c)
        for name, st in others.items():
            t, n_other[name], _, c = bare_loop(cube, model, s, old=False, stride=st)
            t_other[name], c_other[name] = min(t_other[name], t), min(c_other[name], c)
    # the same in CPU seconds, against the peak per CPU-second: what a shared machine's wall
    # clock hides (the process gets a varying share of the cores)
    peak_cpu = matmul_peak(cpu=True)
    res["matmul_peak_flops_per_cpu_s"] = peak_cpu
    res["a_cpu"] = {
        name: {
            "cpu_seconds": c,
            "pixels_per_cpu_s": pixels / c,
            "speedup_vs_old": c_old / c,
            "effective_utilisation": naive * n_old / c / peak_cpu,
            "actual_utilisation": flops * n / c / peak_cpu,
        }
        for name, c, n, flops in (
            ("old_path", c_old, n_old, res["flops_per_window"]["query_path"]),
            ("new_path", c_new, n_new, actual(default)),
            *((name, c_other[name], n_other[name], actual(st)) for name, st in others.items()),
        )
    }
    res["a_old_path"] = {
        "stride": s["stride"],
        "blending": WindowPlan(
            s["window"], s["stride"], sigma=s["window"] * OLD_SIGMA_FRACTION
        ).blend,
        "seconds": t_old,
        "windows": n_old,
        "pixels_per_s": pixels / t_old,
        "repeats": args.repeats,
    }
    for key, stride, t, n in (
        ("a_new_path", default, t_new, n_new),
        *(("a_" + name, st, t_other[name], n_other[name]) for name, st in others.items()),
    ):
        res[key] = {
            "stride": stride,
            "blending": WindowPlan(s["window"], stride).blend,
            "seconds": t,
            "windows": n,
            "pixels_per_s": pixels / t,
            "speedup_vs_old": t_old / t,
            "effective_utilisation": naive * n_old / t / peak,
            "actual_utilisation": actual(stride) * n / t / peak,
        }
    res["a_other_plans"] = ["a_" + name for name in others]
    res["a_old_path"]["effective_utilisation"] = naive * n_old / t_old / peak
    res["a_old_path"]["actual_utilisation"] = (
        res["flops_per_window"]["query_path"] * n_old / t_old / peak
    )
    res["variants"] = variants(model, s, compile_too=args.compile)
    _save(res, args.out)

    maps = predict(cube, model, stride=default)
    maps.probability.values  # noqa: B018 - warm-up: loads the model into this process's cache
    t0 = time.perf_counter()
    prob_b = maps.probability.values
    t_b = time.perf_counter() - t0
    res["b_threads"] = {
        "seconds": t_b,
        "pixels_per_s": pixels / t_b,
        "chunks": len(cube.chunks["y"]) * len(cube.chunks["x"]),
        "overhead_vs_bare_new": t_b / t_new,
        "max_abs_diff_vs_bare_new": float(np.nanmax(np.abs(prob_b[1] - prob_new[1]))),
    }
    if not args.no_cluster:
        res["c_files"] = cluster_from_files(model, s, tmp)
        _save(res, args.out)
    res["d_random_forest"] = bench_rf(cube, s)
    _save(res, args.out)
    if not args.no_memory:
        res["memory"] = memory_scaling(s, tmp, args.mem_repeats)
    best = max(res["a_new_path"]["pixels_per_s"], res["b_threads"]["pixels_per_s"])
    res["alaska_10m"] = {
        "pixels": ALASKA_PIXELS,
        "hours_at_best_rate_here": ALASKA_PIXELS / best / 3600,
        "hours_old_path_rate": ALASKA_PIXELS / res["a_old_path"]["pixels_per_s"] / 3600,
        "hours_random_forest": ALASKA_PIXELS
        / res["d_random_forest"]["predict_pixels_per_s"]
        / 3600,
        "note": "linear projection from this machine; divide by the number of equal workers",
    }
    res["machine"]["loadavg_1min_at_end"] = os.getloadavg()[0]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2, default=float))
    _print_table(res)
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


def _save(res: dict, out: str) -> None:
    """Write what is measured so far (a long run that fails keeps its first sections)."""
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(res, indent=2, default=float))


def _print_table(res: dict) -> None:
    print(
        f"machine: {res['machine']['cpus']} CPUs, torch threads {res['machine']['torch_threads']} "
        f"(OMP_WAIT_POLICY {res['machine'].get('omp_wait_policy')}), "
        f"load {res['machine']['loadavg_1min_at_start']:.1f} -> "
        f"{res['machine']['loadavg_1min_at_end']:.1f} (shared: compare ratios)"
    )
    f = res["flops_per_window"]
    print(
        f"FLOPs/window: naive every-pixel {f['naive_every_pixel']:.3g}, query path "
        f"{f['query_path']:.3g}, dense path {f['dense_path']:.3g}; matmul peak "
        f"{res['matmul_peak_flops']:.3g} FLOP/s"
    )
    print(
        f"{'run':30s} {'stride, blending':>24s} {'seconds':>9s} {'pixels/s':>10s} "
        f"{'eff. util':>9s} {'act. util':>9s}"
    )
    others = res["a_other_plans"]
    for key, name in (
        ("a_old_path", "(a) old path, bare"),
        ("a_new_path", "(a) new path, default plan"),
        *((key, "(a) new path, other plan") for key in others),
    ):
        r = res[key]
        plan = f"{r['stride']} {r['blending']}"
        print(
            f"{name:30s} {plan:>24s} {r['seconds']:9.2f} {r['pixels_per_s']:10.0f} "
            f"{100 * r['effective_utilisation']:8.1f}% {100 * r['actual_utilisation']:8.1f}%"
        )
    print(
        f"new / old pixels per second: {res['a_new_path']['speedup_vs_old']:.2f}x (default plan, "
        f"stride {res['a_new_path']['stride']}); "
        + "; ".join(f"{res[k]['speedup_vs_old']:.2f}x (stride {res[k]['stride']})" for k in others)
    )
    print(f"the same in CPU seconds (peak {res['matmul_peak_flops_per_cpu_s']:.3g} FLOP/cpu-s):")
    print(f"{'run':30s} {'cpu s':>9s} {'px/cpu-s':>10s} {'eff. util':>9s} {'act. util':>9s}")
    for key, r in res["a_cpu"].items():
        print(
            f"{'(a) ' + key.replace('_', ' '):30s} {r['cpu_seconds']:9.2f} "
            f"{r['pixels_per_cpu_s']:10.0f} {100 * r['effective_utilisation']:8.1f}% "
            f"{100 * r['actual_utilisation']:8.1f}%  x{r['speedup_vs_old']:.2f}"
        )
    b = res["b_threads"]
    print(
        f"{'(b) predict, threads':30s} {b['seconds']:9.2f} {b['pixels_per_s']:10.0f}  "
        f"overhead vs bare new path {b['overhead_vs_bare_new']:.2f}"
    )
    v = res["variants"]
    print(
        "model call per window: eager {:.3g} s, channels-last {:.3g} s, torch.compile {} "
        "-> fastest: {}".format(
            v["eager_s_per_window"],
            v["channels_last_s_per_window"],
            f"{v['compile_s_per_window']:.3g} s"
            if "compile_s_per_window" in v
            else v.get("compile_error", "n/a"),
            v["fastest"],
        )
    )
    if "c_files" in res:
        c = res["c_files"]
        print(
            f"(c) predict->to_zarr, cube read from Zarr ({c['pixels']:.3g} px, chunks "
            f"{c['chunks']}; graph {c['graph_tasks']} tasks, {c['graph_pickle_bytes'] / 1e3:.0f} kB"
            f" for a {c['model_file_bytes'] / 1e6:.2f} MB model); 2 compute threads each, warm, "
            f"best of {c['repeats']} taking turns:"
        )
        print(f"    {'run':40s} {'seconds':>8s} {'x threads':>9s} {'CPU s':>7s} {'x threads':>9s}")
        for key, name in (
            ("threads", "threads (2 threads, torch 1 thread)"),
            ("cluster", "LocalCluster 2 procs x 1 thread"),
            ("cluster_untuned", "  same, mmap threshold left frozen"),
        ):
            r = c[key]
            print(
                f"    {name:40s} {r['seconds']:8.2f} {r['vs_threads']:9.2f} "
                f"{r['cpu_seconds']:7.2f} {r['cpu_vs_threads']:9.2f}"
            )
        r = c["cluster"]
        print(
            f"    one-off: cluster start {r['start_seconds']:.1f} s, prewarm (torch import, model "
            f"load, one window) {r['prewarm_seconds']:.1f} s, first write "
            f"{r['first_write_seconds']:.1f} s (threads: {c['threads']['first_write_seconds']:.1f}"
            f" s); model loads per worker {[w['model_loads'] for w in r['workers']]}; task "
            "seconds per write:"
        )
        for k, sec in r["task_seconds_per_write"].items():
            print(f"    {k:50s} {sec:8.2f} s")
    d = res["d_random_forest"]
    print(
        f"(d) RF via predict {d['predict_pixels_per_s']:.0f} px/s, plain map_blocks "
        f"{d['plain_pixels_per_s']:.0f} px/s (x{d['overhead_vs_plain']:.2f})"
    )
    if "memory" in res:
        _print_memory(res)
    al = res["alaska_10m"]
    print(
        f"Alaska at 10 m (1.7e10 px), one process here: {al['hours_at_best_rate_here']:.3g} h "
        f"(old path {al['hours_old_path_rate']:.3g} h); RF {al['hours_random_forest']:.3g} h"
    )


def _print_memory(res: dict) -> None:
    mem = res["memory"]
    for k, m in mem.items():
        if isinstance(m, dict):
            runs = ", ".join(f"{r:.1f}" for r in m["rise_mib_runs"])
            print(
                f"memory {k}: {m['pixels']:.3g} px, input {m['input_mib']:.0f} MiB, RSS "
                f"before {m['rss_before_mib']:.0f} MiB, peak rise {m['rise_mib']:.1f} MiB "
                f"(runs {runs}), median rise {m['median_rise_mib']:.1f} MiB, "
                f"{m['seconds']:.1f} s ({m['cpu_seconds']:.1f} CPU s)"
            )
    if "rise_growth_10x_to_100x" in mem:
        each = ", ".join(f"{100 * g:+.1f}" for g in mem["rise_growth_10x_to_100x_per_repeat"])
        print(
            f"peak RSS rise, 10x -> 100x: {100 * mem['rise_growth_10x_to_100x']:+.1f} % of the "
            f"medians (each repeat: {each} %); median RSS rise "
            f"{100 * mem['median_rise_growth_10x_to_100x']:+.1f} %"
        )


if __name__ == "__main__":
    main()
