"""GPU inference: the same maps on CUDA as on CPU (skipped without CUDA; the lead runs them)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_predict import ToyModel, toy_cube, toy_spec

from miso_xr.infer import workers
from miso_xr.infer.predict import predict

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    model = ToyModel(toy_spec(), seed=7)
    model.save(tmp_path_factory.mktemp("gpu") / "toy.safetensors")
    return model


def test_auto_picks_cuda_and_matches_cpu(toy):
    workers.clear_cache()
    cube = toy_cube(128, 96, chunks=64)
    gpu = predict(cube, toy, window=16, stride=8, device="auto", batch_size=64).compute()
    assert set(workers.load_counts()) == {f"{toy.sha256}@cuda"}
    cpu = predict(cube, toy, window=16, stride=8, device="cpu").compute()
    # the toy model runs under fp16 autocast on CUDA: agreement to fp16 precision
    assert np.array_equal(np.isnan(gpu.probability.values), np.isnan(cpu.probability.values))
    assert np.nanmax(np.abs(gpu.probability.values - cpu.probability.values)) < 5e-3


def test_miso_model_on_cuda_is_seamless(tmp_path):
    from test_predict import _small_miso

    model = _small_miso()
    model.save(tmp_path / "m.safetensors")
    one = predict(toy_cube(64, 64, chunks=-1), model, device="cuda").probability.values
    many = predict(toy_cube(64, 64, chunks=32), model, device="cuda").probability.values
    assert np.nanmax(np.abs(one - many)) < 1e-2  # bf16/fp16 autocast inside the model


def test_threads_share_one_gpu_model(toy):
    workers.clear_cache()
    cube = toy_cube(128, 128, chunks=32)
    predict(cube, toy, window=16, stride=8, device="cuda").compute(
        scheduler="threads", num_workers=4
    )
    assert workers.load_counts() == {f"{toy.sha256}@cuda": 1}
