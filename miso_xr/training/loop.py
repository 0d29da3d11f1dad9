"""Train MISO on sparse field observations, as the paper does.

The training set is a few hundred or thousand labelled points, not dense label maps. Each point
gives one crop of every modality (read lazily, see :mod:`miso_xr.training.crops`), shifted at random
each epoch so the point is not always at the crop centre, and queried at 51 continuous positions
(:mod:`miso_xr.training.batches`). Half of every batch is unlabelled crops drawn afresh each epoch
from anywhere on the cube: they feed only the contrastive losses.

Losses (:func:`miso_xr.model.losses.miso_loss`): classification on labelled queries, plus 0.1 x
each symmetric InfoNCE pair (satellite <-> covariates, fused visual <-> location), negatives from
the other crops at the same query slot. Location never enters the prediction unless asked for
(``location="prior"``, a departure from the paper).

A validation set is held out from the training observations by whole spatial clusters
(:func:`miso_xr.training.setup.plan_validation`); early stopping watches its loss (or, with
``select_on="val_balanced_accuracy"``, its balanced accuracy) and the best weights are restored.
Where no validation set is possible, the summary and the progress bar say that the weights are
chosen on the training loss. Any test set must be removed from ``obs`` by the caller (see
``miso_xr.spatial_folds``).

torch is imported inside the functions here; ``miso_xr.training`` imports this module lazily.
"""

from __future__ import annotations

import copy
import hashlib
import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from .._progress import show_progress
from ..cube.grid import Grid, select_modalities
from ..exceptions import InputError, ObservationError
from ..spec import TASK_CLASSES, ModelSpec, default_stride
from .batches import LabelledPoints, QueryScheme, assemble, draw_unlabelled
from .crops import extract_crops
from .features import on_crs
from .points import (
    attach_predict_points,
    autocast,
    pick_device,
    predict_crops,
    predict_points,
)
from .provenance import points_record
from .setup import (
    band_stats,
    categorical_bands,
    check_obs,
    plan_validation,
    resolve_task,
    spec_extra,
    validation_split,
)

__all__ = ["TASK_CLASSES", "predict_points", "train", "validation_split"]

LOCATION_MODES = ("contrastive", "prior", "off")
# what may choose the kept epoch (train's select_on)
SELECT_ON = ("val_loss", "val_balanced_accuracy")


def _resolve_config(config: Any) -> Any:
    from ..model.config import MisoConfig

    if isinstance(config, (str, MisoConfig)):
        return MisoConfig.named(config)
    raise InputError(f"config={config!r}: expected 'tiny', 'base' or a miso_xr.MisoConfig instance")


def _location_mode(location: Any) -> str:
    if location is True:
        return "contrastive"
    if location is False or location is None:
        return "off"
    if location in LOCATION_MODES:
        return str(location)
    raise InputError(
        f"location={location!r}: expected 'contrastive' (the paper: a contrastive regulariser, "
        "never in the prediction), 'prior' (adds location logits: a departure) or 'off'"
    )


def _has_contrastive(mods: Sequence[str], location: str) -> bool:
    """Whether :func:`miso_xr.model.losses.miso_loss` has a contrastive term for these inputs."""
    satellite = "optical" in mods or "sar" in mods
    return (satellite and "covariates" in mods) or location != "off"


def _check_window(window: int, cfg: Any, grid: Grid) -> None:
    if window < cfg.reduction or window % cfg.reduction:
        raise InputError(
            f"window={window} px: the {cfg.name!r} encoders need a multiple of {cfg.reduction} "
            f"px (patch_size x 2**(stages-1)), e.g. "
            f"{max(1, round(window / cfg.reduction)) * cfg.reduction}"
        )
    if window > min(grid.height, grid.width):
        raise InputError(
            f"window={window} px is larger than the cube ({grid.height} x {grid.width} "
            f"px); use window <= {min(grid.height, grid.width)}"
        )


