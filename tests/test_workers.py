"""One model load per worker process; a small graph; threads and a real LocalCluster."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from test_predict import ToyModel, toy_cube, toy_spec

from miso_xr.exceptions import CheckpointError, IntegrityError
from miso_xr.infer import workers
from miso_xr.infer.predict import predict
from miso_xr.infer.workers import ModelRef, PrewarmModel, get_model, load_counts, model_ref


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    model = ToyModel(toy_spec(), seed=5)
    model.save(tmp_path_factory.mktemp("ckpt") / "toy.safetensors")
    return model


def _graph_bytes(maps) -> int:
    import cloudpickle

    graph = maps.probability.data.__dask_graph__()
    return len(cloudpickle.dumps(dict(graph), protocol=pickle.HIGHEST_PROTOCOL))


def test_graph_size_does_not_grow_with_the_model(tmp_path):
    cube = toy_cube(64, 64, chunks=16)
    small, big = ToyModel(toy_spec(), hidden=2), ToyModel(toy_spec(), hidden=4096)
    small.save(tmp_path / "small.safetensors")
    big.save(tmp_path / "big.safetensors")
    assert (tmp_path / "big.safetensors").stat().st_size > 500_000
    n_small = _graph_bytes(predict(cube, small, window=8, stride=4))
    n_big = _graph_bytes(predict(cube, big, window=8, stride=4))
    # the graph carries a ModelRef (path + sha256), never the weights
    assert abs(n_big - n_small) < 200
    assert n_big < (tmp_path / "big.safetensors").stat().st_size / 4


def test_threaded_scheduler_loads_the_model_once(toy):
    workers.clear_cache()
    cube = toy_cube(96, 96, chunks=16)  # 36 chunks, 4 threads
    maps = predict(cube, toy, window=8, stride=4)
    maps.compute(scheduler="threads", num_workers=4)
    assert load_counts() == {f"{toy.sha256}@cpu": 1}
    maps.compute(scheduler="threads", num_workers=4)  # a second compute reuses the cached model
    assert load_counts() == {f"{toy.sha256}@cpu": 1}


class ThreadCountingToy(ToyModel):
    """A ToyModel that records torch's intra-op threads during each of its model calls."""

    seen: list[int] = []

    def predict_windows(self, inputs, x, y, *, device="cpu"):
        import torch

        ThreadCountingToy.seen.append(torch.get_num_threads())
        return super().predict_windows(inputs, x, y, device=device)


@pytest.fixture
def two_torch_threads():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_tasks_of_the_threaded_scheduler_share_the_cores(tmp_path, two_torch_threads):
    from concurrent.futures import ThreadPoolExecutor

    import dask
    import torch
    from dask.system import CPU_COUNT

    model = ThreadCountingToy(toy_spec(), seed=3)
    model.save(tmp_path / "counting.safetensors")
    maps = predict(toy_cube(64, 64, chunks=16), model, window=8, stride=4)
    ThreadCountingToy.seen.clear()
    # fresh threads start from the process's 2 torch threads; one task per core runs at once
    with ThreadPoolExecutor(CPU_COUNT) as pool, dask.config.set(pool=pool, num_workers=CPU_COUNT):
        maps.compute(scheduler="threads")
    assert len(ThreadCountingToy.seen) >= 16 and set(ThreadCountingToy.seen) == {1}
    assert torch.get_num_threads() == 2  # the caller's setting is left alone
    # the synchronous scheduler runs tasks in the caller's thread: all its threads for the model
    ThreadCountingToy.seen.clear()
    maps.compute(scheduler="sync")
    assert set(ThreadCountingToy.seen) == {2}
    # a pool of one thread keeps every core for that one task
    seen = []

    def call():
        with dask.config.set(num_workers=1), workers.task_threads("cpu"):
            seen.append(torch.get_num_threads())
        seen.append(torch.get_num_threads())  # restored after the call

    with ThreadPoolExecutor(1) as pool:
        pool.submit(torch.set_num_threads, 2).result()
        pool.submit(call).result()
    assert seen == [min(2, CPU_COUNT), 2]  # its cores, never more than it had


def test_a_changed_checkpoint_is_refused(tmp_path):
    model = ToyModel(toy_spec(), seed=1)
    path = tmp_path / "m.safetensors"
    model.save(path)
    ref = model_ref(model)
    ToyModel(toy_spec(), seed=2).save(path)  # overwritten after predict() planned with it
    with pytest.raises(IntegrityError, match="changed after predict"):
        get_model(ref)


def test_an_unimportable_model_class_is_named(tmp_path, toy):
    workers.clear_cache()
    ref = ModelRef(source=toy.source, sha256=toy.sha256, kind="toy", loader="nowhere_pkg:Model")
    with pytest.raises(CheckpointError, match="nowhere_pkg:Model"):
        get_model(ref)


def test_no_gpu_annotation_without_a_gpu_cluster(toy):
    maps = predict(toy_cube(32, 32, chunks=16), toy, window=8, stride=4)
    layers = maps.probability.data.__dask_graph__().layers
    assert all(not (layer.annotations or {}).get("resources") for layer in layers.values())


# ---- a real cluster: 2 worker processes, 1 thread each ------------------------------------------


