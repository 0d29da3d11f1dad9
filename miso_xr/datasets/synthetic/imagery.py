"""The imagery a model sees: Sentinel-2 L2A-like dates (clouds, shadows) and Sentinel-1 RTC."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import numpy as np

from ...cube.grid import OPTICAL_BANDS
from .common import _BANDS_20M, _field, _to10, _to20
from .fields import HiddenFields
from .terrain import Terrain

_CLOUD = np.array([0.52, 0.53, 0.57, 0.53, 0.52, 0.51, 0.50, 0.36, 0.26], dtype="float32")


def make_optical(
    r_optical: np.random.Generator, t: Terrain, f: HiddenFields, *, n_dates: int
) -> list[tuple[datetime, np.ndarray, np.ndarray]]:
    """Sentinel-2 L2A-like reflectance and SCL for ``n_dates`` summer dates, in time order."""
    res = t.grid.resolution
    h, w = t.dem.shape
    base, rivers = f.base, t.rivers
    aspect, cos_s, sin_s = t.aspect, t.cos_s, t.sin_s

    # ---- Sentinel-2 L2A-like images: illumination, phenology, haze, clouds, shadows, noise
    years = [2019 + int(round(i * 4 / max(n_dates - 1, 1))) for i in range(n_dates)]
    if n_dates == 1:
        years = [2021]
    doys = np.sort(r_optical.choice(np.arange(160, 236), size=n_dates, replace=n_dates > 76))
    dates = sorted(
        datetime(y, 1, 1, 21, 0, 0, tzinfo=timezone.utc)
        + timedelta(
            days=int(d) - 1,
            minutes=int(r_optical.integers(0, 60)),
            seconds=int(r_optical.integers(0, 60)),
        )
        for y, d in zip(years, doys)
    )
    optical = []
    i20 = [OPTICAL_BANDS.index(b) for b in _BANDS_20M]
    is_water = rivers
    for when in dates:
        doy = when.timetuple().tm_yday
        sz = math.radians(42 + 0.12 * abs(doy - 172) + r_optical.uniform(-1, 1))
        sa = math.radians(r_optical.uniform(165, 185))
        illum = math.sin(sz) * sin_s * np.cos(sa - aspect)
        illum += math.cos(sz) * cos_s
        np.maximum(illum, 0, out=illum)
        illum += 0.45
        illum /= math.cos(sz) + 0.45
        pheno = 1 + r_optical.uniform(-0.06, 0.06) * np.linspace(-1, 1, 9, dtype="float32")
        haze = np.array(
            [0.002, 0.003, 0.005, 0.002, 0.001, 0.001, 0.001, 0.0, 0.0], dtype="float32"
        )
        refl = base * illum[None]
        del illum
        refl *= pheno[:, None, None]
        refl += (haze * r_optical.uniform(0, 1.5))[:, None, None]
        noise = r_optical.standard_normal(refl.shape, dtype=np.float32)
        noise *= np.float32(0.002)
        refl += noise
        del noise
        # clouds: thresholded smooth noise, cover 3-35 %; shadows cast away from the sun
        cover = r_optical.uniform(0.03, 0.35)
        reach = r_optical.uniform(900, 1800) * math.tan(sz) / res  # cloud height x tan(zenith), px
        dr, dc = int(round(-reach * math.cos(sa - np.pi))), int(round(reach * math.sin(sa - np.pi)))
        # clouds over a margin around the scene too: their shadows (km away) fall inside it
        pad = abs(dr) + abs(dc) + 1
        cfield = _field(r_optical, (h + 2 * pad, w + 2 * pad), res, 120, 4000, 3.2)
        thr = float(np.quantile(cfield.ravel()[:: max(1, cfield.size // 200_000)], 1 - cover))
        # shadows of the thicker clouds (optical thickness > 0.5), displaced away from the sun
        shadow = cfield[pad - dr : pad - dr + h, pad - dc : pad - dc + w] > thr + 0.9 * 0.5 ** (
            1 / 0.6
        )
        tau = np.clip((cfield[pad : pad + h, pad : pad + w] - thr) / 0.9, 0, 1) ** 0.6
        del cfield
        cloudy = tau > 0
        shadow &= ~cloudy
        clear = 1 - tau
        for b in range(refl.shape[0]):  # band by band: no (9, H, W) temporaries
            refl[b][shadow] *= np.float32(0.35)
            refl[b] *= clear
            refl[b] += _CLOUD[b] * tau
        del clear
        # 20 m bands are 20 m: block means, then quantised to DN like the archive (1e-4 steps)
        refl20 = _to20(refl[i20])
        np.clip(refl, 1e-4, 6.5, out=refl)
        np.clip(refl20, 1e-4, 6.5, out=refl20)
        for a in (refl, refl20):
            a *= 10000
            np.round(a, out=a)
            a /= np.float32(10000)
        refl[i20] = _to10(refl20, h, w)
        del refl20
        ndvi = (refl[6] - refl[0]) / (refl[6] + refl[0])
        scl = np.where(ndvi > 0.35, 4, 5).astype("uint8")
        scl[is_water] = 6
        scl[shadow] = 3
        scl[cloudy] = 8
        scl[tau > 0.55] = 9
        scl = _to10(scl[::2, ::2], h, w).copy()  # Sen2Cor delivers SCL at 20 m
        optical.append((when, refl.astype("float32", copy=False), scl))
        del tau, shadow, ndvi
    return optical


def make_sar(
    r_sar: np.random.Generator, t: Terrain, f: HiddenFields
) -> tuple[np.ndarray, datetime]:
    """One Sentinel-1 RTC-like VV/VH image (linear gamma0) and its acquisition time."""
    shape = t.dem.shape
    rivers, aspect, cos_s, sin_s = t.rivers, t.aspect, t.cos_s, t.sin_s
    spruce, grass, vegetation, wetness, road_zone = (
        f.spruce,
        f.grass,
        f.vegetation,
        f.wetness,
        f.road_zone,
    )

    # ---- Sentinel-1 RTC-like gamma0 (linear power), one ascending pass in mid-summer 2021
    sar_when = datetime(2021, 7, 10, 4, 12, 33, tzinfo=timezone.utc) + timedelta(
        days=int(r_sar.integers(0, 20))
    )
    theta = math.radians(38.0)
    look = math.radians(80.0)  # right-looking ascending pass: the beam points ENE
    cos_loc = math.sin(theta) * sin_s * np.cos(aspect - (look + np.pi)) + math.cos(theta) * cos_s
    terr = np.sqrt(np.maximum(cos_loc, 0.05) / math.cos(theta))  # what RTC leaves uncorrected
    del cos_loc, cos_s, sin_s
    forest = spruce + (1 - spruce - grass) * np.clip(vegetation, 0, 1)
    vv = 0.045 * (1 + 1.6 * wetness) * (0.8 + 0.5 * forest) * terr
    vh = 0.008 * (0.45 + 1.8 * forest) * (1 + 0.5 * wetness) * terr
    vv[rivers], vh[rivers] = 0.004, 0.0008
    vv[road_zone], vh[road_zone] = 0.08, 0.006
    looks = 4.4  # equivalent number of looks: multiplicative gamma speckle
    vv *= r_sar.standard_gamma(looks, shape, dtype=np.float32) / np.float32(looks)
    vh *= r_sar.standard_gamma(looks, shape, dtype=np.float32) / np.float32(looks)
    sar = np.stack([vv, vh]).astype("float32")
    del vv, vh, terr, forest
    return sar, sar_when
