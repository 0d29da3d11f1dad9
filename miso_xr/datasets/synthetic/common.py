"""Shared by the scene's stages and writers: constants, noise fields, projections, 10/20 m."""

from __future__ import annotations

import functools

import numpy as np

from ...cube.grid import Grid

SCENE_CRS = "EPSG:3338"
TRUTH_NAMES: tuple[str, ...] = (
    "permafrost",
    "soil_order",
    "vegetation",
    "wetness",
    "elevation",
    "rivers",
    "roads",
)
# bands Sentinel-2 delivers at 20 m (the rest of the nine are 10 m); SCL is 20 m too
_BANDS_20M = ("B05", "B06", "B07", "B11", "B12")
_MANIFEST = "scene.json"
_FORMAT = "miso_xr synthetic scene 1"


def _field(
    rng: np.random.Generator,
    shape: tuple[int, int],
    res: float,
    lmin: float,
    lmax: float,
    beta: float = 3.0,
    *,
    order: int = 1,
) -> np.ndarray:
    """Gaussian noise with a power-law spectrum between wavelengths ``lmin`` and ``lmax`` (m).

    Spectral synthesis (one FFT pair) on a grid padded by a quarter so the result does not wrap
    around visibly; zero mean, unit standard deviation, float32. A field with nothing finer than
    ``lmin`` is synthesised on a coarser lattice (six cells per ``lmin``) and interpolated
    (``order`` 1 linear, 3 cubic): the same field for a fraction of the FFT cost at 4096 px.
    """
    h, w = shape
    f = int(lmin // (6 * res))
    if f < 2:
        return _spectral(rng, shape, res, lmin, lmax, beta)
    from scipy import ndimage

    coarse = _spectral(rng, (-(-h // f) + 2, -(-w // f) + 2), res * f, lmin, lmax, beta)
    out = ndimage.zoom(coarse, f, order=order, grid_mode=True, mode="nearest", output=np.float32)
    return np.ascontiguousarray(out[f // 2 : f // 2 + h, f // 2 : f // 2 + w])


def _spectral(rng, shape, res, lmin, lmax, beta) -> np.ndarray:
    import scipy.fft as sfft

    h, w = shape
    ph = sfft.next_fast_len(h + max(8, h // 4), real=True)
    pw = sfft.next_fast_len(w + max(8, w // 4), real=True)
    white = rng.standard_normal((ph, pw), dtype=np.float32)
    spec = sfft.rfft2(white)
    del white
    ky = sfft.fftfreq(ph, d=res).astype("float32")[:, None]
    kx = sfft.rfftfreq(pw, d=res).astype("float32")[None, :]
    k = np.sqrt(ky * ky + kx * kx)
    k[0, 0] = 1.0 / (4 * max(ph, pw) * res)
    # power-law amplitude, low-pass at lmin and high-pass at lmax (both smooth, no ringing)
    filt = k ** np.float32(-beta / 2)
    filt *= np.exp(-((k * np.float32(lmin)) ** 2))
    filt *= 1 - np.exp(-((k * np.float32(lmax)) ** 2))
    filt[0, 0] = 0.0
    spec *= filt
    del filt, k
    out = sfft.irfft2(spec, s=(ph, pw))[:h, :w].astype("float32", copy=False)
    out -= np.float32(out.mean(dtype="float64"))
    sd = float(out.std(dtype="float64"))
    if sd > 0:
        out /= np.float32(sd)
    return np.ascontiguousarray(out)


def _sigmoid(v: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-v))).astype("float32", copy=False)


@functools.lru_cache(maxsize=8)
def _transformer(src: str, dst: str):
    """A cached pyproj Transformer (building one costs tens of milliseconds)."""
    from pyproj import Transformer

    return Transformer.from_crs(src, dst, always_xy=True)


def _bbox_lonlat(grid: Grid) -> tuple[float, float, float, float]:
    left, bottom, right, top = grid.bounds
    t = np.linspace(0.0, 1.0, 21)
    xs = np.concatenate(
        [
            left + (right - left) * t,
            np.full(21, right),
            right - (right - left) * t,
            np.full(21, left),
        ]
    )
    ys = np.concatenate(
        [
            np.full(21, top),
            top - (top - bottom) * t,
            np.full(21, bottom),
            bottom + (top - bottom) * t,
        ]
    )
    lon, lat = _transformer(grid.crs, "EPSG:4326").transform(xs, ys)
    return (float(np.min(lon)), float(np.min(lat)), float(np.max(lon)), float(np.max(lat)))


def _to20(a: np.ndarray) -> np.ndarray:
    """2x2 block means of the last two axes (edge-padded to even size): 10 m -> 20 m."""
    h, w = a.shape[-2:]
    pad = [(0, 0)] * (a.ndim - 2) + [(0, h % 2), (0, w % 2)]
    if h % 2 or w % 2:
        a = np.pad(a, pad, mode="edge")
    h2, w2 = a.shape[-2] // 2, a.shape[-1] // 2
    return a.reshape(*a.shape[:-2], h2, 2, w2, 2).mean(axis=(-3, -1), dtype="float32")


def _to10(a: np.ndarray, h: int, w: int) -> np.ndarray:
    """Repeat 20 m pixels 2x2 and crop to ``(h, w)``: the nearest-neighbour 10 m view."""
    return np.repeat(np.repeat(a, 2, axis=-2), 2, axis=-1)[..., :h, :w]
