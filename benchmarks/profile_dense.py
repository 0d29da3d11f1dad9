"""Where one batch of windows spends its time: encoders, each LIIF stage, the layers after.

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
    import numpy as np
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
                rows[f"LIIF {m} stage {i} ({h}x{w} cells), blend"] = ms(
                    lambda st=stage, f=f, cell=cell: st.blend_dense(f, win, win, cell=cell)
                )
                big[f"{m} stage {i}"] = ms(
                    lambda st=stage, f=f, cell=cell: st.blend_dense(
                        f, win, win, cell=cell, max_points=1 << 17
                    )
                )
        # everything after the blends, per pixel in cache-sized blocks: the whole inference
        # decode less its blends (each stage's last layer and norm, projections, fusion, head)
        prior = None
        if net.location_prior:
            prior = torch.zeros(n, win * win, net.num_outputs)
        blends = sum(v for k, v in rows.items() if k.startswith("LIIF"))
        decode = ms(lambda: net.dense_logits(feats, None, images, prior))
        rows["per-pixel layers after the blend, in blocks"] = decode - blends
        whole = {}
        for m in feats:
            emb = net.implicit[m].dense(feats[m])
            whole[m] = ms(lambda m=m, e=emb: net.project[m](e))
        if net.location_prior:
            grid = 250_000 + 10.0 * np.arange(win)
            rows["location prior, once per pixel"] = ms(
                lambda: [model.location_prior(grid, grid + 1.4e6) for _ in range(n)]
            )
    parts = sum(rows.values())
    old = ms(lambda: model.predict_windows(inputs, xs, ys, dense=False, batch_size=8))
    auto = auto_batch_size(model, win, "cpu")
    new = ms(lambda: model.predict_windows(inputs, xs, ys, batch_size=auto))
    one_call = ms(lambda: model.predict_windows(inputs, xs, ys, batch_size=n))
    print(f"{s['config']} model, {win} px windows, {n} windows a call, 1 thread, CPU ms per window")
    for name, v in rows.items():
        print(f"  {name:45s} {v:8.3f}  {100 * v / one_call:5.1f} %")
    print(f"  {'sum of the parts':45s} {parts:8.3f}")
    for m, v in whole.items():
        print(f"  (projection MLP {m} over whole windows, as before: {v:.3f})")
    cache = sum(v for k, v in rows.items() if k.startswith("LIIF"))
    print(
        f"LIIF blends: cache-sized blocks {cache:8.3f}, blocks of 1 << 17 points "
        f"{sum(big.values()):8.3f}   ratio {sum(big.values()) / cache:.2f}x"
    )
    print(f"model call, new path (dense, {n} a call)   {one_call:8.3f}")
    print(f"model call, new path (dense, {auto} a call)    {new:8.3f}")
    print(f"model call, old path (queries, 8 a call)   {old:8.3f}   old / new {old / new:.2f}x")
    return {
        "parts_ms": rows,
        "liif_big_blocks_ms": big,
        "projection_whole_windows_ms": whole,
        "new_ms": new,
        "new_one_call_ms": one_call,
        "old_ms": old,
    }


if __name__ == "__main__":
    main()