@pytest.fixture(scope="module")
def client():
    import distributed

    # the workers declare a GPU resource the way a GPU cluster would (`--resources GPU=1`), so the
    # tasks' resource annotations are exercised; they still compute on CPU (device="auto")
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            resources={"GPU": 1},
            dashboard_address=None,
            silence_logs=40,
        ) as cluster,
        distributed.Client(cluster) as c,
    ):
        yield c


def test_cluster_loads_once_per_worker_and_matches_threads(client, toy):
    import time

    client.run(workers.clear_cache)
    cube = toy_cube(96, 64, chunks=16)  # 24 chunks over 2 workers
    maps = predict(cube, toy, window=8, stride=4)
    t0 = time.perf_counter()
    got = client.compute(maps).result()
    print(f"cluster compute {time.perf_counter() - t0:.1f} s")
    counts = client.run(load_counts)
    assert len(counts) == 2
    for per_worker in counts.values():
        assert per_worker in ({}, {f"{toy.sha256}@cpu": 1})  # at most once per process
    assert sum(sum(c.values()) for c in counts.values()) >= 1
    local = maps.compute(scheduler="threads")
    assert np.nanmax(np.abs(got.probability.values - local.probability.values)) <= 1e-6
    again = client.compute(maps.label).result()  # later computes reuse the worker caches
    assert np.array_equal(again.values, local.label.values)
    assert client.run(load_counts) == counts


def test_prewarm_plugin_loads_on_every_worker(client, toy):
    client.run(workers.clear_cache)
    client.register_plugin(PrewarmModel(model_ref(toy)))
    counts = client.run(load_counts)
    assert list(counts.values()) == [{f"{toy.sha256}@cpu": 1}] * 2
    client.compute(predict(toy_cube(64, 64, chunks=16), toy, window=8, stride=4)).result()
    assert client.run(load_counts) == counts  # tasks found the pre-warmed model


def test_tasks_ask_for_a_gpu_when_the_cluster_has_them(client, toy):
    import distributed

    maps = predict(toy_cube(32, 32, chunks=16), toy, window=8, stride=4)
    layers = maps.probability.data.__dask_graph__().layers
    annotated = [n for n, layer in layers.items() if (layer.annotations or {}).get("resources")]
    assert annotated and all(n.startswith("miso-predict-") for n in annotated)
    assert layers[annotated[0]].annotations["resources"] == {"GPU": 1}
    # dask's graph optimisation drops annotations (dask/dask#7036, #10325): GPU clusters compute
    # with optimize_graph=False, as miso_xr.io.to_zarr does
    persisted = client.persist(maps.probability, optimize_graph=False)
    distributed.wait(persisted)
    restrictions = client.run_on_scheduler(
        lambda dask_scheduler: {
            str(ts.key): ts.resource_restrictions
            for ts in dask_scheduler.tasks.values()
            if "miso-predict" in str(ts.key)
        }
    )
    assert restrictions and all(r == {"GPU": 1} for r in restrictions.values())
    del persisted


def test_to_zarr_on_the_cluster_matches_threads(client, toy, tmp_path):
    import xarray as xr

    from miso_xr.io import to_zarr

    maps = predict(toy_cube(64, 48, chunks=16), toy, window=8, stride=4)
    to_zarr(maps, tmp_path / "c.zarr", progress=True)  # workers write chunks and markers
    # mask_and_scale=False: the label's nodata (-1, its fill value) stays -1 rather than NaN
    back = xr.open_zarr(tmp_path / "c.zarr", mask_and_scale=False).load()
    local = maps.compute(scheduler="threads")
    assert np.array_equal(back.label.values, local.label.values)
    assert np.nanmax(np.abs(back.probability.values - local.probability.values)) <= 1e-6
    assert len(list((tmp_path / "c.zarr" / ".miso_progress" / "chunks").iterdir())) == 12


def test_cluster_workers_raise_the_frozen_mmap_threshold(client, toy):
    import platform

    # dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_, which freezes glibc's mmap
    # threshold at 128 KiB (every large tensor a fresh, zeroed mmap): the first model load raises it
    client.compute(predict(toy_cube(32, 32, chunks=16), toy, window=8, stride=4)).result()
    glibc = platform.libc_ver()[0] == "glibc"
    assert set(client.run(workers.tune_allocator).values()) == {glibc}


@pytest.mark.parametrize(
    ("env", "raised"),
    [
        ({"MALLOC_TRIM_THRESHOLD_": "65536"}, True),
        ({}, True),  # glibc's dynamic thresholds also fault pages in afresh (docstring)
        ({"MALLOC_TRIM_THRESHOLD_": "65536", "MISO_XR_TUNE_MALLOC": "0"}, False),
        ({"MALLOC_TRIM_THRESHOLD_": "65536", "MALLOC_MMAP_THRESHOLD_": "4096"}, False),
    ],
)
def test_tune_allocator_unless_turned_off_or_chosen_by_the_user(env, raised):
    import os
    import platform
    import subprocess
    import sys

    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "MISO_XR_TUNE"))}
    code = "from miso_xr.infer.workers import tune_allocator as t; print(t(), t())"
    out = subprocess.run(
        [sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    want = raised and platform.libc_ver()[0] == "glibc"
    assert out.stdout.split() == [str(want)] * 2  # once per process, the same answer after
