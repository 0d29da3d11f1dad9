"""Parameters and forward FLOPs of the MISO configurations per 256 x 256 crop.

Counts run on torch's ``meta`` device (shapes only), so the base model costs no compute. FLOPs
are torch.utils.flop_counter.FlopCounterMode's count (a multiply-add = 2 FLOPs) of one forward
pass of a crop with optical (9 bands) + covariates (6 bands) + location: with the training query
count (1 + 10 random + 6 x 6 grid = 47 points) and with every pixel queried (dense prediction).

Run: ``python benchmarks/bench_model_size.py`` -> a table, and benchmarks/results/model_size.json.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from miso_xr.model import MisoConfig, MisoNet, count_parameters, flops_per_crop

BANDS = {"optical": 9, "covariates": 6}
CROP = 256


def measure(name: str) -> dict:
    cfg = MisoConfig.named(name)
    with torch.device("meta"):
        net = MisoNet(cfg, BANDS, 1, location=True)
    parts = {
        "encoder_optical": count_parameters(net.encoders["optical"]),
        "encoder_covariates": count_parameters(net.encoders["covariates"]),
        "liif": sum(count_parameters(m) for m in net.implicit.values()),
        "location": count_parameters(net.location) + count_parameters(net.location_head),
    }
    t0 = time.perf_counter()
    train_flops = flops_per_crop(cfg, bands=BANDS, crop=CROP)
    dense_flops = flops_per_crop(cfg, bands=BANDS, crop=CROP, queries=CROP * CROP)
    encoder_flops = flops_per_crop(cfg, bands=BANDS, crop=CROP, queries=1)
    native_flops = flops_per_crop(cfg, bands=BANDS, crop=cfg.crop)
    return {
        "config": name,
        "params": count_parameters(net),
        "params_parts": parts,
        "crop_px": CROP,
        "queries_train": cfg.queries_per_crop,
        "gflops_train_crop": train_flops / 1e9,
        "gflops_dense_crop": dense_flops / 1e9,
        "gflops_encoders_only": encoder_flops / 1e9,
        "native_crop_px": cfg.crop,
        "gflops_train_native_crop": native_flops / 1e9,
        "mflops_per_dense_query": (dense_flops - encoder_flops) / (CROP * CROP - 1) / 1e6,
        "count_seconds": round(time.perf_counter() - t0, 2),
    }


def main() -> None:
    rows = [measure(n) for n in ("tiny", "base")]
    head = f"{'config':<6} {'params':>12} {'GFLOPs train crop':>18} {'GFLOPs dense crop':>18} {'MFLOPs/query':>13} {'GFLOPs own crop':>16}"
    print(f"MISO, optical(9)+covariates(6)+location, {CROP}x{CROP} crop")
    print(head)
    for r in rows:
        print(
            f"{r['config']:<6} {r['params']:>12,} {r['gflops_train_crop']:>18.2f} "
            f"{r['gflops_dense_crop']:>18.1f} {r['mflops_per_dense_query']:>13.3f} "
            f"{r['gflops_train_native_crop']:>10.2f} @{r['native_crop_px']}px"
        )
    out = Path(__file__).parent / "results" / "model_size.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"torch": torch.__version__, "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
