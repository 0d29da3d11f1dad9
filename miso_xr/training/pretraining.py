"""Self-supervised pretraining of MISO's encoders on unlabelled crops of a whole cube.

An RF sees only the pixel under each labelled point; MISO can learn from every pixel of the cube,
labelled or not. :func:`pretrain` trains the encoders, implicit decoders, the fused-visual mapper
and the location encoder with no label at all:

- the paper's cross-modal contrast: satellite <-> covariates and fused visual <-> location
  (:func:`miso_xr.model.losses.contrastive_losses`);
- a single-modality **view contrast** (beyond the paper): every crop is seen through two
  windows shifted against each other; the fused embedding of a ground point in one view must
  match the same point's embedding in the other view, against the same slot of the other crops.
  It needs only one modality, so a covariates-only cube gains too.

Crops are drawn afresh every epoch from the whole cube (or ``region`` boxes) and read lazily:
only those crops. The result is a checkpoint of kind ``"backbone"`` (bands, input encoding,
normalisation, grid, CRS, resolution and what it saw) for ``miso_xr.train(backbone=...)`` and
the hub. Runs are seeded; an interrupted run resumes from its last finished epoch.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from .._progress import show_progress
from ..cube.grid import Grid, select_modalities
from ..exceptions import InputError
from ..spec import ModelSpec, default_stride
from .batches import draw_unlabelled, location_xy, query_tensor
from .points import autocast, pick_device
from .setup import band_stats, categorical_bands, spec_extra

__all__ = ["Backbone", "pretrain"]


@dataclass(frozen=True)
class Backbone:
    """A pretrained backbone checkpoint: pass it (or its path) to ``train(backbone=...)``.

    ``os.fspath(backbone)`` is the file, so it works wherever a path does (the hub's
    ``publish``, ``miso-xr train --backbone``).
    """

    path: Path
    sha256: str
    summary: dict[str, Any]

    def __fspath__(self) -> str:
        return str(self.path)


def _run_key(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


def pretrain(
    cube: xr.Dataset,
    *,
    config: Any = "tiny",
    modalities: Sequence[str] | None = None,
    epochs: int = 10,
    crops_per_epoch: int = 256,
    region: Sequence[tuple[float, float, float, float]] | None = None,
    window: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    weight_decay: float | None = None,
    location: bool = True,
    view_weight: float = 1.0,
    out: str | os.PathLike[str] | None = None,
    resume: bool = True,
    seed: int = 0,
    device: str = "auto",
    progress: bool | None = None,
) -> Backbone:
    """Pretrain MISO's encoders on unlabelled crops of ``cube``; returns the backbone file.

    Parameters
    ----------
    cube
        A MISO cube, as large as you like: only the drawn crops are read (lazily).
    config
        ``"micro"``, ``"tiny"``, ``"base"`` or a :class:`~miso_xr.model.config.MisoConfig`; train
        with the same one.
    modalities
        Image modalities to pretrain (default: all of the cube's).
    epochs, crops_per_epoch
        Epochs, and fresh crops drawn per epoch.
    region
        ``(xmin, ymin, xmax, ymax)`` boxes in the cube's CRS to draw crops from (default: the
        whole cube).
    window, batch_size, lr, weight_decay
        Crop side in pixels (default ``config.crop``; each crop is read with a quarter-window
        margin for the shifted second view) and AdamW settings (default the config's).
    location
        Pretrain the location encoder with the visual <-> location contrast.
    view_weight
        Weight of the single-modality view contrast (the cross-modal pairs weigh 1).
    out
        Where to write the backbone (``.safetensors``); default
        ``<miso_xr cache>/backbones/pretrain-<run key>.safetensors``.
    resume
        Continue an interrupted run with the same settings from its last finished epoch
        (``<out>.resume.safetensors``, removed when the run completes).
    seed
        Seeds initialisation, crops and views: the same seed gives the same backbone on CPU.
    device
        ``"auto"`` (CUDA when present, with mixed precision), ``"cpu"`` or ``"cuda[:i]"``.
    progress
        Show a tqdm progress bar over epochs; default: in a terminal or notebook, not in logs.

    Returns
    -------
    Backbone
        ``path`` (the checkpoint), ``sha256`` and ``summary`` (losses per epoch, what it saw).

    Examples
    --------
    >>> backbone = miso_xr.pretrain(cube, config="tiny", epochs=20)  # doctest: +SKIP
    >>> model = miso_xr.train(cube, obs, config="tiny", backbone=backbone)  # doctest: +SKIP
    """
    import torch
    from tqdm.auto import tqdm

    from ..checkpoint import read_checkpoint, sha256_file, write_checkpoint
    from ..model.inputs import Preparation, encoding_for
    from ..model.losses import contrastive_losses, info_nce
    from ..model.net import MisoNet
    from .loop import _check_window, _resolve_config

    t0 = time.perf_counter()
    cfg = _resolve_config(config)
    mods = select_modalities(cube, modalities)
    grid = Grid.from_dataset(cube)
    window = int(cfg.crop if window is None else window)
    _check_window(window, cfg, grid)
    margin = window // 4
    if window + 2 * margin > min(grid.height, grid.width):
        raise InputError(
            f"window={window} px plus its {margin} px view margin does not fit the cube "
            f"({grid.height} x {grid.width} px); use a smaller window"
        )
    batch_size = int(cfg.batch_size if batch_size is None else batch_size)
    lr = float(cfg.lr if lr is None else lr)
    weight_decay = float(cfg.weight_decay if weight_decay is None else weight_decay)
    if epochs < 1 or crops_per_epoch < 2 or batch_size < 2 or not lr > 0:
        raise InputError(
            f"epochs={epochs}, crops_per_epoch={crops_per_epoch}, batch_size={batch_size}, "
            f"lr={lr}: need epochs >= 1, at least 2 crops and a batch of 2 (contrast needs "
            "negatives), lr > 0"
        )
    satellite = "optical" in mods or "sar" in mods
    if not (location or (satellite and "covariates" in mods) or view_weight > 0):
        raise InputError(
            "nothing to pretrain: with location=False, a single modality and view_weight=0 "
            "there is no objective"
        )
    settings = {
        "config": cfg.to_dict(),
        "modalities": list(mods),
        "grid": [grid.crs, grid.left, grid.top, grid.resolution, grid.width, grid.height],
        "epochs": epochs,
        "crops_per_epoch": crops_per_epoch,
        "region": [list(b) for b in region] if region else None,
        "window": window,
        "batch_size": batch_size,
        "lr": lr,
        "weight_decay": weight_decay,
        "location": bool(location),
        "view_weight": view_weight,
        "seed": seed,
    }
    key = _run_key(settings)
    if out is None:
        from ..hub import get_cache_dir

        out = get_cache_dir() / "backbones" / f"pretrain-{key[:16]}.safetensors"
    out = Path(out)
    if out.suffix != ".safetensors":
        raise InputError(f"out={str(out)!r} must end in .safetensors")
    out.parent.mkdir(parents=True, exist_ok=True)
    state_path = out.with_name(out.stem + ".resume.safetensors")
    dev = pick_device(device)
    rng = np.random.default_rng(seed)

    # input encoding and normalisation from a first sample of crops (the same for every epoch)
    first = draw_unlabelled(
        cube, crops_per_epoch, window=window + 2 * margin, modalities=mods, rng=rng, boxes=region
    )
    if first is None:
        raise InputError(
            "no crop of the cube (or of region=) is at least half data; pretraining needs data"
        )
    bands = first.bands
    encoding = encoding_for(
        bands,
        categorical=categorical_bands(cube, mods),
        samples={m: [first.arrays[m]] for m in mods},
    )
    stats = {m: band_stats([encoding.apply(m, bands[m], first.arrays[m])]) for m in mods}
    spec = ModelSpec(
        kind="backbone",
        task="pretrain",
        classes=(),
        modalities=tuple((m, tuple(bands[m])) for m in mods),
        window=window,
        stride=default_stride(window),
        resolution=float(grid.resolution),
        crs=grid.crs,
        normalisation=tuple((m, stats[m]) for m in sorted(mods)),
        location=False,
        extra=spec_extra(grid, encoding),
    )
    prepare = Preparation(spec)
    widths = prepare.widths()

    cuda_ids = (
        [dev.index if dev.index is not None else torch.cuda.current_device()]
        if dev.type == "cuda"
        else []
    )
    history: list[dict[str, float]] = []
    start_epoch = 0
    with torch.random.fork_rng(devices=cuda_ids):
        torch.manual_seed(seed)
        # a "task" head exists in MisoNet but is not trained here and not saved
        net = MisoNet(cfg, widths, num_outputs=1, location=location)
        params = [p for n, p in net.named_parameters() if not n.startswith("head.")]
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
        steps = max(1, math.ceil(crops_per_epoch / batch_size))
        total = epochs * steps

        def lr_factor(step: int) -> float:
            warm = steps  # one epoch of warm-up
            if step < warm:
                return (step + 1) / warm
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
        if resume and state_path.exists():
            tensors, info = read_checkpoint(state_path)
            saved = dict(info.training)
            if saved.get("run_key") == key:
                net.load_state_dict(
                    {
                        k[4:]: torch.from_numpy(np.ascontiguousarray(v))
                        for k, v in tensors.items()
                        if k.startswith("net.")
                    }
                )
                opt_state = json.loads(saved["optimizer"])
                opt_state["state"] = {
                    int(i): {
                        n: torch.from_numpy(np.ascontiguousarray(tensors[f"opt.{i}.{n}"]))
                        if f"opt.{i}.{n}" in tensors
                        else torch.tensor(v)
                        for n, v in s.items()
                    }
                    for i, s in opt_state["state"].items()
                }
                opt.load_state_dict(opt_state)
                sched.load_state_dict(saved["scheduler"])
                rng.bit_generator.state = saved["rng"]
                torch.set_rng_state(torch.from_numpy(tensors["torch_rng"]))
                start_epoch = int(saved["epoch"])
                history = list(saved["history"])
        net.to(dev)
        bar = tqdm(
            range(start_epoch, epochs),
            initial=start_epoch,
            total=epochs,
            desc="pretrain MISO",
            unit="epoch",
            disable=not show_progress(progress),
        )
        for epoch in bar:
            net.train()
            crops = (
                first
                if epoch == 0
                else draw_unlabelled(
                    cube,
                    crops_per_epoch,
                    window=window + 2 * margin,
                    modalities=mods,
                    rng=rng,
                    boxes=region,
                )
            )
            n = len(crops)
            order = rng.permutation(n)
            sums: dict[str, float] = {}
            for s in range(steps):
                idx = order[s * batch_size : (s + 1) * batch_size]
                if idx.size < 2:
                    continue
                batch = _views(crops, idx, window, margin, cfg, rng, prepare)
                loss = None
                parts: dict[str, Any] = {}
                with autocast(dev):
                    a_img = {m: torch.from_numpy(v).to(dev) for m, v in batch["a"].items()}
                    b_img = {m: torch.from_numpy(v).to(dev) for m, v in batch["b"].items()}
                    qa = torch.from_numpy(batch["qa"]).to(dev)
                    qb = torch.from_numpy(batch["qb"]).to(dev)
                    loc = torch.from_numpy(batch["loc"]).to(dev) if location else None
                    out_a = net(a_img, qa, loc)
                    parts.update(contrastive_losses(out_a.embeddings, temperature=cfg.temperature))
                    if view_weight > 0:
                        out_b = net(b_img, qb, None)
                        parts["view"] = view_weight * info_nce(
                            out_a.embeddings["visual"],
                            out_b.embeddings["visual"],
                            cfg.temperature,
                        )
                for v in parts.values():
                    loss = v if loss is None else loss + v
                assert loss is not None
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip:
                    torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                opt.step()
                sched.step()
                for k, v in parts.items():
                    sums[k] = sums.get(k, 0.0) + float(v.detach())
                sums["loss"] = sums.get("loss", 0.0) + float(loss.detach())
            rec = {k: v / steps for k, v in sums.items()}
            rec["epoch"] = epoch + 1
            rec["crops"] = n
            history.append(rec)
            bar.set_postfix(loss=f"{rec.get('loss', float('nan')):.3f}")
            if epoch + 1 < epochs:
                _save_state(state_path, net, opt, sched, rng, epoch + 1, history, key, spec, cfg)
        bar.close()
    net.to("cpu").eval()
    summary = {
        "objective": "contrastive"
        + (" + view" if view_weight > 0 else "")
        + (" + location" if location else ""),
        "modalities": {m: list(b) for m, b in spec.modalities},
        "grid": settings["grid"],
        "region": settings["region"],
        "crops_seen": int(sum(h["crops"] for h in history)),
        "epochs": epochs,
        "window": window,
        "history": history,
        "seed": seed,
        "run_key": key,
        "device": str(dev),
        "config": cfg.name,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    tensors = {
        k: v.detach().to("cpu", torch.float32).numpy().copy()
        for k, v in net.state_dict().items()
        if not k.startswith("head.")
    }
    net_info = {"bands": widths, "num_outputs": 0, "location": bool(location)}
    digest = write_checkpoint(
        out, tensors, spec=spec, config={**cfg.to_dict(), "net": net_info}, training=summary
    )
    state_path.unlink(missing_ok=True)
    return Backbone(path=out, sha256=digest if digest else sha256_file(out), summary=summary)


def _views(
    crops: Any,
    idx: np.ndarray,
    window: int,
    margin: int,
    cfg: Any,
    rng: np.random.Generator,
    prepare: Any,
) -> dict[str, Any]:
    """Two shifted windows of each crop and queries at the same ground points in both."""
    b = idx.size
    nq = cfg.query_random + cfg.query_grid**2 + 1 + cfg.query_fillers
    oa = rng.integers(0, 2 * margin + 1, size=(b, 2))
    ob = rng.integers(0, 2 * margin + 1, size=(b, 2))
    mods = list(crops.arrays)
    a = {m: np.empty((b, crops.arrays[m].shape[1], window, window), "float32") for m in mods}
    bb = {m: np.empty_like(a[m]) for m in mods}
    for j, i in enumerate(idx.tolist()):
        for m in mods:
            a[m][j] = crops.arrays[m][
                i, :, oa[j, 0] : oa[j, 0] + window, oa[j, 1] : oa[j, 1] + window
            ]
            bb[m][j] = crops.arrays[m][
                i, :, ob[j, 0] : ob[j, 0] + window, ob[j, 1] : ob[j, 1] + window
            ]
    # ground points inside both windows: crop-pixel units of the larger crop
    lo = np.maximum(oa, ob).astype("float64")
    hi = np.minimum(oa, ob).astype("float64") + window
    pts = lo[:, None, :] + rng.uniform(0, 1, size=(b, nq, 2)) * (hi - lo)[:, None, :]
    rca = pts - oa[:, None, :]
    rcb = pts - ob[:, None, :]
    row0 = crops.row0[idx] + oa[:, 0]
    col0 = crops.col0[idx] + oa[:, 1]
    return {
        "a": {m: prepare(m, a[m]) for m in mods},
        "b": {m: prepare(m, bb[m]) for m in mods},
        "qa": query_tensor(rca, window),
        "qb": query_tensor(rcb, window),
        "loc": location_xy(crops.grid, row0, col0, rca),
    }


def _save_state(
    path: Path,
    net: Any,
    opt: Any,
    sched: Any,
    rng: np.random.Generator,
    epoch: int,
    history: list[dict[str, float]],
    key: str,
    spec: ModelSpec,
    cfg: Any,
) -> None:
    """Everything needed to continue after ``epoch``, written atomically."""
    import torch

    from ..checkpoint import write_checkpoint

    tensors = {f"net.{k}": v.detach().cpu().numpy().copy() for k, v in net.state_dict().items()}
    state = opt.state_dict()
    scalars: dict[str, dict[str, dict[str, Any]]] = {
        "state": {},
        "param_groups": state["param_groups"],
    }
    for i, s in state["state"].items():
        scalars["state"][str(i)] = {}
        for n, v in s.items():
            if torch.is_tensor(v) and v.ndim > 0:
                tensors[f"opt.{i}.{n}"] = v.detach().cpu().numpy().copy()
                scalars["state"][str(i)][n] = None
            else:
                scalars["state"][str(i)][n] = float(v)
    tensors["torch_rng"] = torch.get_rng_state().numpy().copy()
    training = {
        "run_key": key,
        "epoch": epoch,
        "history": history,
        "optimizer": json.dumps(scalars),
        "scheduler": sched.state_dict(),
        "rng": rng.bit_generator.state,
    }
    write_checkpoint(path, tensors, spec=spec, config=cfg.to_dict(), training=training)
