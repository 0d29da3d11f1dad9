"""The NaN-aware temporal median: against NumPy's nanmedian, both code paths, no warnings."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from miso_xr.cube.composite import _NETWORK_MAX, nanmedian


@pytest.mark.parametrize("scenes", [1, 2, 3, 4, _NETWORK_MAX, _NETWORK_MAX + 1, 15])
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_nanmedian_matches_numpy(scenes, axis):
    rng = np.random.default_rng(scenes)
    shape = [4, 6, 5]
    shape[axis] = scenes
    a = rng.standard_normal(shape).astype("float32")
    a[rng.random(shape) < 0.4] = np.nan  # clouds, including pixels cloudy in every scene
    a.flat[0] = np.inf  # a real infinity sorts before the NaN it would tie with
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # numpy warns on all-NaN slices
        want = np.nanmedian(a, axis=axis)
    got = nanmedian(a, axis=axis)  # warnings are errors in tests: none may be raised here
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7, equal_nan=True)


def test_nanmedian_of_no_scene_is_nan():
    out = nanmedian(np.zeros((0, 3), "float32"), axis=0)
    assert out.shape == (3,) and np.isnan(out).all()
