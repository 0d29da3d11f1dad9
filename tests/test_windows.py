"""The global window lattice: coverage, chunk independence, halo, blending (property tests)."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from miso_xr.exceptions import InputError
from miso_xr.infer import windows
from miso_xr.infer.windows import WindowPlan, blend_windows, window_weights


@st.composite
def plans(draw):
    window = draw(st.integers(1, 40))
    stride = draw(st.integers(1, window))
    return WindowPlan(window=window, stride=stride)


@st.composite
def chunkings(draw, min_size=1):
    """A grid length and a random cut of it into chunks."""
    sizes = draw(st.lists(st.integers(min_size, 60), min_size=1, max_size=8))
    return sum(sizes), tuple(sizes)


def _covering(plan: WindowPlan, starts: np.ndarray, n: int) -> np.ndarray:
    """How many of the windows ``starts`` cover each of the pixels 0..n-1 (brute force)."""
    count = np.zeros(n, dtype=int)
    for s in starts:
        count[max(s, 0) : max(min(s + plan.window, n), 0)] += 1
    return count


@settings(max_examples=200, deadline=None)
@given(plans(), st.integers(1, 300))
def test_every_pixel_is_covered_as_often_as_any_other(plan, n):
    count = _covering(plan, plan.starts(0, n), n)
    lo, hi = plan.window // plan.stride, -(-plan.window // plan.stride)
    assert count.min() >= 1
    assert lo <= count.min() and count.max() <= hi  # edges get the same coverage as the middle
    if plan.window % plan.stride == 0:
        assert (count == plan.window // plan.stride).all()


@settings(max_examples=200, deadline=None)
@given(plans(), chunkings())
def test_a_chunk_sees_exactly_the_global_windows_that_touch_it(plan, cut):
    n, sizes = cut
    everything = plan.starts(0, n)
    halo = plan.halo_for(sizes)
    assert 0 <= halo <= plan.window - 1
    a = 0
    for size in sizes:
        b = a + size
        mine = plan.starts(a, b)
        touching = everything[(everything < b) & (everything + plan.window > a)]
        assert np.array_equal(mine, touching)  # lattice from the grid origin, not the chunk
        assert (mine >= a - halo).all() and (mine + plan.window <= b + halo).all()
        a = b


@settings(max_examples=100, deadline=None)
@given(plans(), st.lists(st.integers(1, 6), min_size=1, max_size=6))
def test_chunks_on_the_stride_need_a_smaller_halo(plan, multiples):
    sizes = tuple(m * plan.stride for m in multiples)
    # chunks cut on lattice lines need S * floor((W - 1) / S) (W - S when S divides W), not W - 1
    need = plan.stride * ((plan.window - 1) // plan.stride)
    assert plan.halo_for(sizes) == need
    if plan.window % plan.stride == 0:
        assert need == plan.window - plan.stride


@settings(max_examples=30, deadline=None)
@given(plans(), chunkings(), st.integers(1, 3))
def test_blending_does_not_depend_on_the_chunking(plan, cut, k):
    n, sizes = cut
    width = 7
    cols = plan.starts(0, width)

    def window_prediction(r: int, c: int) -> np.ndarray:
        # a deterministic function of the window's place on the lattice
        g = np.random.default_rng(abs(hash((r, c))) % 2**32)
        return g.random((k, plan.window, plan.window))

    wt = window_weights(plan.window, plan.blend_sigma)

    def blend(a: int, b: int) -> np.ndarray:
        rr, cc = np.meshgrid(plan.starts(a, b), cols, indexing="ij")
        rr, cc = rr.ravel(), cc.ravel()
        probs = np.stack([window_prediction(r, c) for r, c in zip(rr, cc)])
        s, w = blend_windows(probs, rr, cc, origin=(a, 0), shape=(b - a, width), weights=wt)
        return s / w

    whole = blend(0, n)
    pieces, a = [], 0
    for size in sizes:
        pieces.append(blend(a, a + size))
        a += size
    assert np.allclose(np.concatenate(pieces, axis=1), whole, rtol=0, atol=1e-12)


def test_constant_predictions_blend_to_the_constant():
    plan = WindowPlan(window=16, stride=4)
    rows = plan.starts(0, 30)
    rr, cc = np.meshgrid(rows, rows, indexing="ij")
    probs = np.full((rr.size, 2, 16, 16), 0.25)
    s, w = blend_windows(
        probs, rr.ravel(), cc.ravel(), origin=(0, 0), shape=(30, 30), weights=plan.weights()
    )
    assert np.allclose(s / w, 0.25)


def test_the_gaussian_weight():
    plan = WindowPlan(window=32, stride=16, sigma=4.0)
    assert plan.blend_sigma == 4.0 and plan.blend == "gaussian sigma=4 px"
    w = plan.weights()
    assert w.shape == (32, 32) and np.isclose(w.max(), np.exp(-(0.5**2) / 32) ** 2)
    assert np.allclose(w, w.T) and np.allclose(w, w[::-1, ::-1])  # centred, symmetric
    assert w[0, 0] < 1e-3 * w[16, 16] and w.min() >= 1e-6


def test_the_default_hann_weight_cross_fades_over_the_whole_stride():
    plan = WindowPlan(window=32, stride=16)
    assert plan.blend_sigma is None and plan.blend == "hann"
    w = plan.weights()
    assert np.allclose(w, w.T) and np.allclose(w, w[::-1, ::-1])
    g = np.sqrt(np.diag(w))
    assert np.allclose(g[:16] + g[16:], 1.0)  # a partition of unity at stride window / 2
    assert g[0] < 0.01 and g[15] > 0.99  # ~0 at the window's edge, ~1 at its centre
    # no plateau and no cliff: the hand-over between two windows is spread over the stride
    assert np.abs(np.diff(g)).max() < 2 * np.pi / 32 / 2 + 1e-9


@pytest.mark.parametrize("stride", [20, 24, 28, 32])
def test_a_longer_stride_cross_fades_over_the_whole_overlap(stride):
    plan = WindowPlan(window=32, stride=stride)
    overlap = 32 - stride
    assert plan.blend == f"tukey taper={overlap} px" and plan.taper == overlap
    g = np.sqrt(np.diag(plan.weights()))
    assert np.allclose(g, g[::-1])
    assert np.allclose(g[:overlap] + g[stride:], 1.0)  # a partition of unity at this stride
    assert np.allclose(g[overlap:stride], 1.0)  # one window alone between the overlaps
    if overlap:
        assert g[0] < 0.2 and np.abs(np.diff(g)).max() < np.pi / overlap / 2 + 1e-9
    # constant predictions still blend to the constant
    rows = plan.starts(0, 70)
    rr, cc = np.meshgrid(rows, rows, indexing="ij")
    probs = np.full((rr.size, 1, 32, 32), 0.3)
    s, w = blend_windows(
        probs, rr.ravel(), cc.ravel(), origin=(0, 0), shape=(70, 70), weights=plan.weights()
    )
    assert np.allclose(s / w, 0.3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"window": 0, "stride": 1}, "window=0"),
        ({"window": 8, "stride": 9}, "stride=9"),
        ({"window": 8, "stride": 0}, "stride=0"),
        ({"window": 8.5, "stride": 2}, "window=8.5"),
        ({"window": 8, "stride": 4, "sigma": -1.0}, "sigma=-1.0"),
    ],
)
def test_bad_plans(kwargs, message):
    with pytest.raises(InputError, match=message):
        WindowPlan(**kwargs)


def test_docstring_examples_run():
    result = doctest.testmod(windows)
    assert result.attempted > 0 and result.failed == 0


def test_new_models_record_a_five_eighths_stride_with_tukey_blending():
    """The default plan of new models (``spec.default_stride``): 2.56 windows a pixel, Tukey."""
    from miso_xr import spec

    assert [spec.default_stride(w) for w in (1, 2, 3, 8, 64, 65, 256)] == [1, 1, 1, 5, 40, 40, 160]
    plan = WindowPlan(window=64, stride=spec.default_stride(64))
    assert plan.blend == "tukey taper=24 px" and plan.coverage() == pytest.approx(2.56)
    # every pixel's weights still cross-fade to a constant (a partition of unity along an axis)
    g = np.sqrt(np.diag(plan.weights()))
    total = np.zeros(64 * 4)
    for k in range(5):
        total[40 * k : 40 * k + 64] += g
    assert np.allclose(total[64:160], 1.0)
    # the plans measured against it stay options: Hann at half the window, Tukey at 3/4
    assert WindowPlan(window=64, stride=32).blend == "hann"
    assert WindowPlan(window=64, stride=48).blend == "tukey taper=16 px"
    result = doctest.testmod(spec)
    assert result.attempted > 0 and result.failed == 0
