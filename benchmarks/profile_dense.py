"""Where one batch of windows spends its time: encoders, each LIIF stage, heads, location.

CPU time (``time.process_time``, one torch thread, best of a few runs) per window for each part
of the dense path, and the whole model call on the old path (pixel centres queried as points,
8 windows a call) and on the new one (dense decode, the automatic CPU batch, and all the windows
in one call). CPU time, not wall time,
so the split stays readable on a shared machine. The LIIF stages run in cache-sized blocks (the
default on CPU, :func:`miso_xr.model.liif.block_points`) and, for comparison, in blocks of
``1 << 17`` points.

    python benchmarks/profile_dense.py            # the bench's --small settings (micro)
    python benchmarks/profile_dense.py --tiny     # its default settings (tiny, 64 px)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))


def main(argv: list[str] | None = None) -> dict:
    import bench_predict as bp
    import torch

    from miso_xr.infer.batching import auto_batch_size

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tiny", action="store_true", help="bench_predict's default settings")
    ap.add_argument("--windows", type=int, default=32)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    s = bp._settings(not args.tiny)
    model = bp.make_model(s)
    net, n, win = model.net, args.windows, s["window"]
    inputs, xs, ys = bp._inputs(n, win)

    def ms(fn, repeats: int = 3) -> float:
        fn()
        best = float("inf")
        for _ in range(repeats):
            t0 = time.process_time()
            fn()
            best = min(best, time.process_time() - t0)
        return 1e3 * best / n

    rows: dict[str, float] = {}
    big: dict[str, float] = {}  # the LIIF stages in blocks of 1 << 17 points (before)
    images = {m: torch.from_numpy(model.prepare(m, inputs[m])) for m, _ in model.spec.modalities}
    with torch.no_grad():
        feats = net.encode(images)
        rows["encoders (Swin v2)"] = ms(lambda: net.encode(images))
        for m, stages in feats.items():
            liif = net.implicit[m]
            for i, (stage, f) in enumerate(zip(liif.stages, stages)):
                h, w = f.shape[-2:]
                cell = (w / win, h / win)
                rows[f"LIIF {m} stage {i} ({h}x{w} cells)"] = ms(
                    lambda st=stage, f=f, cell=cell: st.dense(f, win, win, cell=cell)
                )
                big[f"{m} stage {i}"] = ms(
                    lambda st=stage, f=f, cell=cell: st.dense(
                        f, win, win, cell=cell, max_points=1 << 17
                    )
                )
            emb = liif.dense(stages)
            rows[f"projection MLP {m}"] = ms(lambda m=m, e=emb: net.project[m](e))
        e = torch.zeros(n, win * win, net.config.width)
        rows["fusion MLP (visual)"] = ms(lambda: net.visual(e))
        rows["head"] = ms(lambda: net.head(e))
        if net.has_location:
            loc = torch.zeros(n, win * win, 2, dtype=torch.float64)
            rows["location encoder (prior)"] = ms(lambda: net.location(loc))
    parts = sum(rows.values())
    old = ms(lambda: model.predict_windows(inputs, xs, ys, dense=False, batch_size=8))
    auto = auto_batch_size(model, win, "cpu")
    new = ms(lambda: model.predict_windows(inputs, xs, ys, batch_size=auto))
    one_call = ms(lambda: model.predict_windows(inputs, xs, ys, batch_size=n))
    print(f"{s['config']} model, {win} px windows, {n} windows a call, 1 thread, CPU ms per window")
    for name, v in rows.items():
        print(f"  {name:40s} {v:8.3f}  {100 * v / one_call:5.1f} %")
    print(f"  {'sum of the parts':40s} {parts:8.3f}")
    cache = sum(v for k, v in rows.items() if k.startswith("LIIF"))
    print(
        f"LIIF stages: cache-sized blocks {cache:8.3f}, blocks of 1 << 17 points "
        f"{sum(big.values()):8.3f}   ratio {sum(big.values()) / cache:.2f}x"
    )
    print(f"model call, new path (dense, {n} a call)   {one_call:8.3f}")
    print(f"model call, new path (dense, {auto} a call)    {new:8.3f}")
    print(f"model call, old path (queries, 8 a call)   {old:8.3f}   old / new {old / new:.2f}x")
    return {
        "parts_ms": rows,
        "liif_big_blocks_ms": big,
        "new_ms": new,
        "new_one_call_ms": one_call,
        "old_ms": old,
    }


if __name__ == "__main__":
    main()
