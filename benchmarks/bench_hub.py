"""What the hub's safety costs: sha256 on every load from the cache, against the model load itself.

For real MISO checkpoints (the ``tiny`` configuration, and ``base`` = two Swin-v2-B encoders as in
the paper unless ``--quick``) published to a directory hub served over loopback HTTP:

- ``cold``: ``hub.fetch(name)`` into an empty cache (download, sha256 + size + header checks,
  atomic move);
- ``warm``: ``miso_xr.load(name)`` from the cache (index read, sha256 again, model rebuilt);
- ``sha256``: hashing the cached file alone; ``model load``: ``load_checkpoint`` given the hash
  (tensors read + model built, no hashing); ``hash share`` = sha256 / (sha256 + model load).

Times are medians of ``--repeat`` runs with the file in the page cache (the common case on a
worker that loads the model once). Prints a table, then the JSON written to
``benchmarks/results/bench_hub.json``.

Run: ``.venv/bin/python benchmarks/bench_hub.py [--quick] [--repeat 3]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
from miso_xr.cube.grid import OPTICAL_BANDS as OPTICAL  # noqa: E402
from miso_xr.cube.terrain import TERRAIN_BANDS as COVARIATES  # noqa: E402


def _median_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_config(config: str, work: Path, url_root: str, repeat: int) -> dict[str, Any]:
    from miso_xr import hub
    from miso_xr.checkpoint import load_checkpoint, sha256_file
    from miso_xr.model.miso import MisoModel
    from miso_xr.spec import ModelSpec, Normalisation

    spec = ModelSpec(
        kind="miso",
        task="permafrost",
        classes=("absent", "present"),
        modalities=(("optical", OPTICAL), ("covariates", COVARIATES)),
        window=64,
        stride=32,
        resolution=10.0,
        crs="EPSG:3338",
        normalisation=(
            ("covariates", Normalisation((0.0,) * len(COVARIATES), (1.0,) * len(COVARIATES))),
            ("optical", Normalisation((0.0,) * len(OPTICAL), (1.0,) * len(OPTICAL))),
        ),
    )
    ckpt = work / f"{config}.safetensors"
    model = MisoModel.create(spec, config, seed=0)
    params = model.num_parameters if isinstance(model.num_parameters, int) else None
    if params is None:
        params = model.num_parameters()
    model.save(ckpt)
    del model
    hub.publish(ckpt, work / "www" / "hub", name=f"miso-{config}", version="1",
                licence="MIT", description=f"benchmark {config}")  # fmt: skip
    hub_url = f"{url_root}/hub"
    cache = work / f"cache-{config}"
    name = f"miso-{config}@1"

    t0 = time.perf_counter()
    path = hub.fetch(name, hub=hub_url, cache_dir=cache)
    cold = time.perf_counter() - t0
    warm = _median_time(lambda: hub.load(name, hub=hub_url, cache_dir=cache), repeat)
    sha = _median_time(lambda: sha256_file(path), repeat)
    digest = sha256_file(path)
    load = _median_time(lambda: load_checkpoint(path, sha256=digest), repeat)
    size = path.stat().st_size
    return {
        "config": config,
        "parameters": params,
        "size_mb": round(size / 1e6, 1),
        "cold_fetch_s": round(cold, 3),
        "warm_load_s": round(warm, 3),
        "sha256_s": round(sha, 3),
        "sha256_mb_per_s": round(size / 1e6 / sha, 0),
        "model_load_s": round(load, 3),
        "hash_share": round(sha / (sha + load), 3),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny configuration only")
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)
    from miso_xr.datasets.serving import range_server

    configs = ["tiny"] if args.quick else ["tiny", "base"]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_hub_") as tmp:
        work = Path(tmp)
        with range_server(work / "www") as server:
            for config in configs:
                print(f"... {config}", file=sys.stderr, flush=True)
                rows.append(bench_config(config, work, server.url, args.repeat))
    cols = [
        ("config", "config", "{}"),
        ("parameters", "params", "{:,}"),
        ("size_mb", "MB", "{:.1f}"),
        ("cold_fetch_s", "cold fetch s", "{:.3f}"),
        ("warm_load_s", "warm load s", "{:.3f}"),
        ("sha256_s", "sha256 s", "{:.3f}"),
        ("sha256_mb_per_s", "sha256 MB/s", "{:.0f}"),
        ("model_load_s", "model load s", "{:.3f}"),
        ("hash_share", "hash share", "{:.1%}"),
    ]
    table = [[h for _, h, _ in cols]] + [[f.format(r[k]) for k, _, f in cols] for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(cols))]
    for i, row in enumerate(table):
        print("  ".join(c.rjust(w) for c, w in zip(row, widths)))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    result = {
        "benchmark": "bench_hub",
        "cpu_count": os.cpu_count(),
        "repeat": args.repeat,
        "rows": rows,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bench_hub.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
