"""Write maps: Zarr chunk by chunk (resumable), and Cloud-Optimised GeoTIFFs.

Resumable Zarr
--------------
:func:`to_zarr` first writes the store's metadata (the *template*: variables, shapes, chunks,
coordinates, attributes), then one task per ``(y, x)`` chunk computes that chunk of every variable,
writes it into the store, and only then records the chunk as finished: a small marker file
``.miso_progress/chunks/<row>.<col>`` written atomically (temporary name, then rename) after the
chunk's data. A write that is killed (SIGKILL, a lost node, a closed laptop) and started again with
the same maps skips every chunk whose marker exists, so finished chunks are never recomputed, and ends
identical to a write that was never interrupted. The chunks are computed in tiles of
:data:`TILE` x :data:`TILE` chunks, one tile after another (two in flight on a cluster), so the
memory a write needs does not grow with the map. The template's fingerprint (a sha256 of dims,
shapes, chunks, dtypes, attributes and coordinate values) is stored with the metadata
(``miso_xr_template`` attribute) and in ``.miso_progress/template.json``; resuming into a store made
from other maps is refused. Zarr readers ignore the ``.miso_progress`` folder.

Unfinished stores cannot be misread
-----------------------------------
Each variable's nodata is its Zarr fill value (``_FillValue``: -1 for ``label``, whose CF
``flag_values`` stay, NaN for floats), so a chunk never written reads as missing, not as class 0.
Until the last chunk lands the store carries the attribute ``miso_xr_unfinished`` (removed, and
the consolidated metadata rewritten, as the write's final step); :func:`check_finished` refuses
such a store, and the package's readers of maps and cubes (``to_cog``, ``plot``, ``predict``,
``evaluate``) call it. ``xr.open_zarr(store, mask_and_scale=False)`` keeps the label's codes.

>>> maps.miso.to_zarr("alaska.zarr")          # doctest: +SKIP
'alaska.zarr'
>>> # killed halfway? run the same line again: it continues where it stopped
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ._files import UNFINISHED_ATTR, atomic_write, check_finished, temp_name
from ._progress import show_progress
from .exceptions import InputError

__all__ = ["check_finished", "to_cog", "to_zarr"]

PROGRESS = ".miso_progress"
TEMPLATE_ATTR = "miso_xr_template"
COG_CACHE_MB = 32  # GDAL block cache while writing a COG (MB)


# ---- Zarr -----------------------------------------------------------------------------------------


def to_zarr(
    maps: xr.Dataset | xr.DataArray,
    store: str | os.PathLike[str],
    *,
    mode: str = "a",
    compute: bool = True,
    storage_options: dict[str, Any] | None = None,
    encoding: dict[str, dict[str, Any]] | None = None,
    progress: bool | None = None,
    overwrite: bool = False,
) -> Any:
    """Write ``maps`` to a Zarr store chunk by chunk, resuming an interrupted write.

    The arguments follow ``xarray.Dataset.to_zarr`` where a resumable write allows.

    Parameters
    ----------
    maps
        A Dataset (or DataArray) whose variables end in ``(y, x)``, typically
        ``cube.miso.predict(model)``. Chunks along ``y``/``x`` become the Zarr chunks (made uniform
        first when they are not).
    store
        A local path or an fsspec URL (``s3://bucket/map.zarr``). A local parent folder must exist.
    mode
        ``"a"`` (default): create the store, or resume an unfinished (or re-check a finished)
        write of the same maps; a store holding anything else is refused. ``"w"``: replace
        whatever is at ``store``. ``"w-"``: create, and fail if ``store`` exists.
    compute
        ``False``: write the metadata now and return a ``dask.delayed.Delayed`` that writes the
        chunks (and marks the store finished) when computed, as xarray does.
    storage_options
        fsspec options for a remote ``store`` (credentials, endpoint), used on the client and on
        every worker.
    encoding
        ``{variable: {key: value}}`` with the Zarr keys a chunk-by-chunk write can honour:
        ``compressors`` (or ``compressor``), ``filters``, ``serializer`` and ``dtype`` (e.g.
        ``{"probability": {"dtype": "float16"}}``). Part of the fingerprint: a resume with
        another encoding is refused.
    progress
        Show a progress bar of the chunks written (tqdm, locally and on a cluster);
        default: in a terminal or notebook only.
    overwrite
        The same as ``mode="w"`` (kept for the command line's ``--overwrite``).

    Returns
    -------
    str or dask.delayed.Delayed
        ``store`` as a string, for ``xr.open_zarr`` (xarray returns its internal ``ZarrStore``; a
        path is what a user reopens); with ``compute=False`` the Delayed write, whose result is
        that string.

    Raises
    ------
    InputError
        The parent folder does not exist; ``store`` holds something else (not a miso_xr write, or
        one from different maps) with ``mode="a"``; ``store`` exists with ``mode="w-"``; an
        unknown ``mode`` or ``encoding`` key; ``maps`` has no ``y``/``x`` variables.

    Examples
    --------
    >>> path = to_zarr(maps, "map.zarr", progress=False)     # doctest: +SKIP
    >>> xr.open_zarr(path).label                             # doctest: +SKIP
    >>> job = to_zarr(maps, "s3://bucket/map.zarr", compute=False,
    ...               storage_options={"anon": False})       # doctest: +SKIP
    >>> dask.compute(job)                                    # doctest: +SKIP
    """
    import fsspec

    if mode not in _MODES:
        raise InputError(
            f"mode={mode!r}: expected 'a' (create or resume), 'w' (replace) or 'w-' (create only)"
        )
    if overwrite:
        mode = "w"
    if storage_options is not None and not isinstance(storage_options, dict):
        raise InputError(f"storage_options={storage_options!r}: expected a dict of fsspec options")
    options = dict(storage_options or {})
    ds = _prepare(maps)
    enc = _check_encoding(encoding, ds)
    fp = _fingerprint(ds) if not enc else _fingerprint(ds, enc)
    target = os.fspath(store)
    fs, root = fsspec.core.url_to_fs(target, **options)
    local = _is_local(fs)
    if local:
        root = os.path.abspath(root)
        parent = os.path.dirname(root.rstrip(os.sep)) or os.sep
        if not os.path.isdir(parent):
            raise InputError(
                f"cannot write {target!r}: its folder {parent!r} does not exist; create it first"
            )
    ychunks, xchunks = ds.chunks["y"], ds.chunks["x"]
    regions = [(i, j) for i in range(len(ychunks)) for j in range(len(xchunks))]

    state = _state(fs, root, fp, options)
    if state != "absent" and mode == "w-":
        raise InputError(
            f"{target!r} already exists and mode='w-' only creates; use mode='a' to resume a "
            "write of the same maps or mode='w' to replace it"
        )
    if state != "absent" and mode == "w":
        fs.rm(root, recursive=True)
        state = "absent"
    if state == "foreign":
        raise InputError(
            f"{target!r} already exists and is not a resumable miso_xr write; pass mode='w' "
            "(overwrite=True) to replace it, or choose another path"
        )
    if state == "different":
        raise InputError(
            f"{target!r} holds an unfinished or finished miso_xr write of different maps (other "
            "variables, shape, chunks, encoding, model or attributes); resuming would mix two "
            "maps. Pass mode='w' (overwrite=True) to start again, or write to another path"
        )
    if state in ("absent", "template"):
        _write_template(ds, target, fp, enc, options)
        data = json.dumps({"fingerprint": fp}).encode()
        _put(fs, root, f"{PROGRESS}/template.json", data, local)

    done = _finished(fs, root)
    todo = [r for r in regions if f"{r[0]}.{r[1]}" not in done]
    if not compute:
        import dask

        tasks = _region_tasks(ds, target, root, local, todo, options) if todo else []
        finish = dask.delayed(_mark_complete, pure=True)
        key = f"miso-zarr-done-{dask.base.tokenize(target, fp, todo)}"
        return finish(target, root, local, options, *tasks, dask_key_name=key)
    if todo:  # a tile's tasks made in its turn (all at once: 2.6 kB a chunk, 0.7 GB for Alaska)
        tiles = (_region_tasks(ds, target, root, local, t, options) for t in _tiles(todo))
        _compute(tiles, len(todo), show_progress(progress))
    _mark_finished(target, options)
    _put(fs, root, f"{PROGRESS}/complete", b"", local)
    return target


_MODES = ("a", "w", "w-")
#: Encoding keys a chunk-by-chunk write honours (CF scaling or Zarr chunks/shards would not be).
_ENCODING_KEYS = ("compressors", "compressor", "filters", "serializer", "dtype")


def _check_encoding(encoding: Any, ds: xr.Dataset) -> dict[str, dict[str, Any]]:
    if encoding is None:
        return {}
    if not isinstance(encoding, dict):
        raise InputError(f"encoding={encoding!r}: expected {{variable: {{key: value}}}}")
    out: dict[str, dict[str, Any]] = {}
    for name, enc in encoding.items():
        if name not in ds.data_vars:
            raise InputError(
                f"encoding names variable {name!r}; the maps have {[str(v) for v in ds.data_vars]}"
            )
        if not isinstance(enc, dict):
            raise InputError(f"encoding[{name!r}]={enc!r}: expected a dict of Zarr encoding keys")
        bad = sorted(set(map(str, enc)) - set(_ENCODING_KEYS))
        if bad:
            raise InputError(
                f"encoding[{name!r}] has {bad}: a chunk-by-chunk write honours only "
                f"{list(_ENCODING_KEYS)}"
            )
        out[str(name)] = dict(enc)
    return out


def _mark_complete(target: str, root: str, local: bool, options: dict, *_done: Any) -> str:
    """The last task of a ``compute=False`` write: every chunk is written, mark the store."""
    import fsspec

    fs, _ = fsspec.core.url_to_fs(target, **options)
    _mark_finished(target, options)
    _put(fs, root, f"{PROGRESS}/complete", b"", local)
    return target


def _is_local(fs: Any) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return protocol in ("file", "local")


def _prepare(maps: xr.Dataset | xr.DataArray) -> xr.Dataset:
    """Uniform y/x chunks, (…, y, x) order, single chunks elsewhere, strings as objects."""
    if isinstance(maps, xr.DataArray):
        maps = maps.to_dataset(name=str(maps.name) if maps.name is not None else "map")
    if not isinstance(maps, xr.Dataset):
        raise InputError(
            f"maps is a {type(maps).__name__}; to_zarr writes an xr.Dataset or DataArray"
        )
    spatial = [v for v in maps.data_vars if {"y", "x"} <= set(maps[v].dims)]
    if not spatial:
        raise InputError(
            f"maps has no variable with y and x dimensions (variables: {list(maps.data_vars)}); "
            "to_zarr writes maps on a grid"
        )
    other = [v for v in maps.data_vars if v not in spatial]
    ds = maps.drop_vars(other)
    for v in spatial:
        dims = [d for d in ds[v].dims if d not in ("y", "x")] + ["y", "x"]
        ds[v] = ds[v].transpose(*dims)
    ds = ds.unify_chunks() if any(ds[v].chunks for v in spatial) else ds
    chunks = ds.chunks if ds.chunks else {}
    cy = chunks.get("y", (min(ds.sizes["y"], 1024),))[0]
    cx = chunks.get("x", (min(ds.sizes["x"], 1024),))[0]
    spec = {d: -1 for v in spatial for d in ds[v].dims if d not in ("y", "x")}
    spec.update(y=cy, x=cx)
    # Zarr chunks are uniform (the last may be short); dask chunks must match them exactly
    ds = ds.chunk(spec)
    for name, coord in ds.coords.items():
        if coord.dtype.kind == "U":  # fixed-width unicode has no Zarr v3 spec; variable-length does
            ds = ds.assign_coords({name: coord.astype(object)})
    for v in ds.variables.values():
        v.encoding = {}
    return ds


def _fingerprint(ds: xr.Dataset, encoding: dict | None = None) -> str:
    """sha256 of what makes two maps the same template (not their values)."""

    def clean(attrs: dict) -> dict:
        return {k: v for k, v in attrs.items() if k not in (TEMPLATE_ATTR, UNFINISHED_ATTR)}

    desc: dict[str, Any] = {"attrs": clean(ds.attrs), "vars": {}, "coords": {}}
    for name, var in ds.data_vars.items():
        desc["vars"][str(name)] = {
            "dims": list(var.dims),
            "shape": list(var.shape),
            "dtype": str(var.dtype),
            "chunks": [list(c) for c in var.chunks] if var.chunks else None,
            "attrs": clean(var.attrs),
        }
    for name, coord in ds.coords.items():
        values = np.asarray(coord.values)
        digest = hashlib.sha256(
            values.astype(str).tobytes() if values.dtype.kind in "OUS" else values.tobytes()
        ).hexdigest()
        desc["coords"][str(name)] = {
            "dims": list(coord.dims),
            "values": digest,
            "attrs": coord.attrs,
        }
    if encoding:  # only when given: stores written without one keep their fingerprint
        desc["encoding"] = encoding
    text = json.dumps(desc, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()


def _state(fs: Any, root: str, fp: str, options: dict | None = None) -> str:
    """absent | template (ours, template unfinished) | resume | different | foreign."""
    if not fs.exists(root):
        return "absent"
    record = f"{root}/{PROGRESS}/template.json"
    if fs.exists(record):
        try:
            got = json.loads(fs.cat_file(record))["fingerprint"]
        except (ValueError, KeyError):
            return "foreign"
        return "resume" if got == fp else "different"
    try:
        import zarr

        group = zarr.open_group(
            fs.unstrip_protocol(root), mode="r", storage_options=options or None
        )
        attrs = dict(group.attrs)
    except Exception:  # noqa: BLE001 - anything unreadable as a Zarr group is not ours
        return "foreign"
    if TEMPLATE_ATTR in attrs:
        # killed while writing the template: nothing was computed yet, it can be written again
        return "template" if attrs[TEMPLATE_ATTR] == fp else "different"
    return "foreign"


def _mark_finished(target: str, options: dict | None = None) -> None:
    """Drop the unfinished attribute, in the group and in the consolidated metadata."""
    import zarr

    kw = {"storage_options": options} if options else {}
    group = zarr.open_group(target, mode="r+", **kw)
    if UNFINISHED_ATTR in group.attrs:
        del group.attrs[UNFINISHED_ATTR]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Consolidated metadata", category=UserWarning)
        # the walk meets our .miso_progress folder, which is rightly no Zarr node
        warnings.filterwarnings("ignore", "Object at .miso_progress", category=UserWarning)
        zarr.consolidate_metadata(group.store)


def _fill_values(ds: xr.Dataset) -> dict[str, dict[str, Any]]:
    """Encoding that makes each variable's nodata its Zarr fill value (unwritten = missing)."""
    enc: dict[str, dict[str, Any]] = {}
    for name, var in ds.data_vars.items():
        # _FillValue is the CF attribute readers mask; fill_value is what Zarr v3 returns for a
        # chunk never written: both must be the nodata
        if np.issubdtype(var.dtype, np.floating):
            enc[str(name)] = {"_FillValue": np.nan, "fill_value": np.nan}
        elif np.issubdtype(var.dtype, np.integer):
            nodata = var.attrs.get(
                "nodata", -1 if np.issubdtype(var.dtype, np.signedinteger) else None
            )
            if nodata is not None:
                value = var.dtype.type(nodata)
                enc[str(name)] = {"_FillValue": value, "fill_value": value}
    return enc


def _write_template(
    ds: xr.Dataset, target: str, fp: str, encoding: dict | None = None, options: dict | None = None
) -> None:
    template = ds.copy()
    template.attrs[TEMPLATE_ATTR] = fp
    template.attrs[UNFINISHED_ATTR] = (
        f"{target}: to_zarr has not finished; rerun it to complete the store"
    )
    encoding = {k: dict(v) for k, v in (encoding or {}).items()}
    for name, fill in _fill_values(template).items():
        encoding.setdefault(name, {}).update(fill)
        # the fill value is the nodata now: an attribute as well would say it twice
        template[name].attrs.pop("_FillValue", None)
    with warnings.catch_warnings():
        # zarr-python 3 warns that consolidated metadata is not yet in the Zarr v3 spec; xarray
        # and zarr-python read it, and readers would otherwise warn that it is missing
        warnings.filterwarnings("ignore", "Consolidated metadata", category=UserWarning)
        # compute=False: metadata and the (numpy) coordinates now, no dask variable computed
        template.to_zarr(
            target,
            mode="w",
            compute=False,
            consolidated=True,
            zarr_format=3,
            encoding=encoding or None,
            storage_options=options or None,
        )


def _put(fs: Any, root: str, key: str, data: bytes, local: bool) -> None:
    """Write a small file atomically: temporary name then rename locally, one PUT elsewhere."""
    path = f"{root}/{key}"
    if not local:
        fs.pipe_file(path, data)
        return
    atomic_write(path, data, fsync=True)  # a marker promises its chunk: make it durable


def _finished(fs: Any, root: str) -> set[str]:
    folder = f"{root}/{PROGRESS}/chunks"
    if not fs.exists(folder):
        return set()
    return {p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(folder, detail=False)}


def _region_tasks(
    ds: xr.Dataset, target: str, root: str, local: bool, todo: list, options: dict
) -> list:
    import dask
    from dask.delayed import Delayed

    names = list(ds.data_vars)
    # the unoptimised graph's keys (as to_delayed(optimize_graph=False), these chunks only): label
    # and uncertainty share probability's, so the model runs once per chunk, not per variable
    graphs = [(a, a.__dask_graph__(), a.__dask_layers__()[0]) for a in (ds[v].data for v in names)]
    ystarts = np.concatenate([[0], np.cumsum(ds.chunks["y"])]).tolist()
    xstarts = np.concatenate([[0], np.cumsum(ds.chunks["x"])]).tolist()
    write = dask.delayed(_write_region, pure=True)
    tasks = []
    for i, j in todo:
        parts = [
            Delayed((a.name, *(0,) * (a.ndim - 2), i, j), graph, layer=layer)
            for a, graph, layer in graphs
        ]
        ys = (ystarts[i], ystarts[i + 1])
        xs = (xstarts[j], xstarts[j + 1])
        tasks.append(
            write(
                target,
                root,
                local,
                options,
                names,
                ys,
                xs,
                f"{i}.{j}",
                *parts,
                dask_key_name=(f"miso-write-{dask.base.tokenize(target, names, ys, xs)}"),
            )
        )
    return tasks


def _write_region(
    target: str,
    root: str,
    local: bool,
    options: dict,
    names: list[str],
    ys: tuple[int, int],
    xs: tuple[int, int],
    marker: str,
    *parts: np.ndarray,
) -> str:
    """Write one chunk of every variable, then its marker (runs on a worker)."""
    import fsspec
    import zarr

    group = zarr.open_group(target, mode="r+", storage_options=options or None)
    for name, data in zip(names, parts):
        arr = group[name]
        arr[(Ellipsis, slice(*ys), slice(*xs))] = np.asarray(data, dtype=arr.dtype)
    fs, _ = fsspec.core.url_to_fs(target, **options)
    # the marker comes after the data: a marked chunk is always a finished chunk
    _put(fs, root, f"{PROGRESS}/chunks/{marker}", b"", local)
    return marker


#: chunks per side of the tiles a write computes one after another (see :func:`_tiles`)
TILE = 8


def _tiles(todo: list, tile: int | None = None) -> list[list]:
    """The chunks ``(row, col)`` grouped in ``tile`` x ``tile`` tiles of chunks, tile rows first.

    A chunk needs its neighbours' inputs: one compute of a whole map keeps about two rows of input
    chunks alive and every task of the map in the scheduler, memory that grows with the raster. A
    tile at a time, it stays that of one tile; the inputs along a tile's border are read again by
    the next tile (about ``4 / tile`` more reads than chunks; the model's work is not repeated)."""
    tile = TILE if tile is None else tile
    groups: dict[tuple[int, int], list] = {}
    for i, j in todo:
        groups.setdefault((i // tile, j // tile), []).append((i, j))
    return [groups[k] for k in sorted(groups)]


def _compute(tiles: Iterable[list], total: int, progress: bool) -> None:
    """The tiles' tasks, a tile at a time (two on a cluster); ``tiles`` is consumed lazily."""
    import dask

    from .infer.predict import _cluster_has_gpu_resource

    # dask's graph optimisation drops the predict tasks' GPU resource annotations (dask#7036):
    # keep the graph as built when the cluster has GPUs to schedule
    optimize = not _cluster_has_gpu_resource()
    try:
        from distributed import default_client

        client = default_client()
    except (ImportError, ValueError):
        client = None
    if dask.config.get("scheduler", None) not in (None, "dask.distributed"):
        client = None
    from tqdm.auto import tqdm

    with tqdm(total=total, desc="to_zarr", unit="chunk", disable=not progress) as bar:
        if client is None:
            for tile in tiles:
                dask.compute(*tile, optimize_graph=optimize)
                bar.update(len(tile))
            return
        from distributed import as_completed

        # two tiles in flight: the workers start the next while the last of one finishes
        tiles = iter(tiles)
        pending = [client.compute(t, optimize_graph=optimize) for t in itertools.islice(tiles, 1)]
        for nxt in itertools.chain(tiles, [None]):
            if nxt is not None:
                pending.append(client.compute(nxt, optimize_graph=optimize))
            for fut in as_completed(pending.pop(0)):
                fut.result()
                bar.update(1)


# ---- COG ------------------------------------------------------------------------------------------


def to_cog(
    obj: xr.Dataset | xr.DataArray,
    path: str | os.PathLike[str],
    *,
    variable: str | None = None,
    overwrite: bool = False,
    compress: str = "DEFLATE",
    blocksize: int = 512,
    overview_resampling: str | None = None,
    progress: bool | None = None,
) -> str:
    """Write one map to a Cloud-Optimised GeoTIFF, chunk by chunk, whatever its size.

    A Dask-backed map is never gathered into memory: its chunks are computed by the current
    scheduler (threads, or the ``distributed`` cluster in use) and written one at a time, under
    a lock, into a tiled GeoTIFF beside ``path``; GDAL's COG driver then translates that file
    into the COG (overviews included) reading it from disk block by block, and the tiled file is
    removed. The client's memory stays that of a few chunks, so a statewide map can be written
    (the disk needs room for the map twice during the write). On a cluster of several machines
    ``path``'s folder must be shared by the workers; otherwise write Zarr
    (:func:`to_zarr`) and translate it where it lies.

    Parameters
    ----------
    obj
        Maps (``cube.miso.predict(model)``) or one DataArray with dims ``(y, x)`` or
        ``(band, y, x)`` on a grid with a CRS.
    path
        The ``.tif`` to write; its folder must exist. The file is written under a temporary name
        and renamed when complete, so a failed write leaves nothing behind.
    variable
        Which variable of a Dataset: default ``"label"`` when present, else the only one.
        ``probability`` becomes one band per class, the band descriptions naming the classes.
    overwrite
        Replace an existing file.
    compress, blocksize
        COG compression and internal tile size.
    overview_resampling
        Resampling of the overviews; default ``"mode"`` for integer maps (labels), ``"average"``
        otherwise.
    progress
        Show dask's progress bar while the chunks are computed (threaded scheduler); default: in
        a terminal or notebook, not in logs (``miso-xr --quiet`` turns the default off).

    Returns
    -------
    str
        ``path``.

    Examples
    --------
    >>> maps.miso.to_cog("permafrost.tif")                           # doctest: +SKIP
    'permafrost.tif'
    >>> maps.miso.to_cog("probability.tif", variable="probability")  # doctest: +SKIP
    'probability.tif'
    """
    import rioxarray  # noqa: F401 - registers .rio

    check_finished(obj)
    da = _pick(obj, variable)
    out = Path(os.fspath(path))
    if not out.parent.is_dir():
        raise InputError(
            f"cannot write {str(out)!r}: its folder {str(out.parent)!r} does not exist"
        )
    if out.exists() and not overwrite:
        raise InputError(f"{str(out)!r} already exists; pass overwrite=True to replace it")
    extra = [d for d in da.dims if d not in ("y", "x")]
    if len(extra) > 1 or not {"y", "x"} <= set(da.dims):
        raise InputError(
            f"to_cog writes (y, x) or (band, y, x) maps; {da.name!r} has dims {da.dims}"
        )
    if isinstance(blocksize, bool) or not isinstance(blocksize, int) or blocksize % 16:
        raise InputError(f"blocksize={blocksize!r}: a COG tile side is a multiple of 16 px")
    da = da.transpose(*extra, "y", "x")
    if da.rio.crs is None:
        raise InputError(
            f"{da.name!r} records no CRS; maps from predict keep the cube's CRS, or use "
            "obj.rio.write_crs(...)"
        )
    if "flag_values" in da.attrs and np.issubdtype(da.dtype, np.floating):
        # a label read back from Zarr: its -1 fill value was decoded to NaN; codes again
        code = da.encoding.get("dtype", np.dtype("int16"))
        da = da.fillna(da.attrs.get("nodata", -1)).astype(code)
    integer = np.issubdtype(da.dtype, np.integer)
    nodata = _nodata(da)
    da = da.copy()
    da.attrs = {k: v for k, v in da.attrs.items() if k not in ("_FillValue", "nodata")}
    da.encoding = {}
    if extra:
        da.attrs["long_name"] = tuple(str(v) for v in da[extra[0]].values)
    da = da.rio.write_nodata(nodata, encoded=False)
    # the transform from the grid, exactly (pixel-centre coordinates may carry float noise)
    from .cube.grid import Grid

    da = da.rio.write_transform(Grid.from_dataset(da).transform)
    tiled = _temp_name(out, ".tiles.tif")
    tmp = _temp_name(out, ".part.tif")
    try:
        _write_tiled(da, tiled, blocksize=blocksize, progress=show_progress(progress))
        import rasterio
        import rasterio.shutil

        # GDAL's block cache defaults to 5 % of RAM: bound it, the translation streams anyway
        with rasterio.Env(GDAL_NUM_THREADS="ALL_CPUS", GDAL_CACHEMAX=COG_CACHE_MB):
            rasterio.shutil.copy(
                tiled,
                tmp,
                driver="COG",
                COMPRESS=compress,
                BLOCKSIZE=blocksize,
                OVERVIEW_RESAMPLING=(
                    overview_resampling or ("mode" if integer else "average")
                ).upper(),
                BIGTIFF="IF_SAFER",
            )
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        Path(tiled).unlink(missing_ok=True)
    return str(out)


def _temp_name(out: Path, suffix: str) -> str:
    # a name only: GDAL creates the file, with the mode the umask gives (mkstemp's is 0600)
    return str(temp_name(out, suffix))


def _write_tiled(da: xr.DataArray, path: str, *, blocksize: int, progress: bool) -> None:
    """A tiled GeoTIFF of ``da``, its Dask chunks computed and written one at a time."""
    import contextlib

    import dask.array

    lazy = isinstance(da.data, dask.array.Array)
    lock: Any = False
    if lazy:
        lock = _write_lock(path)
        # compressing tiles that are rewritten in place would grow the file; compress only when
        # every chunk covers whole tiles (the COG is compressed in the translation anyway)
        chunks = da.data.chunks[-2:]
        aligned = all(all(c % blocksize == 0 for c in axis[:-1]) for axis in chunks)
    else:
        aligned = True
    nbytes = int(np.prod(da.shape, dtype=np.int64)) * da.dtype.itemsize
    bar: Any = contextlib.nullcontext()
    if progress and lazy:
        from dask.diagnostics import ProgressBar

        bar = ProgressBar()
    import rasterio

    with warnings.catch_warnings(), bar, rasterio.Env(GDAL_CACHEMAX=COG_CACHE_MB):
        # rioxarray 0.19 builds transforms with affine's `*`, which affine >= 3.1 marks
        # PendingDeprecationWarning; harmless, and not ours to fix
        warnings.filterwarnings("ignore", "Use `@` matmul", PendingDeprecationWarning)
        da.rio.to_raster(
            path,
            driver="GTiff",
            recalc_transform=False,
            tiled=True,
            blockxsize=blocksize,
            blockysize=blocksize,
            compress="DEFLATE" if aligned else None,
            BIGTIFF="YES" if nbytes > 2**31 else "IF_SAFER",
            windowed=not lazy,
            lock=lock,
        )


def _write_lock(path: str) -> Any:
    """One writer at a time: a ``distributed.Lock`` under a cluster, else a thread lock."""
    import threading

    import dask

    try:
        from distributed import Lock, default_client

        default_client()
    except (ImportError, ValueError):
        return threading.Lock()
    if dask.config.get("scheduler", None) not in (None, "dask.distributed"):
        return threading.Lock()
    return Lock(f"miso-xr-to-cog-{os.path.basename(path)}")


def _pick(obj: xr.Dataset | xr.DataArray, variable: str | None) -> xr.DataArray:
    if isinstance(obj, xr.DataArray):
        if variable is not None and variable != obj.name:
            raise InputError(
                f"variable={variable!r} but a single DataArray ({obj.name!r}) was given"
            )
        return obj
    if not isinstance(obj, xr.Dataset):
        raise InputError(f"to_cog writes an xr.Dataset or DataArray, not {type(obj).__name__}")
    names = [str(v) for v in obj.data_vars]
    if variable is None:
        if "label" in names:
            variable = "label"
        elif len(names) == 1:
            variable = names[0]
        else:
            raise InputError(
                f"the maps have several variables ({', '.join(names)}); choose one with variable="
            )
    if variable not in obj.data_vars:
        raise InputError(
            f"variable={variable!r} is not in the maps; they have {', '.join(names) or 'none'}"
        )
    return obj[variable]


def _nodata(da: xr.DataArray) -> float | int:
    for key in ("nodata", "_FillValue"):
        value = da.attrs.get(key, da.encoding.get(key))
        if value is not None:
            return value
    return -1 if np.issubdtype(da.dtype, np.integer) else float("nan")