def train(
    cube: xr.Dataset,
    obs: pd.DataFrame,
    *,
    task: str | None = None,
    config: Any = "tiny",
    modalities: Sequence[str] | None = None,
    location: str | bool = "contrastive",
    backbone: Any = None,
    freeze_epochs: int = 0,
    window: int | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    weight_decay: float | None = None,
    warmup: float | None = None,
    grad_clip: float | None = None,
    val_fraction: float = 0.15,
    val_obs: pd.DataFrame | None = None,
    val_distance: float | None = None,
    patience: int | None = 5,
    select_on: str = "val_loss",
    fillers: int | None = None,
    n_random: int | None = None,
    grid: int | None = None,
    unlabelled: float = 0.5,
    unlabelled_boxes: Sequence[tuple[float, float, float, float]] | None = None,
    contrastive_weight: float | None = None,
    max_shift: int | None = None,
    seed: int = 0,
    device: str = "auto",
    progress: bool | None = None,
) -> Any:
    """Train a MISO model on sparse labelled points of a cube.

    Parameters
    ----------
    cube
        A MISO cube (lazy is fine: only crops around the points and the unlabelled crops are
        read). Bands listed in ``cube[m].attrs["categorical"]`` are one-hot encoded; ``aspect``
        becomes northness/eastness.
    obs
        Observations table (``miso_xr.read_observations``): ``x``, ``y`` in the cube's CRS and a
        Categorical ``label`` whose categories are the classes in model order. Rows with NaN label
        only label nothing; rows outside the cube are dropped (counted in the summary).
    task
        Task name; default ``obs.attrs["task"]``. ``"permafrost"`` and ``"soil_order"`` check the
        classes against the built-in ones.
    config
        ``"micro"``, ``"tiny"``, ``"base"`` or a :class:`~miso_xr.model.config.MisoConfig`.
    modalities
        Image modalities to use, in this order (default: all of the cube's).
    location
        ``"contrastive"`` (default, the paper): a location encoder regularises the fused visual
        embedding through InfoNCE and never enters the prediction, so a map does not change when
        the same pixels are moved. ``"prior"``: also add location logits to the prediction (a
        departure from the paper: a learned spatial prior that can memorise field points).
        ``"off"``: no location at all. ``True``/``False`` mean ``"contrastive"``/``"off"``.
    backbone
        Pretrained encoders: a hub name, path or URL of a backbone checkpoint (a
        SatlasPretrain-layout Swin-v2-B for the optical encoder, or one written by
        :func:`miso_xr.pretrain`). Default ``None``: every weight from scratch.
    freeze_epochs
        Keep the pretrained encoders frozen for this many first epochs.
    window
        Crop side in pixels (default ``config.crop``; a multiple of ``config.reduction`` that
        fits in the cube).
    epochs, batch_size, lr, weight_decay
        AdamW settings; unset ones come from the config (``"base"`` is the paper's: 40 epochs,
        batch 32, lr 5e-5, weight decay 0.01). ``batch_size`` counts labelled and unlabelled
        crops together.
    warmup, grad_clip
        Linear warm-up in epochs (may be fractional) before a cosine decay to 0 (default
        ``config.warmup_epochs``); gradient-norm clip (default ``config.grad_clip``; 0: none).
    val_fraction, val_obs, val_distance
        Validation: ``val_obs`` if given, else ``val_fraction`` of the labelled points drawn by
        whole spatial clusters (points closer than ``val_distance``; by default the crop extent,
        halved until a validation set remains: see the summary's ``validation``).
    patience
        Epochs without a better validation score before stopping (None: never stop early).
    select_on
        What chooses the epoch whose weights are kept (and what ``patience`` watches):
        ``"val_loss"`` (default, the lowest validation loss) or ``"val_balanced_accuracy"`` (the
        highest validation balanced accuracy at the class-probability argmax; among equal ones,
        the lowest validation loss). Without a validation set the training loss chooses.
    fillers, n_random, grid
        Queries per crop besides the labelled point (default the config's: the paper's 4, 10
        and 6, i.e. 51 queries per crop).
    unlabelled
        Share of each batch that is unlabelled crops drawn afresh every epoch (paper: 0.5); they
        feed only the contrastive losses (0 when the inputs have none).
    unlabelled_boxes
        ``(xmin, ymin, xmax, ymax)`` boxes in the cube's CRS to draw unlabelled crops from
        (default: the whole cube).
    contrastive_weight
        Weight of each contrastive pair (default the config's, the paper's 0.1).
    max_shift
        Largest random shift (pixels) of a crop around its point; default ``window // 4``.
    seed
        Seeds initialisation, shifts, queries, unlabelled crops and batch order: on CPU the same
        seed gives bit-identical weights.
    device
        ``"auto"`` (CUDA when present, with mixed precision), ``"cpu"`` or ``"cuda[:i]"``.
    progress
        Show a tqdm progress bar over epochs; default: in a terminal or notebook, not in logs
        (:func:`miso_xr._progress.show_progress`).

    Returns
    -------
    MisoModel
        With its :class:`~miso_xr.spec.ModelSpec` (classes, bands, input encoding,
        normalisation, window, CRS) and ``training`` summary; ``model.predict_points(cube, obs)``
        gives ``(N, K)`` probabilities at points.

    Examples
    --------
    >>> import miso_xr
    >>> scene = miso_xr.make_scene(size=128)  # doctest: +SKIP
    >>> model = miso_xr.train(scene.cube, scene.observations, config="tiny", epochs=3)  # doctest: +SKIP
    >>> model.save("perm.safetensors")  # doctest: +SKIP
    """
    import torch
    from tqdm.auto import tqdm

    from ..model.losses import miso_loss
    from ..model.miso import MisoModel
    from ..model.net import MisoNet
    from .backbone import apply_backbone, resolve_backbone

    t_start = time.perf_counter()
    obs = check_obs(obs)
    task, classes = resolve_task(obs, task)
    mods = select_modalities(cube, modalities)
    gridspec = Grid.from_dataset(cube)
    obs = on_crs(obs, gridspec.crs)  # observations in another CRS: projected onto the cube
    cfg = _resolve_config(config)
    loc_mode = _location_mode(location)
    window = int(cfg.crop if window is None else window)
    _check_window(window, cfg, gridspec)
    # unset training settings come from the config (tiny: from scratch; base: the paper's)
    epochs = int(cfg.epochs if epochs is None else epochs)
    batch_size = int(cfg.batch_size if batch_size is None else batch_size)
    lr = float(cfg.lr if lr is None else lr)
    weight_decay = float(cfg.weight_decay if weight_decay is None else weight_decay)
    warmup = float(cfg.warmup_epochs if warmup is None else warmup)
    grad_clip = cfg.grad_clip if grad_clip is None else grad_clip
    scheme = QueryScheme(
        int(cfg.query_fillers if fillers is None else fillers),
        int(cfg.query_random if n_random is None else n_random),
        int(cfg.query_grid if grid is None else grid),
        window,
    )
    contrastive_weight = float(
        cfg.contrastive_weight if contrastive_weight is None else contrastive_weight
    )
    if select_on not in SELECT_ON:
        raise InputError(f"select_on={select_on!r}: expected one of {', '.join(SELECT_ON)}")
    if epochs < 1 or batch_size < 1 or not lr > 0:
        raise InputError(f"epochs={epochs}, batch_size={batch_size}, lr={lr}: all must be positive")
    if min(scheme.fillers, scheme.random, scheme.grid) < 0:
        raise InputError(
            f"fillers={scheme.fillers}, n_random={scheme.random}, grid={scheme.grid}: must be >= 0"
        )
    if not 0 <= unlabelled < 1:
        raise InputError(f"unlabelled={unlabelled!r}: the unlabelled share of a batch is in [0, 1)")
    if freeze_epochs < 0 or (freeze_epochs and backbone is None):
        raise InputError(
            f"freeze_epochs={freeze_epochs}: needs backbone= and must be >= 0 (it freezes the "
            "pretrained encoders for the first epochs)"
        )
    max_shift = int(window // 4 if max_shift is None else max_shift)
    if not 0 <= max_shift < window // 2:
        raise InputError(
            f"max_shift={max_shift}: must be in [0, {window // 2 - 1}] so the labelled point "
            "stays inside its crop"
        )
    pretrained = resolve_backbone(backbone, cfg=cfg, modalities=mods)
    dev = pick_device(device)
    k = len(classes)
    res = gridspec.resolution

    # labelled points inside the cube
    lab = obs[obs["label"].notna()]
    inside = gridspec.contains(lab["x"].to_numpy(), lab["y"].to_numpy())
    n_outside = int((~inside).sum())
    lab = lab[inside]
    if len(lab) == 0:
        raise ObservationError(
            f"none of the {n_outside} labelled observations falls inside the cube (bounds "
            f"{gridspec.bounds} in {gridspec.crs}); are x/y in the cube's CRS?"
        )
    codes = lab["label"].cat.codes.to_numpy().astype("int64")
    lx, ly = lab["x"].to_numpy("float64"), lab["y"].to_numpy("float64")

    if val_obs is not None:
        val_obs = check_obs(val_obs, "val_obs")
        vclasses = tuple(str(c) for c in val_obs["label"].cat.categories)
        if vclasses != classes:
            raise ObservationError(
                f"val_obs classes {list(vclasses)} differ from obs classes {list(classes)}"
            )
        val_obs = on_crs(val_obs, gridspec.crs)
        vl = val_obs[val_obs["label"].notna()]
        vl = vl[gridspec.contains(vl["x"].to_numpy(), vl["y"].to_numpy())]
        tr_idx = np.arange(len(lab))
        vx, vy = vl["x"].to_numpy("float64"), vl["y"].to_numpy("float64")
        vcodes = vl["label"].cat.codes.to_numpy().astype("int64")
        val_index = list(vl.index)
        validation = "val_obs"
    else:
        plan = plan_validation(
            lx,
            ly,
            fraction=val_fraction,
            distance=val_distance,
            preferred=(window + 2 * max_shift) * res,
            resolution=res,
            seed=seed,
        )
        tr_idx, va_idx = plan.train_idx, plan.val_idx
        vx, vy, vcodes = lx[va_idx], ly[va_idx], codes[va_idx]
        val_index = list(lab.index[va_idx])
        validation = plan.description
    tx, ty, tcodes = lx[tr_idx], ly[tr_idx], codes[tr_idx]
    n_tr = tx.size

    rng = np.random.default_rng(seed)
    lab_crops = extract_crops(cube, tx, ty, window=window, margin=max_shift, modalities=mods)
    val_crops = extract_crops(cube, vx, vy, window=window, modalities=mods) if vx.size else None
    bands = lab_crops.bands
    if pretrained is not None:
        pretrained.check_bands(bands)
    if not _has_contrastive(mods, loc_mode):
        unlabelled = 0.0  # unlabelled crops feed only contrastive terms, and these inputs have none
    n_lab_batch = max(1, round(batch_size * (1 - unlabelled)))
    n_unl_batch = batch_size - n_lab_batch if unlabelled else 0
    steps_per_epoch = max(1, math.ceil(n_tr / n_lab_batch))
    n_unl_epoch = n_unl_batch * steps_per_epoch

    def draw(epoch_rng: np.random.Generator) -> Any:
        return draw_unlabelled(
            cube,
            n_unl_epoch,
            window=window,
            modalities=mods,
            rng=epoch_rng,
            boxes=unlabelled_boxes,
        )

    unl_crops = draw(rng) if n_unl_epoch else None
    # input encoding and normalisation from the training crops (labelled and unlabelled)
    spec, enc_desc = _build_spec(
        task=task,
        classes=classes,
        mods=mods,
        bands=bands,
        cube=cube,
        arrays=[lab_crops.arrays] + ([unl_crops.arrays] if unl_crops is not None else []),
        pretrained=pretrained,
        window=window,
        grid=gridspec,
        location=loc_mode == "prior",
    )
    points = LabelledPoints.build(gridspec, tx, ty, tcodes, reach=window + max_shift)

    total_steps = epochs * steps_per_epoch
    warm = int(round(warmup * steps_per_epoch))

    def lr_factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        t = (step - warm) / max(1, total_steps - warm)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))

    n_out = 1 if k == 2 else k
    history: list[dict[str, float]] = []
    # "score" ranks the epochs (lower is better); its last item is the watched loss
    best: dict[str, Any] = {
        "score": (math.inf,),
        "epoch": 0,
        "state": None,
        "metrics": {},
    }
    use_scaler = dev.type == "cuda" and not torch.cuda.is_bf16_supported()
    cuda_ids = (
        [dev.index if dev.index is not None else torch.cuda.current_device()]
        if dev.type == "cuda"
        else []
    )
    from ..model.inputs import InputEncoding

    encoding = InputEncoding.from_extra(spec.extra)
    widths = {m: len(encoding.features(m, bands[m])) for m in mods}
    with torch.random.fork_rng(devices=cuda_ids):
        torch.manual_seed(seed)
        net = MisoNet(
            cfg,
            bands=widths,
            num_outputs=n_out,
            location=loc_mode != "off",
            location_prior=loc_mode == "prior",
        )
        load_report = apply_backbone(net, pretrained)
        model = MisoModel(net, spec, cfg, {})  # the trainee: prepare() and validation use it
        net.to(dev)
        opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
        scaler = torch.amp.GradScaler("cuda") if use_scaler else None
        watch_name = select_on if val_crops is not None else "training loss"
        # a manual bar: one iterated over counts an epoch only when the next starts, so a run
        # stopped early would end a step short
        bar = tqdm(
            total=epochs,
            desc=f"train MISO (best by {watch_name})",
            unit="epoch",
            disable=not show_progress(progress),
        )
        stale = 0
        frozen = _freeze(net, pretrained, freeze_epochs > 0)
        for epoch in range(epochs):
            if frozen and epoch >= freeze_epochs:
                frozen = _freeze(net, pretrained, False)
            net.train()
            order = rng.permutation(n_tr)
            if epoch and n_unl_epoch:
                unl_crops = draw(rng)  # fresh unlabelled crops every epoch
            n_unl_have = 0 if unl_crops is None else len(unl_crops)
            unl_order = rng.permutation(n_unl_have)
            sums = {"loss": 0.0, "supervised": 0.0, "contrastive": 0.0}
            n_labelled_q = 0
            n_crops = 0
            for s in range(steps_per_epoch):
                items = order[s * n_lab_batch : (s + 1) * n_lab_batch]
                unl_items = unl_order[s * n_unl_batch : (s + 1) * n_unl_batch]
                if items.size == 0:
                    continue
                batch = assemble(
                    labelled=lab_crops,
                    items=items,
                    unlabelled=unl_crops,
                    unl_items=unl_items,
                    points=points,
                    scheme=scheme,
                    max_shift=max_shift,
                    rng=rng,
                    prepare=model.prepare,
                )
                images = {m: torch.from_numpy(v).to(dev) for m, v in batch["images"].items()}
                qry = torch.from_numpy(batch["query"]).to(dev)
                loc = torch.from_numpy(batch["location"]).to(dev) if loc_mode != "off" else None
                labels = torch.from_numpy(batch["labels"]).to(dev)
                with autocast(dev):
                    out = net(images, qry, loc)
                loss, parts = miso_loss(
                    out,
                    labels,
                    binary=k == 2,
                    contrastive_weight=contrastive_weight,
                    temperature=cfg.temperature,
                )
                sup = parts["supervised"]
                con = sum((v for n, v in parts.items() if n != "supervised"), start=sup * 0.0)
                opt.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.unscale_(opt)
                else:
                    loss.backward()
                if grad_clip:
                    torch.nn.utils.clip_grad_norm_(net.parameters(), grad_clip)
                if scaler is not None:
                    scaler.step(opt)
                    scaler.update()
                else:
                    opt.step()
                sched.step()
                sums["loss"] += float(loss.detach())
                sums["supervised"] += float(sup.detach())
                sums["contrastive"] += float(con.detach())
                n_labelled_q += int((labels[: items.size] >= 0).sum())
                n_crops += items.size
            rec: dict[str, float] = {key: v / steps_per_epoch for key, v in sums.items()}
            rec["epoch"] = epoch + 1
            rec["labelled_queries_per_crop"] = n_labelled_q / max(1, n_crops)
            rec["unlabelled_crops"] = n_unl_have
            if val_crops is not None:
                rec.update(_validate(model, val_crops, vcodes, dev, batch_size))
            history.append(rec)
            bar.set_postfix(
                loss=f"{rec['loss']:.3f}",
                **({"val": f"{rec['val_loss']:.3f}"} if "val_loss" in rec else {}),
                refresh=False,
            )
            bar.update(1)
            watch = rec.get("val_loss", rec["loss"])
            score = _selection_score(rec, watch_name, watch)
            if score < best["score"]:
                best = {
                    "score": score,
                    "epoch": epoch + 1,
                    "state": copy.deepcopy(net.state_dict()),
                    "metrics": {kk: v for kk, v in rec.items() if kk.startswith("val_")},
                }
                stale = 0
            else:
                stale += 1
                if patience is not None and val_crops is not None and stale >= patience:
                    bar.set_description(  # why the bar ends short of `epochs`
                        f"train MISO (stopped early; best {watch_name} at epoch {best['epoch']})"
                    )
                    break
        bar.close()
        if best["state"] is not None:
            net.load_state_dict(best["state"])
    net.eval()
    net.to("cpu")

    counts = np.bincount(tcodes, minlength=k)
    summary = {
        "task": task,
        "n_points": int(n_tr),
        "class_counts": {c: int(v) for c, v in zip(classes, counts)},
        "n_validation": int(vx.size),
        "validation": validation,
        "chosen_on": watch_name,
        "validation_index_sha256": hashlib.sha256(
            ",".join(map(str, sorted(map(str, val_index)))).encode()
        ).hexdigest(),
        "validation_index": [str(v) for v in val_index] if len(val_index) <= 2000 else None,
        "n_outside_cube": n_outside,
        # every labelled point that shaped the model (validation chose the epoch): evaluate
        # scores this model only away from them
        "points": points_record(np.r_[lx, vx], np.r_[ly, vy], gridspec.crs)
        if val_obs is not None
        else points_record(lx, ly, gridspec.crs),
        "n_unlabelled_tiles": int(n_unl_epoch),
        "unlabelled_share": float(unlabelled),
        "queries_per_crop": scheme.per_crop,
        "location": loc_mode,
        "backbone": None if pretrained is None else pretrained.describe(),
        "backbone_load": load_report,
        "freeze_epochs": int(freeze_epochs),
        "inputs": enc_desc,
        "epochs": len(history),
        "epochs_asked": epochs,
        "best_epoch": int(best["epoch"]),
        "best_loss": float(best["score"][-1]),
        **{kk: float(v) for kk, v in best["metrics"].items()},
        "history": history,
        "batch_size": batch_size,
        "lr": lr,
        "weight_decay": weight_decay,
        "contrastive_weight": contrastive_weight,
        "max_shift": max_shift,
        "seed": seed,
        "device": str(dev),
        "config": cfg.name,
        "seconds": round(time.perf_counter() - t_start, 3),
    }
    model.training = summary
    model.device = torch.device("cpu")
    return attach_predict_points(model)


