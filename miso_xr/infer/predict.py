"""Dense, lazy, seamless maps of a model over a cube: ``cube.miso.predict(model)``.

How it works
------------
The cube's modalities are stacked into one ``(band, y, x)`` Dask array in the model's band order (one
blockwise task per chunk). One task per chunk then cuts a halo of neighbouring pixels (NaN beyond the
grid) just wide enough for every window of the global lattice (:mod:`miso_xr.infer.windows`) that
touches the chunk from its 8 neighbouring chunks (:mod:`miso_xr.infer.halo`: one lazy layer, so the
graph of a statewide cube builds in constant time and a few of its chunks compute alone), fetches
the model from its process cache (:mod:`miso_xr.infer.workers`), runs the lattice's windows in
batches, blends them (a Hann or Tukey weight by default,
:class:`~miso_xr.infer.windows.WindowPlan`) and keeps the chunk's own pixels.
Because windows sit on the grid's lattice, not the chunk's, the maps do not depend on the chunking
(up to float rounding, well below 1e-5).

Nothing is computed by :func:`predict`: every Dask call is given ``meta=`` so the model never runs on
the client, and the graph carries only a small :class:`~miso_xr.infer.workers.ModelRef`.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

from ..cube.grid import Grid, band_dim
from ..exceptions import IncompatibleCubeError, InputError, MissingBandError, RechunkWarning
from ..spec import CLASS_DIM
from .batching import auto_batch_size
from .halo import map_halo
from .windows import WindowPlan, blend_windows, window_cells
from .workers import (
    ModelRef,
    device_lock,
    get_model,
    model_ref,
    resolve_device,
    task_threads,
)

__all__ = ["MissingCubeBandError", "OUTPUTS", "check_cube", "predict"]

OUTPUTS = ("probability", "label", "uncertainty")
_MC_LOCK = (
    threading.Lock()
)  # dropout is switched on model-wide; MC passes of one process take turns


class MissingCubeBandError(MissingBandError, IncompatibleCubeError):
    """The cube lacks a modality or band the model needs (catch either parent class)."""


def check_cube(cube: xr.Dataset, spec: Any) -> None:
    """Raise if ``cube`` does not carry what a model with ``spec`` needs.

    Checks modalities, band names, the ``(<modality>_band, y, x)`` layout, the resolution and the CRS.

    Raises
    ------
    MissingCubeBandError
        (a :class:`~miso_xr.exceptions.MissingBandError` and an
        :class:`~miso_xr.exceptions.IncompatibleCubeError`) naming the missing modality or bands.
    IncompatibleCubeError
        For a resolution or CRS other than the checkpoint's.

    Examples
    --------
    >>> check_cube(cube, model.spec)     # doctest: +SKIP
    Traceback (most recent call last):
    MissingCubeBandError: cube has no band 'B11' in 'optical'; the checkpoint needs B04 B03 ...
    """
    if not isinstance(cube, xr.Dataset):
        raise InputError(
            f"cube is a {type(cube).__name__}; predict needs an xr.Dataset with one variable per "
            "modality (see miso_xr.open_stac / open_rasters / make_cube)"
        )
    for mod, bands in spec.modalities:
        if mod not in cube.data_vars:
            raise MissingCubeBandError(
                f"cube has no modality {mod!r}; the checkpoint needs {_names(m for m, _ in spec.modalities)} "
                f"(the cube has {_names(map(str, cube.data_vars)) or 'no variables'})"
            )
        dim = band_dim(mod)
        var = cube[mod]
        if var.ndim != 3 or var.dims[1:] != ("y", "x") or var.dims[0] != dim:
            raise IncompatibleCubeError(
                f"cube[{mod!r}] has dims {var.dims}; a MISO cube has ({dim!r}, 'y', 'x')"
            )
        have = [str(b) for b in var[dim].values] if dim in var.coords else []
        missing = [b for b in bands if b not in have]
        if missing:
            which = "band " + repr(missing[0]) if len(missing) == 1 else "bands " + _names(missing)
            raise MissingCubeBandError(
                f"cube has no {which} in {mod!r}; the checkpoint needs {_names(bands)} "
                f"(the cube has {_names(have) or 'no band coordinate'})"
            )
    grid = Grid.from_dataset(cube)
    if not np.isclose(grid.resolution, spec.resolution, rtol=1e-6):
        raise IncompatibleCubeError(
            f"cube resolution is {grid.resolution:g} CRS units; the checkpoint was trained at "
            f"{spec.resolution:g}: build the cube at resolution={spec.resolution:g}"
        )
    if not _same_crs(grid.crs, spec.crs):
        raise IncompatibleCubeError(
            f"cube CRS is {grid.crs}; the checkpoint was trained in {spec.crs}: build the cube with "
            f"crs={spec.crs!r} (or reproject it with cube.rio.reproject)"
        )


def _names(items: Any) -> str:
    return " ".join(str(i) for i in items)


def _same_crs(a: str, b: str) -> bool:
    if a == b:
        return True
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    try:
        return CRS.from_user_input(a) == CRS.from_user_input(b)
    except CRSError:
        return False


def _batch_int(value: Any) -> int:
    if isinstance(value, str):
        raise InputError(f"batch_size={value!r}: use a whole number of windows >= 1, or 'auto'")
    return _positive_int("batch_size", value)


def _positive_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InputError(f"{name}={value!r}: must be a whole number >= {minimum}")
    return int(value)


def predict(
    cube: xr.Dataset,
    model: Any,
    *,
    window: int | None = None,
    stride: int | None = None,
    batch_size: int | str | None = "auto",
    device: str = "auto",
    outputs: Sequence[str] = OUTPUTS,
    mc_samples: int = 0,
    halo: int | None = None,
    sigma: float | None = None,
    cache_dir: str | None = None,
) -> xr.Dataset:
    """Lazy maps of ``model`` over ``cube``, on the cube's grid and CRS.

    Parameters
    ----------
    cube
        A MISO cube (``xr.Dataset``, one ``(<modality>_band, y, x)`` variable per modality).
    model
        A model following the predictor protocol (``MisoModel``, ``RandomForestBaseline``), or a
        checkpoint path / URL / hub name (loaded with :func:`miso_xr.load`).
    window, stride
        Window side and lattice step in pixels (default: the checkpoint's ``spec.window`` and
        ``spec.stride``; new models record ``5 * window // 8``, 2.56 windows per pixel). ``stride``
        must be at most ``window``; ``window // 2`` blends 4 windows per pixel.
    batch_size
        Windows per model call, or ``"auto"`` (the default; ``None`` too): sized on each worker
        by its device's free memory (:func:`~miso_xr.infer.batching.auto_batch_size`).
    device
        ``"auto"`` (each worker's CUDA device when it has one, else CPU fp32), ``"cpu"``, ``"cuda"``.
    outputs
        Any of ``"probability"``, ``"label"``, ``"uncertainty"``.
    mc_samples
        ``0``: one deterministic pass. ``T > 0``: Monte-Carlo dropout, ``probability`` is the mean
        of ``T`` passes with dropout on and ``uncertainty`` the entropy of that mean (maps then vary
        from run to run).
    halo
        Overlap depth in pixels; default (and minimum) the reach of the windows, which
        :meth:`~miso_xr.infer.windows.WindowPlan.halo_for` plans from window, stride and chunks.
    sigma
        ``None`` (default): blend windows with a Hann weight at ``stride = window / 2``, a Tukey
        one (the Hann's ramps over the overlap, flat between) at a longer stride: a pixel's
        windows cross-fade over the whole of their overlap. A number: a Gaussian weight of that
        width in pixels (the maps of before: ``window / 8``).
    cache_dir
        Where a model that was never saved is saved for the workers to load.

    Returns
    -------
    xr.Dataset
        Lazy (Dask) variables on the cube's ``y``/``x`` with its CRS:
        ``probability`` ``(category, y, x)`` float32 (``.sel(category="present")``), ``label`` ``(y, x)`` int16 class index (-1 where
        the input is nodata; ``flag_values``/``flag_meanings`` list the classes), ``uncertainty``
        ``(y, x)`` float32 predictive entropy divided by ``log K`` (0 = certain, 1 = uniform).
        A pixel with a NaN in any band the model reads is NaN (label -1) in every output.

    Notes
    -----
    On a ``distributed`` cluster whose workers declare a ``GPU`` resource, the prediction tasks
    carry ``resources={"GPU": 1}``. Dask's graph optimisation drops such annotations
    (dask/dask#7036), so compute there with ``client.compute(maps, optimize_graph=False)``;
    :func:`miso_xr.io.to_zarr` does this itself.

    Examples
    --------
    >>> maps = miso_xr.predict(cube, miso_xr.load("perm.safetensors"))   # doctest: +SKIP
    >>> maps.label.sel(x=x, y=y, method="nearest").item()                 # doctest: +SKIP
    1
    """
    from dask.array.overlap import ensure_minimum_chunksize

    if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
        model = _load_model(model)
    spec = getattr(model, "spec", None)
    if spec is None:
        raise InputError(
            f"model of type {type(model).__name__} has no .spec; pass a MisoModel, a "
            "RandomForestBaseline, or a checkpoint path"
        )
    check_cube(cube, spec)
    if isinstance(outputs, str):
        outputs = (outputs,)
    outputs = tuple(outputs)
    unknown = [o for o in outputs if o not in OUTPUTS]
    if unknown or not outputs:
        raise InputError(f"outputs={outputs!r}: choose one or more of {', '.join(OUTPUTS)}")
    plan = WindowPlan(
        window=_positive_int("window", window if window is not None else spec.window),
        stride=_positive_int("stride", stride if stride is not None else spec.stride),
        sigma=sigma,
    )
    batch: int | str = (
        "auto" if batch_size is None or batch_size == "auto" else _batch_int(batch_size)
    )
    mc = _positive_int("mc_samples", mc_samples, minimum=0)
    if mc and not _dropout_modules(model):
        raise InputError(
            f"mc_samples={mc}: Monte-Carlo dropout needs a torch model with dropout layers; "
            f"{type(model).__name__} has none (use mc_samples=0)"
        )
    ref = model_ref(model, device=device, cache_dir=cache_dir)
    grid = Grid.from_dataset(cube)

    stack, counts = _stack(cube, spec)
    if halo is not None:
        halo = _positive_int("halo", halo, minimum=0)
    ychunks, xchunks = stack.chunks[1], stack.chunks[2]
    # a chunk thinner than the halo would need pixels beyond its neighbour: merge thin chunks
    for _ in range(4):  # bounded: each pass only grows chunks, the halo only shrinks with them
        hy, hx = plan.halo_for(ychunks), plan.halo_for(xchunks)
        if halo is not None:
            if halo < max(hy, hx):
                raise InputError(
                    f"halo={halo}: the windows (window={plan.window}, stride={plan.stride}) reach "
                    f"{max(hy, hx)} pixels beyond a chunk here; use halo >= {max(hy, hx)} or None"
                )
            hy = hx = halo
        new_y = ensure_minimum_chunksize(max(hy, 1), ychunks) if len(ychunks) > 1 else ychunks
        new_x = ensure_minimum_chunksize(max(hx, 1), xchunks) if len(xchunks) > 1 else xchunks
        if (new_y, new_x) == (ychunks, xchunks):
            break
        _say_rechunk(
            f"chunks thinner than the {max(hy, hx)}-pixel halo the windows need (window="
            f"{plan.window}, stride={plan.stride}) were grown: y "
            f"{_sizes(ychunks)} -> {_sizes(new_y)}, x {_sizes(xchunks)} -> {_sizes(new_x)}; "
            f"chunks of at least {max(hy, hx)} pixels avoid this"
        )
        ychunks, xchunks = tuple(new_y), tuple(new_x)
        stack = stack.rechunk({1: ychunks, 2: xchunks})
    k = len(spec.classes)
    block_kwargs = {
        "ref": ref,
        "plan": plan,
        "counts": counts,
        "geo": (grid.left, grid.top, grid.resolution),
        "halo": (hy, hx),
        "ychunks": ychunks,
        "xchunks": xchunks,
        "batch_size": batch,
        "mc_samples": mc,
        "k": k,
    }
    with _annotations():
        # one lazy layer: each task cuts its halo from its neighbours (dask's overlap would list
        # a getitem per neighbour strip and a concatenate per chunk, for every chunk of the cube)
        prob = map_halo(
            _predict_block,
            stack,
            (hy, hx),
            name="miso-predict-" + _token(stack.name, block_kwargs),
            chunks=((k,), ychunks, xchunks),
            dtype=np.float32,
            meta=np.empty((0, 0, 0), dtype=np.float32),
            **block_kwargs,
        )
    return _as_dataset(cube, prob, spec, plan, ref, outputs, mc)


def _load_model(source: Any) -> Any:
    import importlib.util

    if importlib.util.find_spec("miso_xr.hub") is not None:
        from ..hub import load

        return load(source)
    from ..checkpoint import load_checkpoint

    return load_checkpoint(source)


def _token(*args: Any) -> str:
    from dask.base import tokenize

    return tokenize(*args)


class _annotations:
    """``dask.annotate(resources={"GPU": 1})`` when the current distributed cluster declares GPUs."""

    def __enter__(self) -> None:
        import contextlib

        import dask

        self._ctx = contextlib.nullcontext()
        if _cluster_has_gpu_resource():
            self._ctx = dask.annotate(resources={"GPU": 1})
        self._ctx.__enter__()

    def __exit__(self, *exc: Any) -> None:
        self._ctx.__exit__(*exc)


def _cluster_has_gpu_resource() -> bool:
    try:
        from distributed import default_client
    except ImportError:
        return False
    try:
        client = default_client()
    except ValueError:  # no client: threaded or processes scheduler
        return False
    try:
        workers = client.scheduler_info(n_workers=-1).get("workers", {})
    except TypeError:  # older distributed without n_workers
        workers = client.scheduler_info().get("workers", {})
    return any((w.get("resources") or {}).get("GPU", 0) > 0 for w in workers.values())


def _stack(cube: xr.Dataset, spec: Any):
    """The model's bands of every modality, in order, as one float32 ``(band, y, x)`` dask array.

    One blockwise task per chunk picks and joins the bands (no per-chunk getitem, concatenate or
    rechunk layers: the graph stays lazy and constant-size however many chunks the cube has).
    """
    import dask.array as da

    arrays, picks, counts = [], [], []
    chunks = first = None
    for mod, bands in spec.modalities:
        var = cube[mod]
        dim = band_dim(mod)
        have = [str(b) for b in var[dim].values]
        idx = [have.index(b) for b in bands]
        data = var.data
        if not isinstance(data, da.Array):
            data = da.from_array(np.asarray(data), chunks=(-1, 1024, 1024))
        if chunks is None:
            chunks, first = data.chunks[1:], mod
        elif data.chunks[1:] != chunks:
            _say_rechunk(
                f"modality {mod!r} is chunked differently from {first!r} (y {_sizes(data.chunks[1])}"
                f", x {_sizes(data.chunks[2])} vs y {_sizes(chunks[0])}, x {_sizes(chunks[1])}): "
                f"rechunked to {first!r}'s chunks, because a window reads every modality at once; "
                "open the cube with one chunks= for all modalities to avoid this"
            )
        if len(data.chunks[0]) > 1:
            _say_rechunk(
                f"modality {mod!r} is split along {band_dim(mod)!r} ({len(data.chunks[0])} chunks): "
                "joined into one, because the model reads all bands of a pixel together; chunk "
                f"only y and x ({band_dim(mod)}: -1) to avoid this"
            )
        if data.chunks[1:] != chunks or len(data.chunks[0]) > 1:
            data = data.rechunk((-1, *chunks))
        arrays.append(data)
        picks.append(None if idx == list(range(len(have))) else tuple(idx))
        counts.append((mod, len(bands)))
    total = sum(n for _, n in counts)
    assert chunks is not None
    stack = da.map_blocks(
        _stack_block,
        *arrays,
        picks=tuple(picks),
        chunks=((total,), *chunks),
        dtype=np.float32,
        meta=np.empty((0, 0, 0), dtype=np.float32),
        name="miso-stack-" + _token([a.name for a in arrays], picks),
    )
    return stack, tuple(counts)


def _stack_block(*blocks: np.ndarray, picks: tuple[tuple[int, ...] | None, ...]) -> np.ndarray:
    parts = [b if p is None else b[list(p)] for b, p in zip(blocks, picks)]
    out = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)
    return out.astype(np.float32, copy=False)


def _sizes(chunks: Sequence[int]) -> str:
    """Chunk sizes, briefly: ``256x3+100`` for ``(256, 256, 256, 100)``."""
    chunks = list(chunks)
    if not chunks:
        return "()"
    head, n = chunks[0], 1
    while n < len(chunks) and chunks[n] == head:
        n += 1
    rest = chunks[n:]
    out = f"{head}x{n}" if n > 1 else str(head)
    if rest:
        out += "+" + ("+".join(map(str, rest)) if len(rest) <= 3 else f"{len(rest)} more")
    return out


def _say_rechunk(why: str) -> None:
    import warnings

    warnings.warn(f"predict rechunks the cube: {why}", RechunkWarning, stacklevel=4)


def _offsets(chunks: Sequence[int]) -> list[int]:
    return [0, *np.cumsum(chunks).tolist()]


def _predict_block(
    block: np.ndarray,
    *,
    ref: ModelRef,
    plan: WindowPlan,
    counts: tuple[tuple[str, int], ...],
    geo: tuple[float, float, float],
    halo: tuple[int, int],
    ychunks: tuple[int, ...],
    xchunks: tuple[int, ...],
    batch_size: int | str,
    mc_samples: int,
    k: int,
    block_id: tuple[int, int, int] | None = None,
) -> np.ndarray:
    """Probabilities ``(K, h, w)`` of one chunk, from its halo-padded block ``(C, h+2hy, w+2hx)``."""
    assert block_id is not None
    _, i, j = block_id
    hy, hx = halo
    h, w = ychunks[i], xchunks[j]
    r0, c0 = _offsets(ychunks)[i], _offsets(xchunks)[j]
    if block.shape[1:] != (h + 2 * hy, w + 2 * hx):
        raise RuntimeError(f"block {block_id} has shape {block.shape}; expected halo {halo}")
    interior = block[:, hy : hy + h, hx : hx + w]
    valid = np.isfinite(interior).all(axis=0)
    out = np.full((k, h, w), np.nan, dtype=np.float32)
    if not valid.any():
        return out  # all nodata: no model, no load
    win = plan.window
    rows, cols = plan.starts(r0, r0 + h), plan.starts(c0, c0 + w)
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    rr, cc = rr.ravel(), cc.ravel()
    # skip windows that touch no valid pixel of this chunk: they cannot change a valid output
    sat = np.zeros((h + 1, w + 1), dtype=np.int64)
    sat[1:, 1:] = valid.cumsum(0).cumsum(1)
    ya, yb = np.clip(rr - r0, 0, h), np.clip(rr - r0 + win, 0, h)
    xa, xb = np.clip(cc - c0, 0, w), np.clip(cc - c0 + win, 0, w)
    n_valid = sat[yb, xb] - sat[ya, xb] - sat[yb, xa] + sat[ya, xa]
    rr, cc = rr[n_valid > 0], cc[n_valid > 0]

    model = get_model(ref)
    device = resolve_device(ref.device)
    if batch_size == "auto":
        batch_size = auto_batch_size(model, win, device)
    assert isinstance(batch_size, int)
    left, top, res = geo
    pr0, pc0 = r0 - hy, c0 - hx  # global index of the padded block's first pixel
    weights = plan.weights()
    acc = None
    offs = np.arange(win)
    splits = np.cumsum([n for _, n in counts])[:-1]
    prior = _block_prior(
        model, block.shape[1:], (pr0, pc0), geo, device, mc_samples, rr.size * win**2
    )
    for s in range(0, rr.size, batch_size):
        br, bc = rr[s : s + batch_size], cc[s : s + batch_size]
        patches = np.stack(
            [block[:, r - pr0 : r - pr0 + win, c - pc0 : c - pc0 + win] for r, c in zip(br, bc)]
        )
        parts = np.split(patches, splits, axis=1)
        inputs = {mod: np.ascontiguousarray(p) for (mod, _), p in zip(counts, parts)}
        xs = left + (bc[:, None] + offs[None, :] + 0.5) * res
        ys = top - (br[:, None] + offs[None, :] + 0.5) * res
        kw = {}
        if prior is not None:  # each window's part of the block's prior: (b, W, W, outputs)
            kw["prior"] = window_cells(prior, br - pr0, bc - pc0, win)
        probs = _run_model(model, inputs, xs, ys, device, mc_samples, batch_size, **kw)
        if probs.shape != (br.size, k, win, win):
            raise RuntimeError(
                f"{type(model).__name__}.predict_windows returned shape {probs.shape}; the "
                f"predictor protocol needs {(br.size, k, win, win)}"
            )
        acc = blend_windows(probs, br, bc, origin=(r0, c0), shape=(h, w), weights=weights, out=acc)
    if acc is None:
        return out
    total, wsum = acc
    with np.errstate(invalid="ignore", divide="ignore"):
        prob = (total / wsum).astype(np.float32)
    prob[:, ~valid] = np.nan
    return prob


def _block_prior(
    model: Any,
    shape: tuple[int, int],
    first: tuple[int, int],
    geo: tuple[float, float, float],
    device: str,
    mc: int,
    window_pixels: int,
) -> np.ndarray | None:
    """A model's location prior on the whole halo-padded block, or None.

    The prior depends on the coordinates only (``MisoModel.location_prior``): computed once per
    block pixel, it costs ``1 / coverage`` of running it in every window. Not with MC-dropout (the
    prior's dropout is sampled per pass) nor when the block has more pixels than its windows.
    """
    if mc or not hasattr(model, "location_prior") or not _takes(model, "prior"):
        return None
    if shape[0] * shape[1] >= window_pixels:
        return None
    left, top, res = geo
    xg = left + (first[1] + np.arange(shape[1]) + 0.5) * res  # the windows' formula, exactly
    yg = top - (first[0] + np.arange(shape[0]) + 0.5) * res
    with device_lock(device), task_threads(device):
        return model.location_prior(xg, yg, device=device)


def _run_model(
    model: Any,
    inputs: dict[str, np.ndarray],
    xs: np.ndarray,
    ys: np.ndarray,
    device: str,
    mc: int,
    batch: int,
    **kw: Any,
) -> np.ndarray:
    with device_lock(device), task_threads(device):
        return _run_model_locked(model, inputs, xs, ys, device, mc, batch, **kw)


def _run_model_locked(
    model: Any,
    inputs: dict[str, np.ndarray],
    xs: np.ndarray,
    ys: np.ndarray,
    device: str,
    mc: int,
    batch: int,
    **kw: Any,
) -> np.ndarray:
    # a model that batches itself (MisoModel) takes the whole batch in one call
    if _takes(model, "batch_size"):
        kw["batch_size"] = batch
    if not mc:
        p = model.predict_windows(inputs, xs, ys, device=device, **kw)
        return np.asarray(p, dtype=np.float64)
    if _takes(model, "mc_samples"):  # the model knows how to sample itself (MisoModel does)
        p = model.predict_windows(inputs, xs, ys, device=device, mc_samples=mc, **kw)
        return np.asarray(p, dtype=np.float64)
    drops = _dropout_modules(model)
    with _MC_LOCK:
        was = [m.training for m in drops]
        try:
            for m in drops:
                m.train()
            total = None
            for _ in range(mc):
                p = model.predict_windows(inputs, xs, ys, device=device, **kw)
                p = np.asarray(p, np.float64)
                total = p if total is None else total + p
        finally:
            for m, t in zip(drops, was):
                m.train(t)
    return total / mc


def _takes(model: Any, name: str) -> bool:
    import inspect

    try:
        return name in inspect.signature(model.predict_windows).parameters
    except (TypeError, ValueError):
        return False


def _dropout_modules(model: Any) -> list[Any]:
    """Dropout layers inside a torch model (the model itself or torch modules it holds)."""
    import sys

    if "torch" not in sys.modules:
        try:
            import torch  # noqa: F401
        except ImportError:
            return []
    import torch

    roots = [model] if isinstance(model, torch.nn.Module) else []
    roots += [v for v in vars(model).values() if isinstance(v, torch.nn.Module)]
    found: dict[int, Any] = {}
    for root in roots:
        for m in root.modules():
            if isinstance(m, torch.nn.modules.dropout._DropoutNd):
                found[id(m)] = m
    return list(found.values())


def _label_block(prob: np.ndarray) -> np.ndarray:
    valid = np.isfinite(prob).all(axis=0)
    label = np.argmax(np.where(np.isfinite(prob), prob, -np.inf), axis=0).astype(np.int16)
    label[~valid] = -1
    return label


def _entropy_block(prob: np.ndarray) -> np.ndarray:
    k = prob.shape[0]
    p = prob.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(p > 0, p * np.log(p), 0.0).sum(axis=0)
    h = h / np.log(k) if k > 1 else np.zeros_like(h)
    h[~np.isfinite(prob).all(axis=0)] = np.nan
    return np.clip(h, 0.0, 1.0).astype(np.float32)


def _as_dataset(
    cube: xr.Dataset,
    prob: Any,
    spec: Any,
    plan: WindowPlan,
    ref: ModelRef,
    outputs: tuple[str, ...],
    mc: int,
) -> xr.Dataset:
    import dask.array as da

    classes = [str(c) for c in spec.classes]
    coords: dict[str, Any] = {"y": cube["y"], "x": cube["x"]}
    if "spatial_ref" in cube.coords:
        coords["spatial_ref"] = cube["spatial_ref"]
    data_vars: dict[str, Any] = {}
    if "probability" in outputs:
        data_vars["probability"] = xr.Variable(
            (CLASS_DIM, "y", "x"),
            prob,
            {"long_name": "class probability", "units": "1", "valid_range": [0.0, 1.0]},
        )
    if "label" in outputs:
        label = da.map_blocks(
            _label_block, prob, drop_axis=0, dtype=np.int16, meta=np.empty((0, 0), np.int16)
        )
        data_vars["label"] = xr.Variable(
            ("y", "x"),
            label,
            {
                "long_name": "most probable class",
                "flag_values": list(range(len(classes))),
                "flag_meanings": " ".join(c.replace(" ", "_") for c in classes),
                "nodata": -1,
            },
        )
    if "uncertainty" in outputs:
        unc = da.map_blocks(
            _entropy_block, prob, drop_axis=0, dtype=np.float32, meta=np.empty((0, 0), np.float32)
        )
        data_vars["uncertainty"] = xr.Variable(
            ("y", "x"),
            unc,
            {
                "long_name": "predictive entropy / log(number of classes)"
                + (f", mean of {mc} MC-dropout passes" if mc else ""),
                "units": "1",
                "valid_range": [0.0, 1.0],
            },
        )
    ds = xr.Dataset(data_vars, coords=coords)
    if "probability" in outputs:
        ds = ds.assign_coords({CLASS_DIM: (CLASS_DIM, np.array(classes, dtype=str))})
    ds.attrs.update(
        {
            "model_kind": spec.kind,
            "task": spec.task,
            "classes": " ".join(classes),
            "model_sha256": ref.sha256,
            "model_source": ref.source,
            "window": plan.window,
            "stride": plan.stride,
            "blend": plan.blend,
            "mc_samples": mc,
        }
    )
    if "spatial_ref" in ds.coords:
        for v in ds.data_vars:
            ds[v].attrs["grid_mapping"] = "spatial_ref"
    return ds
