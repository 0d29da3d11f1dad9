"""One model per worker process: a small reference travels in the graph, the weights never do.

A Dask task that predicts carries a :class:`ModelRef` (where the checkpoint is, its sha256, the
device wanted): a few hundred bytes whatever the model's size. The first task on a process loads the
checkpoint (through :func:`miso_xr.hub.load` when the hub is installed, else
:func:`miso_xr.checkpoint.load_checkpoint`) and keeps it in a per-process cache keyed by
``(sha256, device)``; every later task on that process reuses it. A lock makes threads of one worker
wait for a single load instead of loading the model once each (the pattern of stackstac's readers).

A model that was never saved (``model.sha256`` is ``None``) is first saved into a cache directory
(``cache_dir=``, else ``$MISO_XR_CACHE``, else ``$XDG_CACHE_HOME/miso_xr``, else ``~/.cache/miso_xr``)
under its sha256, so workers can load it by path. On a cluster of several machines that directory
must be shared (or save the model to a URL the workers can read and load it from there).

A ``distributed`` nanny starts its workers with ``MALLOC_TRIM_THRESHOLD_=65536``. In glibc any
such setting freezes the mmap threshold at 128 KiB, so every tensor above that size is a fresh
``mmap`` whose pages the kernel zeroes again on first touch, and the heap is trimmed back after
every free above 64 KiB: the model's forward pass then costs about twice its CPU time (measured:
0.57 s vs 0.30 s for the same 32 windows). glibc's own dynamic thresholds do better but not
well: they rise only to the largest chunk freed so far, and each thread's arena trims its heap on
its own, so a process with the defaults still faults in twice the pages (142,768 vs 69,371 for 9
calls of 4 tiny windows) and 16 tiny windows in 2 lanes took 0.505 s vs 0.460 s. The first model
load in any process therefore sets what those thresholds reach at their ceiling
(:func:`tune_allocator`): mmap above 32 MiB, trim above 64 MiB (freed memory beyond that still
goes back to the system). ``MISO_XR_TUNE_MALLOC=0``, or an ``MALLOC_MMAP_THRESHOLD_`` of the
user's, leaves the allocator alone.

>>> ref = ModelRef(source="perm.safetensors", sha256="ab" * 32, kind="miso")   # doctest: +SKIP
>>> model = get_model(ref)        # loads once per process; later calls return the same object
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._files import new_file
from ..exceptions import InputError, IntegrityError

__all__ = [
    "ModelRef",
    "PrewarmModel",
    "clear_cache",
    "default_cache_dir",
    "device_lock",
    "get_model",
    "load_counts",
    "model_ref",
    "resolve_device",
    "task_threads",
    "tune_allocator",
    "warm_up",
]

# (sha256, resolved device) -> the model loaded in this process
_CACHE: dict[tuple[str, str], Any] = {}
# (sha256, resolved device) -> how many times this process loaded it (tests read it via client.run)
LOADS: Counter[tuple[str, str]] = Counter()
# one lock per process: two threads asking for the same model load it once
_LOCK = threading.Lock()


@dataclass(frozen=True)
class ModelRef:
    """What a task needs to find its model: small, hashable, tokenizes deterministically.

    Parameters
    ----------
    source
        A checkpoint path, URL or hub name that workers can resolve.
    sha256
        The checkpoint's sha256: the cache key, and checked against what was loaded.
    kind
        The spec's ``kind`` (``"miso"``, ``"random_forest"``, ...).
    loader
        ``"module:Class"`` whose ``from_checkpoint`` rebuilds a model of a kind
        :data:`miso_xr.checkpoint.KINDS` does not know (a user's own model following the predictor protocol).
    device
        ``"auto"`` (CUDA when the worker has it, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    path
        The verified checkpoint file on the client's disk, when there is one: workers that see
        the same filesystem (threads, a LocalCluster, a shared volume) load it directly, others
        resolve ``source`` (e.g. a hub name whose hub or cache was configured only on the client).
    """

    source: str
    sha256: str
    kind: str
    loader: str | None = None
    device: str = "auto"
    path: str | None = None


def default_cache_dir() -> Path:
    """Where unsaved models are saved for workers: ``$MISO_XR_CACHE`` or the XDG cache."""
    env = os.environ.get("MISO_XR_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "miso_xr"


def resolve_device(device: str) -> str:
    """``"auto"`` -> ``"cuda"`` when torch sees a GPU, else ``"cpu"``; others are checked and kept.

    >>> resolve_device("cpu")
    'cpu'
    """
    dev = str(device)
    if dev == "auto":
        if importlib.util.find_spec("torch") is None:
            return "cpu"
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    if dev == "cpu" or dev == "cuda" or (dev.startswith("cuda:") and dev[5:].isdigit()):
        return dev
    raise InputError(f"device={device!r}: expected 'auto', 'cpu', 'cuda' or 'cuda:N'")


def _check_device_available(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise InputError(
                f"device={device!r} but torch sees no CUDA device here; use device='auto' or 'cpu'"
            )


def model_ref(model: Any, *, device: str = "auto", cache_dir: str | os.PathLike[str] | None = None):
    """A :class:`ModelRef` for ``model``, saving it into the cache first if it has no checkpoint.

    Parameters
    ----------
    model
        A model following the predictor protocol (``spec``, ``sha256``, ``source``, ``save``).
    device
        Device the workers should use (resolved on each worker, so ``"auto"`` picks the worker's GPU).
    cache_dir
        Where an unsaved model is saved (default :func:`default_cache_dir`).

    Examples
    --------
    >>> ref = model_ref(model)          # doctest: +SKIP
    >>> ref.sha256 == model.sha256      # doctest: +SKIP
    True
    """
    from ..checkpoint import KINDS

    if device != "auto":
        resolve_device(device)  # reject misspelt devices on the client, before any task runs
    spec = getattr(model, "spec", None)
    if spec is None or not hasattr(model, "predict_windows"):
        raise InputError(
            f"model of type {type(model).__name__} does not follow the predictor protocol: it needs "
            "a .spec (ModelSpec) and .predict_windows(inputs, x, y, device=...); pass a MisoModel, "
            "a RandomForestBaseline or miso_xr.load('file.safetensors')"
        )
    sha = getattr(model, "sha256", None)
    source = getattr(model, "source", None)
    if not sha or not source:
        sha, source = _save_to_cache(model, cache_dir)
    loader = None
    if spec.kind not in KINDS:
        cls = type(model)
        loader = f"{cls.__module__}:{cls.__qualname__}"
    path = getattr(model, "checkpoint_path", None)
    if path is None and Path(str(source)).is_file():
        path = str(Path(str(source)).resolve())
    return ModelRef(
        source=str(source),
        sha256=str(sha),
        kind=spec.kind,
        loader=loader,
        device=device,
        path=None if path is None else str(path),
    )


def _save_to_cache(model: Any, cache_dir: str | os.PathLike[str] | None) -> tuple[str, str]:
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    models = root / "unsaved"
    models.mkdir(parents=True, exist_ok=True)
    fd, tmp = new_file(models, ".model.", ".safetensors")
    os.close(fd)
    # save() records sha256/source on the model; put back what the user had (None): the model may
    # still change in memory, and a later predict() must then save it again, not reuse this file
    before = (getattr(model, "sha256", None), getattr(model, "source", None))
    try:
        sha = model.save(tmp)
        model.sha256, model.source = before
        final = models / f"{sha}.safetensors"
        # same bytes under the same name: replacing an earlier save of the same model is harmless
        os.replace(tmp, final)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        model.sha256, model.source = before
        raise
    return str(sha), str(final)


def _load(ref: ModelRef, device: str) -> Any:
    if ref.loader is None:
        if importlib.util.find_spec("miso_xr.hub") is not None:
            from .. import hub

            # the hub verifies the file against the sha256 the prediction was planned with
            local = ref.path if ref.path and Path(ref.path).is_file() else None
            model = hub.load(local or ref.source, sha256=ref.sha256)
        else:
            from ..checkpoint import load_checkpoint

            model = load_checkpoint(ref.source)
    else:
        from ..checkpoint import load_checkpoint

        model = load_checkpoint(ref.source, source=ref.source, loader=ref.loader, kind=ref.kind)
    got = getattr(model, "sha256", None)
    if got and got != ref.sha256:
        raise IntegrityError(
            f"checkpoint {ref.source!r} has sha256 {got[:12]}..., but the prediction was planned "
            f"with {ref.sha256[:12]}...; the file changed after predict() was called"
        )
    _check_device_available(device)
    moved = model.to(device) if hasattr(model, "to") else None
    return model if moved is None else moved


def get_model(ref: ModelRef) -> Any:
    """The model ``ref`` points to, loaded at most once per process and device."""
    device = resolve_device(ref.device)
    key = (ref.sha256, device)
    model = _CACHE.get(key)
    if model is not None:
        return model
    with _LOCK:
        model = _CACHE.get(key)  # another thread may have loaded it while we waited
        if model is None:
            tune_allocator()
            model = _load(ref, device)
            _CACHE[key] = model
            LOADS[key] += 1
    return model


#: glibc's own ceiling for its dynamic mmap threshold (``DEFAULT_MMAP_THRESHOLD_MAX``, 64-bit)
MMAP_THRESHOLD = 32 * 2**20
_ALLOCATOR: dict[str, bool] = {}


def tune_allocator() -> bool:
    """Keep the model's large tensors from being mapped and zeroed afresh at every allocation.

    Sets glibc's mmap threshold to 32 MiB and its trim threshold to 64 MiB, the values its own
    dynamic adjustment reaches at its ceiling; this undoes the frozen 128 KiB threshold of dask's
    nanny (``MALLOC_TRIM_THRESHOLD_``) and also speeds up a process with glibc's defaults.

    Returns whether the thresholds were set: only once per process, only under glibc, never when
    the user chose an mmap threshold (``MALLOC_MMAP_THRESHOLD_``) and never with
    ``MISO_XR_TUNE_MALLOC=0``.

    >>> isinstance(tune_allocator(), bool)
    True
    """
    if "done" in _ALLOCATOR:
        return _ALLOCATOR["done"]
    _ALLOCATOR["done"] = False
    import platform

    off = os.environ.get("MISO_XR_TUNE_MALLOC", "1") == "0"
    if off or platform.libc_ver()[0] != "glibc" or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False  # an mmap threshold the user chose is theirs
    import ctypes

    try:
        libc = ctypes.CDLL(None)
        m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
        mmap = bool(libc.mallopt(m_mmap_threshold, MMAP_THRESHOLD))
        # glibc's dynamic rule: trim at twice the mmap threshold
        trim = bool(libc.mallopt(m_trim_threshold, 2 * MMAP_THRESHOLD))
        _ALLOCATOR["done"] = mmap and trim
    except (OSError, AttributeError):  # not glibc after all: nothing to tune
        pass
    return _ALLOCATOR["done"]


_DEVICE_LOCKS: dict[str, threading.Lock] = {}


def device_lock(device: str) -> Any:
    """A lock per CUDA device of this process (a no-op context on CPU).

    Several threads of one worker then take turns on its GPU instead of running out of its memory
    together; CPU threads run side by side (torch releases the GIL).
    """
    if not device.startswith("cuda"):
        return contextlib.nullcontext()
    with _LOCK:
        return _DEVICE_LOCKS.setdefault(device, threading.Lock())


def task_threads(device: str) -> Any:
    """On CPU, in a thread of a task pool: torch's threads for this thread's model calls cut to
    this process's cores shared among the tasks that run at once (a no-op context elsewhere).

    Dask's threaded scheduler runs one task per core, each calling torch, whose own thread pool
    wants every core too: 2 tasks x 2 torch threads on 2 cores ran ``predict`` 1.15-1.2x slower
    than 2 x 1 (``benchmarks/bench_predict.py``, (b)). A ``distributed`` worker already gets
    one thread per task from its nanny's environment. Only the calling thread's torch (OpenMP and
    MKL) settings change, and they are restored after; never raised above what they were.
    """
    if not device.startswith("cpu") or threading.current_thread() is threading.main_thread():
        return contextlib.nullcontext()  # the synchronous scheduler, or a plain call
    return _fewer_threads(max(1, _cores() // _tasks_at_once()))


def _cores() -> int:
    from dask.system import CPU_COUNT

    return int(CPU_COUNT)


def _tasks_at_once() -> int:
    """Tasks a process runs side by side: a ``distributed`` worker's threads, else the threaded
    scheduler's pool (``num_workers``, default one per core)."""
    try:
        from distributed import get_worker

        return max(1, int(get_worker().state.nthreads))
    except (ImportError, ValueError):  # not on a distributed worker
        pass
    import dask

    return max(1, int(dask.config.get("num_workers", None) or _cores()))


@contextlib.contextmanager
def _fewer_threads(n: int) -> Iterator[None]:
    torch = sys.modules.get("torch")  # a model without torch (a forest): nothing to share
    before = torch.get_num_threads() if torch is not None else 0
    if n >= before:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def load_counts() -> dict[str, int]:
    """``{"<sha256>@<device>": loads}`` in this process (``client.run(load_counts)`` on workers)."""
    return {f"{sha}@{dev}": n for (sha, dev), n in LOADS.items()}


def clear_cache() -> None:
    """Forget every model loaded in this process (and the load counts)."""
    with _LOCK:
        _CACHE.clear()
        LOADS.clear()


def _worker_plugin_base() -> type:
    try:
        from distributed.diagnostics.plugin import WorkerPlugin
    except ImportError:  # distributed is a dependency; keep importing this module cheap without it
        return object
    return WorkerPlugin


class PrewarmModel(_worker_plugin_base()):  # type: ignore[misc]
    """A ``distributed`` worker plugin that loads the model on every worker as it starts.

    Parameters
    ----------
    ref
        The model to load (:func:`model_ref`).

    Examples
    --------
    >>> client.register_plugin(PrewarmModel(model_ref(model)))   # doctest: +SKIP
    """

    def __init__(self, ref: ModelRef) -> None:
        self.ref = ref
        self.name = f"miso-prewarm-{ref.sha256[:16]}-{ref.device}"

    def setup(self, worker: Any) -> None:
        warm_up(get_model(self.ref), resolve_device(self.ref.device))


def warm_up(model: Any, device: str) -> None:
    """One window of zeros through ``model``: the first call's one-off costs (allocator growth,
    kernel selection) are paid at start-up rather than by the first prediction task.

    A failure is left to the real tasks, which report it with their inputs.
    """
    import numpy as np

    spec = model.spec
    w = int(spec.window)
    inputs = {m: np.zeros((1, len(b), w, w), np.float32) for m, b in spec.modalities}
    xy = np.arange(w, dtype=np.float64)[None] * spec.resolution
    try:
        model.predict_windows(inputs, xy, xy, device=device)
    except Exception:  # noqa: BLE001, S110 - the tasks raise it again, with context
        pass