def _build_spec(
    *,
    task: str,
    classes: tuple[str, ...],
    mods: Sequence[str],
    bands: dict[str, tuple[str, ...]],
    cube: xr.Dataset,
    arrays: list[dict[str, np.ndarray]],
    pretrained: Any,
    window: int,
    grid: Grid,
    location: bool,
) -> tuple[ModelSpec, dict[str, Any]]:
    """The spec: input encoding (circular, one-hot) and per-feature normalisation."""
    from ..model.inputs import describe, encoding_for
    from .setup import satlas_normalisation

    if pretrained is not None and pretrained.encoding is not None:
        encoding = pretrained.encoding  # the features a pretrained backbone learnt from
    else:
        encoding = encoding_for(
            bands,
            categorical=categorical_bands(cube, mods),
            samples={m: [a[m] for a in arrays] for m in mods},
        )
    stats = {}
    for m in mods:
        fixed = None if pretrained is None else pretrained.normalisation.get(m)
        if fixed is not None:
            stats[m] = fixed
        elif pretrained is not None and pretrained.layout == "satlas" and m == "optical":
            stats[m] = satlas_normalisation(encoding.features(m, bands[m]))
        else:
            stats[m] = band_stats([encoding.apply(m, bands[m], a[m]) for a in arrays])
    spec = ModelSpec(
        kind="miso",
        task=task,
        classes=classes,
        modalities=tuple((m, tuple(bands[m])) for m in mods),
        window=window,
        stride=default_stride(window),
        resolution=float(grid.resolution),
        crs=grid.crs,
        # sorted by name: the spec's JSON sorts keys, so this order survives a checkpoint
        normalisation=tuple((m, stats[m]) for m in sorted(mods)),
        location=bool(location),
        extra=spec_extra(grid, encoding),
    )
    return spec, describe(encoding)


