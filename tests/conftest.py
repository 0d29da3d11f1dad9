"""Shared pytest fixtures: the real public data folder and a dask compute counter."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

#: ../shared/data beside the repository (see its README); absent in a user's fresh clone.
#: MISO_XR_SHARED_DATA points elsewhere (a git worktree whose parent has no shared/ folder).
SHARED_DATA = Path(
    os.environ.get("MISO_XR_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data"
)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of the real public data (``../shared/data``); skips the test when it is missing."""
    if not SHARED_DATA.is_dir():
        pytest.skip(
            f"real data folder {SHARED_DATA} is missing (a fresh clone has no ../shared/data)"
        )
    return SHARED_DATA


class CountingScheduler:
    """A dask scheduler that counts computes and raises past ``max_computes`` (as xarray's tests)."""

    def __init__(self, max_computes: int = 0):
        self.total_computes = 0
        self.max_computes = max_computes

    def __call__(self, dsk, keys, **kwargs):
        import dask

        self.total_computes += 1
        if self.total_computes > self.max_computes:
            raise RuntimeError(
                f"too many dask computations: {self.total_computes} > {self.max_computes}"
            )
        return dask.get(dsk, keys, **kwargs)


@contextlib.contextmanager
def _raise_if_dask_computes(max_computes: int = 0) -> Iterator[CountingScheduler]:
    import dask

    scheduler = CountingScheduler(max_computes)
    with dask.config.set(scheduler=scheduler):
        yield scheduler


@pytest.fixture
def raise_if_dask_computes() -> Callable[..., contextlib.AbstractContextManager]:
    """``with raise_if_dask_computes(): ...`` fails the test if anything inside computes."""
    return _raise_if_dask_computes


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """Run a test on one torch intra-op thread (``pytestmark = usefixtures("one_torch_thread")``).

    Test tensors are tiny, and on a shared 2-core machine two intra-op threads spin against
    other jobs (training measured 7x slower); one thread is faster and steadier.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
