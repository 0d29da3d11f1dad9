"""Halo-padded blocks of a Dask array, one task per block, built in constant time.

``dask.array.overlap`` gives each block its neighbours' edges through a getitem task per
neighbour strip and a concatenate per block, pads the array's outer edges with more concatenated
blocks, and its layer lists every one of those tasks as soon as the graph is culled or its keys are
asked for. For a statewide cube (260,000 chunks of 256 px) that made graph building take minutes and
gigabytes on the client. :func:`map_halo` describes the same computation with one lazy layer
(:class:`HaloLayer`): the task of block ``(i, j)`` takes its own block and its up to 8 neighbours,
cuts the halo itself (NaN beyond the array's edges) and calls the function. Nothing is listed per
block until the graph is run, and a few blocks of a huge array materialise only their own tasks.

>>> import dask.array as da, numpy as np
>>> x = da.arange(36, dtype=float, chunks=3).reshape(1, 6, 6).rechunk((1, 3, 3))
>>> y = map_halo(lambda b, block_id: b[:, 1:-1, 1:-1] * 1, x, (1, 1), name="id",
...              chunks=x.chunks, dtype=float, meta=np.empty((0, 0, 0)))
>>> bool((y.compute() == x.compute()).all())
True
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

__all__ = ["HaloLayer", "map_halo", "pad_block"]


def _layer_base() -> type:
    from dask.highlevelgraph import Layer

    return Layer


class HaloLayer(_layer_base()):  # type: ignore[misc]
    """One task per block of a ``(band, y, x)`` array, each given its 3 x 3 neighbourhood.

    Tasks are made when asked for (``layer[key]``, culling, running); :meth:`cull` keeps only
    the tasks of the keys wanted, so computing a few chunks of a statewide map touches a few tasks.

    Parameters
    ----------
    name
        The output's name: keys are ``(name, 0, i, j)``.
    source
        The input array's name (keys ``(source, 0, i, j)``).
    numblocks
        ``(rows, columns)`` of blocks.
    reach
        ``(along_y, along_x)``: whether a block needs its neighbours along that axis.
    func
        Called as ``func(center, *neighbours, block=(i, j))``; ``neighbours`` are the 8 blocks
        around ``center`` row by row (``None`` beyond the edges or where not reached).
    """

    def __init__(
        self,
        name: str,
        source: str,
        numblocks: tuple[int, int],
        reach: tuple[bool, bool],
        func: Callable[..., Any],
        annotations: Any = None,
    ) -> None:
        super().__init__(annotations=annotations)
        self.name = name
        self.source = source
        self.numblocks = (int(numblocks[0]), int(numblocks[1]))
        self.reach = (bool(reach[0]), bool(reach[1]))
        self.func = func

    # every task is a dask Task: nothing to scan for old-style tuples (the default scan would
    # build every task of the layer)
    has_legacy_tasks = False

    def __repr__(self) -> str:
        return f"HaloLayer<name={self.name!r}, blocks={self.numblocks}>"

    def _block(self, key: Any) -> tuple[int, int] | None:
        if not (isinstance(key, tuple) and len(key) == 4 and key[0] == self.name and key[1] == 0):
            return None
        i, j = key[2], key[3]
        ny, nx = self.numblocks
        if not (isinstance(i, (int, np.integer)) and isinstance(j, (int, np.integer))):
            return None
        return (int(i), int(j)) if 0 <= i < ny and 0 <= j < nx else None

    def _task(self, i: int, j: int) -> Any:
        from dask._task_spec import Task, TaskRef

        ny, nx = self.numblocks
        ry, rx = self.reach
        refs: list[Any] = []
        for di in (-1, 0, 1):
            for dj in (-1, 0, 1):
                if di == dj == 0:
                    continue
                a, b = i + di, j + dj
                wanted = (di == 0 or ry) and (dj == 0 or rx)
                inside = 0 <= a < ny and 0 <= b < nx
                refs.append(TaskRef((self.source, 0, a, b)) if wanted and inside else None)
        center = TaskRef((self.source, 0, i, j))
        return Task((self.name, 0, i, j), self.func, center, *refs, block=(i, j))

    def __getitem__(self, key: Any) -> Any:
        ij = self._block(key)
        if ij is None:
            raise KeyError(key)
        return self._task(*ij)

    def __contains__(self, key: object) -> bool:
        return self._block(key) is not None

    def __iter__(self) -> Iterator[tuple]:
        ny, nx = self.numblocks
        return ((self.name, 0, i, j) for i in range(ny) for j in range(nx))

    def __len__(self) -> int:
        return self.numblocks[0] * self.numblocks[1]

    def is_materialized(self) -> bool:
        return False

    def get_output_keys(self) -> set:
        return set(iter(self))

    def get_dependencies(self, key: Any, all_hlg_keys: Any) -> set:
        return set(self[key].dependencies)

    def cull(self, keys: set, all_hlg_keys: Any) -> tuple[Any, dict]:
        from dask.highlevelgraph import MaterializedLayer

        tasks = {k: self[k] for k in keys if k in self}
        deps = {k: set(t.dependencies) for k, t in tasks.items()}
        return MaterializedLayer(tasks, annotations=self.annotations), deps


def pad_block(
    center: np.ndarray, neighbours: tuple[Any, ...], depth: tuple[int, int]
) -> np.ndarray:
    """``center`` with ``depth`` rows/columns of its neighbours around it, NaN where none.

    ``neighbours`` are the 8 blocks around ``center`` row by row (``None`` where there is none);
    each must be at least ``depth`` deep along the axes it borders.
    """
    hy, hx = depth
    c, h, w = center.shape
    dtype = np.result_type(center.dtype, np.float32)
    out = np.full((c, h + 2 * hy, w + 2 * hx), np.nan, dtype=dtype)
    out[:, hy : hy + h, hx : hx + w] = center
    rows = {-1: (slice(0, hy), lambda b: b[:, b.shape[1] - hy :]), 0: (slice(hy, hy + h), None)}
    rows[1] = (slice(hy + h, h + 2 * hy), lambda b: b[:, :hy])
    cols = {-1: (slice(0, hx), lambda b: b[:, :, b.shape[2] - hx :]), 0: (slice(hx, hx + w), None)}
    cols[1] = (slice(hx + w, w + 2 * hx), lambda b: b[:, :, :hx])
    n = 0
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            if di == dj == 0:
                continue
            block = neighbours[n]
            n += 1
            if block is None or (di and not hy) or (dj and not hx):
                continue
            (ys, cut_y), (xs, cut_x) = rows[di], cols[dj]
            part = block if cut_y is None else cut_y(block)
            part = part if cut_x is None else cut_x(part)
            out[:, ys, xs] = part
    return out


def _call_padded(
    center: np.ndarray,
    *neighbours: Any,
    block: tuple[int, int],
    func: Callable[..., Any],
    depth: tuple[int, int],
    kwargs: dict[str, Any],
) -> Any:
    padded = pad_block(np.asarray(center), neighbours, depth)
    return func(padded, block_id=(0, *block), **kwargs)


def map_halo(
    func: Callable[..., Any],
    array: Any,
    depth: tuple[int, int],
    *,
    name: str,
    chunks: tuple[tuple[int, ...], ...],
    dtype: Any,
    meta: Any,
    **kwargs: Any,
) -> Any:
    """``func`` on every block of ``array`` padded by ``depth`` (rows, columns) of its neighbours.

    ``array`` is ``(band, y, x)`` with one chunk along ``band`` and every chunk at least
    ``depth`` deep; ``func(padded, block_id=(0, i, j), **kwargs)`` returns the output block of
    ``chunks``. Beyond the array's edges the halo is NaN.
    """
    import dask.array as da
    from dask.highlevelgraph import HighLevelGraph

    if len(array.chunks[0]) != 1:
        raise ValueError(f"map_halo needs one chunk along axis 0, got {array.chunks[0]}")
    hy, hx = depth
    ny, nx = len(array.chunks[1]), len(array.chunks[2])
    call = functools.partial(_call_padded, func=func, depth=(hy, hx), kwargs=kwargs)
    layer = HaloLayer(name, array.name, (ny, nx), (hy > 0, hx > 0), call)
    graph = HighLevelGraph.from_collections(name, layer, dependencies=[array])
    return da.Array(graph, name, chunks, dtype=dtype, meta=meta)