def _freeze(net: Any, pretrained: Any, frozen: bool) -> bool:
    """(Un)freeze the encoders a backbone provided; returns whether they are frozen now."""
    if pretrained is None:
        return False
    for m in pretrained.modalities:
        if m in net.encoders:
            for p in net.encoders[m].parameters():
                p.requires_grad_(not frozen)
    return frozen


def _selection_score(rec: dict[str, float], watch_name: str, watch: float) -> tuple[float, ...]:
    """The epoch's rank for selection (lower is better): the watched loss, or for balanced
    accuracy its negative with the validation loss breaking ties (a few dozen validation
    points give many equal accuracies)."""
    if watch_name == "val_balanced_accuracy":
        return (-rec["val_balanced_accuracy"], watch)
    return (watch,)


def _validate(
    model: Any, crops: Any, codes: np.ndarray, dev: Any, batch_size: int
) -> dict[str, float]:
    """Validation loss and accuracies at the centre query of centred crops."""
    import torch

    from ..model.losses import supervised_loss

    k = len(model.spec.classes)
    centre = crops.size // 2 + 0.5
    p = predict_crops(
        model, crops, np.full((len(crops), 2), centre), batch_size=batch_size, device=dev
    )
    p = np.clip(p.astype("float64"), 1e-7, 1 - 1e-7)
    if k == 2:
        logit = torch.from_numpy(np.log(p[:, 1:2] / p[:, 0:1]))
    else:
        logit = torch.from_numpy(np.log(p))
    loss = float(supervised_loss(logit, torch.from_numpy(codes), binary=k == 2))
    pred = p.argmax(1)
    recalls = [float((pred[codes == j] == j).mean()) for j in range(k) if (codes == j).any()]
    return {
        "val_loss": loss,
        "val_accuracy": float((pred == codes).mean()),
        "val_balanced_accuracy": float(np.mean(recalls)),
    }
